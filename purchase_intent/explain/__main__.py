"""``python -m purchase_intent.explain``: explains an export on a table of raw examples (see the package)."""

import sys

from purchase_intent import cli
from purchase_intent.explain.command import main

if __name__ == "__main__":
    sys.exit(cli.run(main))
