"""``python -m purchase_intent.report RUN_DIR``: rebuilds a run's figures and report (see the package)."""

import sys

from purchase_intent import cli
from purchase_intent.report.page import main

if __name__ == "__main__":
    sys.exit(cli.run(main))
