"""A training run's folder: per-member checkpoints and backups, resumption, and ``FAILED.txt``.

``python -m purchase_intent.train --output-dir DIR`` writes ``DIR``; rerun with the
same folder, it resumes from the last backup (:func:`member_callbacks`). A run
that fails marks its folder (:func:`mark_failed`). The run's log goes to ``DIR/train.log``
(:data:`LOG_FILE`, appended to by a rerun).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from purchase_intent import cli

logger = logging.getLogger("purchase_intent.train")

FAILED_FILE = "FAILED.txt"
LOG_FILE = "train.log"  # the run log (cli.setup_logging): every line, the full config and the history


def start(run_dir: Path, cfg, schema) -> None:
    """Creates (or reopens) the run folder: ``config.json`` and ``schema.json`` written, ``FAILED.txt`` removed.

    The run log (if :func:`purchase_intent.cli.setup_logging` started one) goes to ``train.log`` from here on.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / FAILED_FILE).unlink(missing_ok=True)
    log = cli.log_to_file(run_dir / LOG_FILE)
    cfg.save(run_dir / "config.json")
    schema.save(run_dir / "schema.json")
    logger.info("Run directory: %s%s", run_dir.resolve(), f" (log file: {log.name})" if log else "", extra=cli.STAGE)
    logger.debug("Resolved config: %s", json.dumps(cfg.to_dict()))


def member_callbacks(member_dir: Path, resumed_from: list[int]) -> list:
    """The Keras callbacks that write one member's files in ``member_dir``.

    The best weights by validation ROC-AUC (``best.weights.h5``), a
    ``BackupAndRestore`` folder (``backup/``: a rerun resumes from it; when it
    holds a backup, its epoch is appended to ``resumed_from`` and logged) and
    TensorBoard logs (``tensorboard/``).
    """
    import keras

    if (epoch := backup_epoch(member_dir / "backup")) is not None:
        resumed_from.append(epoch)
        logger.info("Resuming from the backup in %s: %d epoch(s) already done", member_dir / "backup", epoch,
                    extra=cli.STAGE)
    return [keras.callbacks.ModelCheckpoint(str(member_dir / "best.weights.h5"), monitor="val_auc", mode="max",
                                            save_best_only=True, save_weights_only=True),
            # double_checkpoint: a kill during a save leaves the previous backup usable.
            keras.callbacks.BackupAndRestore(str(member_dir / "backup"), double_checkpoint=True),
            keras.callbacks.TensorBoard(str(member_dir / "tensorboard"), profile_batch=0)]


def mark_failed(run_dir: Path, err: BaseException, created: bool = True) -> None:
    """Marks the folder of a failed run: removed if it holds only ``config.json``/``schema.json``/``train.log``,
    else ``FAILED.txt``.

    A folder that existed before the run (``created`` False) is never removed.

    ``FAILED.txt`` holds the error; a rerun with the same ``--output-dir``
    resumes from the backup and removes it.
    """
    import shutil
    import traceback

    if not run_dir.is_dir():
        return
    names = {p.name for p in run_dir.iterdir()}
    if created and names <= {"config.json", "schema.json", LOG_FILE}:
        shutil.rmtree(run_dir, ignore_errors=True)
        logger.error("Training failed before it wrote anything: removed %s", run_dir)
        return
    what = "interrupted" if isinstance(err, KeyboardInterrupt) else f"{type(err).__name__}: {err}"
    (run_dir / FAILED_FILE).write_text(
        f"This run failed: {what}\n{time.strftime('%Y-%m-%d %H:%M:%S')}\n\n"
        + "".join(traceback.format_exception(err)))
    logger.error("Training failed; the run folder %s is marked with %s%s", run_dir, FAILED_FILE,
                 f" (its log: {LOG_FILE})" if (run_dir / LOG_FILE).exists() else "")


def backup_epoch(backup_dir: Path) -> int | None:
    """Epochs completed according to a ``BackupAndRestore`` folder, or None if there is none."""
    meta = backup_dir / "training_metadata.json"
    if not meta.exists():
        return None
    try:
        return int(json.loads(meta.read_text())["epoch"])
    except (ValueError, KeyError, OSError):
        return None
