#!/usr/bin/env bash
# Installs everything, then runs the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# Two pytest-xdist workers (PI_TEST_WORKERS to change), each test file on one worker, in the order
# tests/conftest.py collects them (LONG_FILES_FIRST; --no-loadscope-reorder: else xdist hands out the files
# with the most tests first, and the few-test long files run last, one worker alone). (Not --dist
# loadgroup: xdist 3.8's xdist_group marks have no effect under pytest 9.2, whose node ids it cannot rename.)
# OpenMP threads (scikit-learn's trees) sleep when idle instead of spinning on the other worker's core.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec .venv/bin/python -m pytest tests -n "${PI_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
