#!/usr/bin/env bash
# Installs everything, then runs the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# Two pytest-xdist workers (PI_TEST_WORKERS to change), each test file on one worker, in order. (Not
# --dist loadgroup: xdist 3.8's xdist_group marks have no effect under pytest 9.2, whose node ids it cannot rename.)
exec .venv/bin/python -m pytest tests -n "${PI_TEST_WORKERS:-2}" --dist loadfile "$@"
