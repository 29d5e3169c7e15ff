"""Crash and resume, determinism, and atomic export under SIGKILL.

* Determinism: the same training (seed 42, CPU) in a fresh process (conftest
  ``fresh_tiny_run``) and in the test process (conftest ``tiny_run``) gives the same
  metrics to 1e-6.
* Resume: a run killed with SIGKILL in the middle of an epoch, rerun with the same
  command and output directory, restarts from its last ``BackupAndRestore`` backup
  (the last completed epoch) and finishes. Its test ROC-AUC is within
  ``RESUME_TOLERANCE`` of the uninterrupted run: the weights at the backup are
  bit-identical, but the resumed epochs see another shuffle order (the shuffle
  sequence restarts with the process), so the final model differs slightly.
* Export: a process killed while writing a version leaves only a hidden
  ``.tmp-*`` folder, which TF Serving and the local server ignore.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from purchase_intent.export import existing_versions

EPOCHS = 6
RESUME_TOLERANCE = 0.05  # test ROC-AUC, 180 test examples of the tiny synthetic task
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def train_args(out: Path) -> list[str]:
    return ["--preset", "tiny", "--epochs", str(EPOCHS), "--no-export", "--output-dir", str(out)]


# The same command with slow steps (a callback passed to train.main), so the kill lands inside an epoch.
SLOW_TRAIN = """
import sys, time
import keras
from purchase_intent import cli, train

delay, argv = float(sys.argv[1]), sys.argv[2:]  # seconds per step, then train's arguments
slow = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: time.sleep(delay))
sys.exit(cli.run(lambda args: train.main(args, callbacks=[slow]), argv))
"""


def test_same_seed_same_metrics(tiny_run, fresh_tiny_run):
    # conftest's tiny_run is train_args' training (its 6 epochs, seed 42) run by train.main in the test
    # process, with an export after the metrics; fresh_tiny_run the same in a fresh process.
    _, reference = tiny_run
    _, again, _ = fresh_tiny_run
    for model, metrics in reference["test"].items():
        for key, value in metrics.items():
            assert again["test"][model][key] == pytest.approx(value, abs=1e-6), (model, key)
    assert again["training"]["epochs_run"] == reference["training"]["epochs_run"] == EPOCHS


def test_sigkill_mid_epoch_then_resume(tiny_run, tmp_path, train_process):
    _, reference = tiny_run
    out = tmp_path / "run"
    meta = out / "backup" / "training_metadata.json"
    log = open(tmp_path / "killed.log", "w")
    # Slow steps (60 ms each, 14 steps per epoch) so the kill lands inside an epoch.
    proc = subprocess.Popen([sys.executable, "-c", SLOW_TRAIN, "0.06", *train_args(out)], stdout=log,
                            stderr=subprocess.STDOUT, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if meta.exists() and json.loads(meta.read_text() or "{}").get("epoch", 0) >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "training ended before it could be killed"
        time.sleep(0.3)  # about 5 steps into epoch 3
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    killed_log = (tmp_path / "killed.log").read_text()
    done = json.loads(meta.read_text())["epoch"]
    assert 2 <= done < EPOCHS
    # Killed inside epoch done+1: Keras printed its header but not its end-of-epoch line.
    assert f"Epoch {done + 1}/{EPOCHS}" in killed_log
    assert killed_log.rstrip().splitlines()[-1].startswith(f"Epoch {done + 1}/") or \
        f"Epoch {done + 2}/{EPOCHS}" not in killed_log
    assert not (out / "metrics.json").exists()

    metrics, stderr = train_process(train_args(out), timeout=300)  # the same command again
    assert f"Resuming from the backup in {out / 'backup'}: {done} epoch(s) already done" in stderr
    assert metrics["training"]["resumed_from_epoch"] == done
    assert metrics["training"]["epochs_run"] == EPOCHS - done  # only the remaining epochs ran
    assert not (out / "backup").exists()  # removed once training completed
    auc, ref = metrics["test"]["purchase_intent"]["roc_auc"], reference["test"]["purchase_intent"]["roc_auc"]
    assert abs(auc - ref) <= RESUME_TOLERANCE, (auc, ref)
    assert auc > 0.75  # and it still learned the task


KILLED_EXPORT = r"""
import os, signal, sys
import keras
from purchase_intent.config import get_config
from purchase_intent.data import load_splits
import purchase_intent.export as export
from purchase_intent.task import build

cfg = get_config("tiny"); cfg.data.synthetic_examples = 200
schema, splits = load_splits(cfg.data, seed=0)
pre, model = build(cfg, schema, splits)
base = sys.argv[1]
export.export_model(model, pre, base, "purchase_intent", 1)     # a good version 1
def die(src, dst):                                                # version 2 is written in full,
    os.kill(os.getpid(), signal.SIGKILL)                          # then the process dies before
export.os.rename = die                                            # the rename that publishes it
export.export_model(model, pre, base, "purchase_intent", 2)
"""


def test_killed_export_leaves_no_loadable_version(tmp_path):
    proc = subprocess.run([sys.executable, "-c", KILLED_EXPORT, str(tmp_path)], capture_output=True,
                          text=True, timeout=300, env=ENV)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    model_dir = tmp_path / "purchase_intent"
    names = sorted(p.name for p in model_dir.iterdir())
    assert "1" in names and "2" not in names
    leftovers = [n for n in names if n != "1"]
    assert leftovers and all(n.startswith(".tmp-2-") for n in leftovers), names
    assert (model_dir / leftovers[0] / "saved_model.pb").exists()  # half a version, hidden
    assert existing_versions(model_dir) == [1]  # what a server would load

    from purchase_intent.serving.local import start_server

    with start_server(model_dir, "purchase_intent", port=0, poll_seconds=0) as server:
        assert server.manager.loaded_versions == [1]
