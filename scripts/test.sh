#!/usr/bin/env bash
# Installs everything, then runs the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# Two pytest-xdist workers (PI_TEST_WORKERS to change); tests marked with one xdist_group run on one worker.
exec .venv/bin/python -m pytest tests -n "${PI_TEST_WORKERS:-2}" --dist loadgroup "$@"
