"""``python -m purchase_intent.serving.local``: the local development server (see ``server.py``)."""

import sys

from purchase_intent import cli
from purchase_intent.serving.local.server import main

sys.exit(cli.run(main))
