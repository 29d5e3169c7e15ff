"""serving/session.py: the export run as TF Serving runs it (TF1 loader, Session, Grappler on).

Its answers are compared with the server's and the in-memory model's in local_grpc_test and
exactness_test; here, what loading it tells a user.
"""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_loading_says_nothing_of_the_tf1_loaders_deprecation(exported):
    """The TF1 loader is used on purpose (TF Serving's path): `predict` and the local server do not
    tell their users it is deprecated (TensorFlow logged three lines of it on every command)."""
    code = ("from purchase_intent.serving.session import SessionModel; "
            f"print(sorted(SessionModel({str(exported['vdir'])!r}).inputs))")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "device" in proc.stdout and "session_minutes" in proc.stdout, proc.stdout
    assert "deprecated" not in proc.stderr and "Instructions for updating" not in proc.stderr, proc.stderr[-2000:]
