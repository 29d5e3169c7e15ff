"""Crash and resume, determinism, and atomic export under SIGKILL.

* Resume: a run killed with SIGKILL in the middle of an epoch, rerun with the same
  command and output directory, restarts from its last ``BackupAndRestore`` backup
  (the last completed epoch) and finishes. Its test ROC-AUC is within
  ``RESUME_TOLERANCE`` of the uninterrupted run (conftest ``tiny_run``, the same
  command in the test process): the resumed epochs see another shuffle order (the
  shuffle sequence restarts with the process), so the final model differs slightly.
* Determinism, on the way: the killed run is a fresh process, so its backup (the
  weights after its last completed epoch) must equal ``tiny_run``'s weights after the
  same epoch, and the resumed run's baselines (fitted on the same rows, same seed)
  the uninterrupted run's figures.
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

import numpy as np
import pytest

from conftest import max_abs_diff, tiny_run_args
from purchase_intent.export import existing_versions

EPOCHS = 6
RESUME_TOLERANCE = 0.05  # test ROC-AUC, 180 test examples of the tiny synthetic task
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def train_args(out: Path, data: Path) -> list[str]:
    """conftest's ``tiny_run`` (run by ``train.main`` in the test process, its data in ``data``) without its
    export."""
    return [*tiny_run_args(data), "--epochs", str(EPOCHS), "--no-export", "--output-dir", str(out)]


# The same command with slow steps (a callback passed to train.main), so the kill lands inside an epoch.
SLOW_TRAIN = """
import sys, time
import keras
from purchase_intent import cli, train

delay, argv = float(sys.argv[1]), sys.argv[2:]  # seconds per step, then train's arguments
slow = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: time.sleep(delay))
sys.exit(cli.run(lambda args: train.main(args, callbacks=[slow]), argv))
"""


def h5_arrays(path: Path) -> dict:
    """Every array of a Keras ``.weights.h5`` file, by its path in the file."""
    import h5py

    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return arrays


def test_sigkill_mid_epoch_then_resume(tiny_run, tmp_path, train_process):
    run_dir, reference = tiny_run
    out = tmp_path / "run"
    meta = out / "backup" / "training_metadata.json"
    log = open(tmp_path / "killed.log", "w")
    # Slow steps (60 ms each, 14 steps per epoch) so the kill lands inside an epoch.
    proc = subprocess.Popen([sys.executable, "-c", SLOW_TRAIN, "0.06", *train_args(out, run_dir.parent)],
                            stdout=log, stderr=subprocess.STDOUT, text=True, env=ENV)
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
    # Determinism across processes: the fresh process's weights after epoch `done` are tiny_run's (the test
    # process, same command and seed) after that epoch.
    backup, uninterrupted, first = (h5_arrays(p) for p in (out / "backup" / "latest.weights.h5",
                                                            run_dir.parent / "epochs" / f"{done}.weights.h5",
                                                            run_dir.parent / "epochs" / "1.weights.h5"))
    assert backup.keys() == uninterrupted.keys() and len(backup) > 10
    worst = max_abs_diff(backup.values(), (uninterrupted[k] for k in backup))
    assert worst <= 1e-6, worst
    assert any(not np.array_equal(backup[k], first[k]) for k in backup)  # the weights moved between epochs:
    # the comparison can fail

    metrics, stderr = train_process(train_args(out, run_dir.parent), timeout=300)  # the same command again
    assert f"Resuming from the backup in {out / 'backup'}: {done} epoch(s) already done" in stderr
    assert metrics["training"]["resumed_from_epoch"] == done
    assert metrics["training"]["epochs_run"] == EPOCHS - done  # only the remaining epochs ran
    assert not (out / "backup").exists()  # removed once training completed
    for baseline in ("logistic_regression", "hist_gradient_boosting"):  # same rows, same seed, another process
        for key, value in reference["test"][baseline].items():
            assert metrics["test"][baseline][key] == pytest.approx(value, abs=1e-6), (baseline, key)
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
