"""Many devices: MultiWorkerMirroredStrategy through the launcher, MirroredStrategy vs one device."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

# Mirrored (2 logical CPUs) vs one device, same seed and global batch: the runs differ
# only in per-replica dropout masks, float summation order and the dropped remainder
# (13 instead of 14 steps per epoch). Test ROC-AUC on the 180 test examples has a
# standard error of about 0.03 here, so 0.05 flags a real divergence, not noise.
AUC_TOLERANCE = 0.05


def test_two_workers_on_loopback_finish_with_identical_weights(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "purchase_intent.launch", "--workers", "2", "--timeout", "400", "--",
           "--preset", "tiny", "--epochs", "2", "--no-export", "--set", "data.synthetic_examples=400",
           "--output-dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=420, cwd=ROOT, env=ENV)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "[launch] worker exit codes: [0, 0]" in log
    for i in (0, 1):
        assert f"[worker {i}]" in log and "CollectiveAllReduceStrategy with 2 replica(s)" in log
    digests = dict(re.findall(r"\[worker (\d)\] .*Final weights sha256: ([0-9a-f]{64})", log))
    assert set(digests) == {"0", "1"}, log[-4000:]
    assert digests["0"] == digests["1"], digests
    # Only the chief (worker 0) writes the run directory.
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"]["replicas"] == 2
    assert metrics["training"]["weights_sha256"] == digests["0"]
    assert metrics["training"]["epochs_run"] == 2


def test_mirrored_two_cpus_matches_one_device(tmp_path, fresh_tiny_run, train_process):
    _, m1, log1 = fresh_tiny_run  # the tiny preset on one device, in a fresh process (conftest)
    m2, log2 = train_process(["--preset", "tiny", "--no-export", "--strategy", "mirrored", "--cpu-replicas", "2",
                              "--output-dir", str(tmp_path / "two")])
    assert "with 1 replica(s); global batch size 64" in log1
    assert "MirroredStrategy with 2 replica(s); global batch size 64" in log2
    assert m1["training"]["replicas"] == 1 and m2["training"]["replicas"] == 2
    auc1 = m1["test"]["purchase_intent"]["roc_auc"]
    auc2 = m2["test"]["purchase_intent"]["roc_auc"]
    assert abs(auc1 - auc2) <= AUC_TOLERANCE, (auc1, auc2)
    assert min(auc1, auc2) > 0.75, (auc1, auc2)  # both learn the planted signal
