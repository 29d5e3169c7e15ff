"""Train, evaluate and export: ``python -m purchase_intent.train``.

Reads top to bottom: config -> strategy -> data -> text encoder ->
preprocessor -> model -> fit -> evaluation beside baselines -> export.
With no arguments it trains the default model on the built-in Online Retail
task (MiniLM text branch included) and exports it for TF Serving.

This module is the command line only: the run directory, its files and
resumption, ``FAILED.txt``. Building, fitting and scoring the model is
:mod:`purchase_intent.task`; strategies :mod:`purchase_intent.distribute`;
the baselines :mod:`purchase_intent.baselines`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from purchase_intent import cli

logger = logging.getLogger("purchase_intent.train")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m purchase_intent.train",
        description="Train the purchase-intent fusion model, evaluate it beside two baselines, "
                    "and export a SavedModel for TF Serving.",
        epilog="Every config key, its default and meaning: --help-config. Input errors print one "
               "line 'error: ...' and exit with status 2 (--debug: the traceback).",
        formatter_class=cli.HelpFormatter)
    p.add_argument("--preset", default="default", help="named configuration: default or tiny")
    p.add_argument("--data", default=None,
                   help="online_retail (built in), synthetic, or a CSV/Parquet path "
                        "(then also --set data.schema=SCHEMA.json); default: the preset's")
    p.add_argument("--config", default=None, help="JSON/YAML file of config sections")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set model.lstm_units=32 (repeatable; "
                        "every key: --help-config)")
    p.add_argument("--output-dir", default=None,
                   help="run directory (default runs/<timestamp>); rerunning with the same "
                        "directory resumes from its last backup")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: the preset's)")
    p.add_argument("--strategy", default=None, choices=["auto", "default", "mirrored", "multi_worker"],
                   help="tf.distribute strategy; auto = mirrored when more than one GPU is visible")
    p.add_argument("--cpu-replicas", type=int, default=None,
                   help="split the CPU into N logical devices (exercise MirroredStrategy without GPUs)")
    p.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
    p.add_argument("--hash-ids", action="store_true",
                   help="replace customer ids by a SHA-256 pseudonym at ingestion (data.hash_ids=true)")
    cli.add_config_flags(p)
    cli.add_common_flags(p)
    return p.parse_args(argv)


def config_overrides(args) -> list[str]:
    """The ``--set`` overrides plus the shortcut flags a command has (``--data``, ``--epochs``, ...)."""
    overrides = list(args.overrides)
    for flag, key in (("data", "data.name"), ("epochs", "train.epochs"), ("strategy", "train.strategy"),
                      ("cpu_replicas", "train.cpu_replicas")):
        value = getattr(args, flag, None)
        if value is not None and value != "":
            overrides.append(f"{key}={value}")
    return overrides


FAILED_FILE = "FAILED.txt"
MIN_VALIDATION_POSITIVES = 20  # fewer: early stopping and the threshold rest on a handful of buyers


def main(argv: list[str] | None = None, callbacks=()) -> dict:
    """Runs one training job; returns the metrics dict written to ``metrics.json``.

    The config and the data are checked before TensorFlow is imported, so
    input errors come back in seconds; a run that fails later marks its
    folder (:func:`mark_failed`). ``callbacks``: more Keras callbacks for
    every fit (e.g. a test's slow steps), after the run's own.
    """
    args = parse_args(argv)
    cli.setup_logging()
    from purchase_intent.config import get_config

    overrides = config_overrides(args)
    if args.no_export:
        overrides.append("export.enabled=false")
    if args.hash_ids:
        overrides.append("data.hash_ids=true")
    cfg = get_config(args.preset, args.config, overrides)
    from purchase_intent.data import load_splits  # pandas: after the config is known to be valid
    from purchase_intent.data.prepared import Prepared

    # In memory, or streamed from a prepared directory (README "Your data at scale").
    prepared = Prepared.load(cfg.data.name) if Prepared.is_prepared(cfg.data.name) else None
    if prepared:
        from purchase_intent.config import load_config_file
        from purchase_intent.task import prepared_splits

        given = {o.split("=", 1)[0].strip() for o in overrides}
        given |= set(load_config_file(args.config)) if args.config else set()
        prepared.apply_data_settings(cfg.data, given)  # an event log's: how live sessions become examples
        cfg.validate()
        schema, splits = prepared.schema, prepared_splits(prepared)
    else:
        schema, splits = load_splits(cfg.data, seed=cfg.train.seed)
    from purchase_intent.data.prepared import label_counts

    warn_few_positives(*label_counts(prepared or splits, "validation", schema.label), cfg.train)

    run_dir = Path(args.output_dir or Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    from purchase_intent import distribute, task

    if cfg.train.strategy == "multi_worker":
        run_dir = distribute.worker_dir(run_dir)  # only the chief writes the run directory
    if run_dir.exists() and not run_dir.is_dir():
        raise cli.UserError(f"--output-dir {run_dir} is a file, not a folder")
    created = not run_dir.exists()
    try:
        distribute.configure_cpu_replicas(cfg.train.cpu_replicas)
        with task.dtype_policy(cfg.train.mixed_precision):
            return run(args, cfg, run_dir, schema, splits, prepared, callbacks)
    except BaseException as err:
        mark_failed(run_dir, err, created)
        raise


def warn_few_positives(positives: int, examples: int, train_cfg) -> None:
    """Warns when the validation split has too few positives for early stopping to mean much.

    ``positives`` and ``examples``: the validation split's counts
    (:func:`purchase_intent.data.prepared.label_counts`: Python ints, from a
    frame or a prepared manifest alike).
    """
    if positives < MIN_VALIDATION_POSITIVES:
        logger.warning("The validation split has only %d positive example(s) (of %d): early stopping "
                       "(patience %d) and the decision threshold rest on them, so the kept epoch is "
                       "largely chance. Give it more (--set data.validation_fraction=0.25, or more rows "
                       "labelled validation in data.split_column).", positives, examples,
                       train_cfg.early_stopping_patience)


def mark_failed(run_dir: Path, err: BaseException, created: bool = True) -> None:
    """Marks the folder of a failed run: removed if it holds only ``config.json``, else ``FAILED.txt``.

    A folder that existed before the run (``created`` False) is never removed.

    ``FAILED.txt`` holds the error; a rerun with the same ``--output-dir``
    resumes from the backup and removes it.
    """
    import shutil
    import traceback

    if not run_dir.is_dir():
        return
    names = {p.name for p in run_dir.iterdir()}
    if created and names <= {"config.json"}:
        shutil.rmtree(run_dir, ignore_errors=True)
        logger.error("Training failed before it wrote anything: removed %s", run_dir)
        return
    what = "interrupted" if isinstance(err, KeyboardInterrupt) else f"{type(err).__name__}: {err}"
    (run_dir / FAILED_FILE).write_text(
        f"This run failed: {what}\n{time.strftime('%Y-%m-%d %H:%M:%S')}\n\n"
        + "".join(traceback.format_exception(err)))
    logger.error("Training failed; the run folder %s is marked with %s", run_dir, FAILED_FILE)


def _backup_epoch(backup_dir: Path) -> int | None:
    """Epochs completed according to a ``BackupAndRestore`` folder, or None if there is none."""
    meta = backup_dir / "training_metadata.json"
    if not meta.exists():
        return None
    try:
        return int(json.loads(meta.read_text())["epoch"])
    except (ValueError, KeyError, OSError):
        return None


def run(args: argparse.Namespace, cfg, run_dir: Path, schema, splits, prepared=None, callbacks=()) -> dict:
    """The training job of :func:`main` for a resolved config and loaded data, under its dtype policy.

    ``prepared``: a :class:`~purchase_intent.data.prepared.Prepared` directory whose splits are
    streamed (``splits`` then holds bounded samples of them: :func:`task.prepared_splits`), or None.
    ``callbacks``: see :func:`main`.

    From a prepared directory, memory stays bounded: training, early stopping and the model's
    predictions of validation and test stream the shards; the labels and ids are read from them
    as small columns; the baselines score the frames of ``splits``. When those are samples
    (splits larger than ``task.PREPARED_EVAL_SAMPLE``), ``metrics.json``'s ``test`` holds the
    model on the whole test split and ``baseline_comparison`` every model (the model too) on the
    sample's rows; ``predictions_test.csv`` then has the model's column only.
    """
    import keras
    import numpy as np

    from purchase_intent import baselines, evaluate, task
    from purchase_intent.distribute import make_strategy
    from purchase_intent.export import export_model, load_serving_fn
    from purchase_intent.model import average_models
    from purchase_intent.data.prepared import label_counts
    from purchase_intent.pipeline import count_class_weights
    from purchase_intent.preprocessing import raw_batch

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / FAILED_FILE).unlink(missing_ok=True)
    cfg.save(run_dir / "config.json")
    logger.info("Run directory: %s", run_dir.resolve())
    logger.info("Resolved config: %s", json.dumps(cfg.to_dict()))
    keras.utils.set_random_seed(cfg.train.seed)
    strategy = make_strategy(cfg.train.strategy, cfg.train.cpu_replicas)
    logger.info("Strategy %s with %d replica(s); global batch size %d; dtype policy %s",
                type(strategy).__name__, strategy.num_replicas_in_sync, cfg.data.batch_size,
                keras.mixed_precision.dtype_policy().name)

    # Data (loaded and checked by main; in memory before TensorFlow started, or a prepared directory).
    schema.save(run_dir / "schema.json")
    train_df, val_df, test_df = splits["train"], splits["validation"], splits["test"]
    train_data = prepared or train_df
    n_train = prepared.examples("train") if prepared else len(train_df)

    preprocessor, members, exportable = task.build_members(cfg, schema, splits, strategy, text_cache=True,
                                                           prepared=prepared)
    weights = count_class_weights(*label_counts(prepared or splits, "train", schema.label),
                                  cfg.train.class_weight)
    if weights:
        logger.info("Class weights (imbalanced labels): %s", weights)

    # Fit: each ensemble member with its own shuffle seed and files (member 0 in the run directory).
    timer = task.EpochTimer.make()
    histories, resumed_from = [], None
    t0 = time.perf_counter()
    for i, member in enumerate(members):
        member_dir = run_dir if i == 0 else run_dir / f"member_{i}"
        train_ds, val_ds = task.datasets(cfg, schema, preprocessor, train_data, prepared or val_df,
                                         seed=cfg.train.seed + i, weights=weights, strategy=strategy)
        files = [
            keras.callbacks.ModelCheckpoint(str(member_dir / "best.weights.h5"), monitor="val_auc",
                                            mode="max", save_best_only=True, save_weights_only=True),
            # double_checkpoint: a kill during a save leaves the previous backup usable.
            keras.callbacks.BackupAndRestore(str(member_dir / "backup"), double_checkpoint=True),
            keras.callbacks.TensorBoard(str(member_dir / "tensorboard"), profile_batch=0),
        ]
        backup_epoch = _backup_epoch(member_dir / "backup")
        if backup_epoch is not None:
            resumed_from = backup_epoch if resumed_from is None else resumed_from
            logger.info("Resuming from the backup in %s: %d epoch(s) already done",
                        member_dir / "backup", backup_epoch)
        histories.append(task.fit(member, cfg, train_ds, val_ds, callbacks=[*files, timer, *callbacks],
                                  steps_per_epoch=-(-n_train // cfg.data.batch_size), strategy=strategy,
                                  verbose=1 if sys.stdout.isatty() else 2))
    fit_seconds = time.perf_counter() - t0

    def one_model(ms):
        return ms[0] if len(ms) == 1 else average_models(ms, preprocessor)

    # Scored as fitted (a frozen encoder's texts of every split are in the cache: BERT does not run
    # again here); exported around the real text encoder (raw strings in), checked against the scores.
    scorer = one_model(members)
    served = exportable(members)
    model = scorer if served is members else one_model(served)
    hist = histories[0]
    (run_dir / "history.json").write_text(json.dumps(hist, indent=2))
    logger.info("Train history: %s", histories if len(histories) > 1 else hist)
    weights_sha256 = task.weights_digest(model)
    logger.info("Final weights sha256: %s", weights_sha256)
    epoch_s = float(np.median(timer.train_seconds)) if timer.train_seconds else float("nan")
    throughput = n_train / epoch_s if timer.train_seconds else float("nan")
    logger.info("Training: %.1f s in fit, median %.2f s per epoch (training part), %.0f examples/s",
                fit_seconds, epoch_s, throughput)

    # Evaluation beside the baselines on the same split. From a prepared directory the fusion model
    # scores the whole validation and test splits streamed from their shards; labels and ids are read
    # from the shards alone, in the same order; the baselines score the frames of prepared_splits.
    val_data, test_data = prepared or val_df, prepared or test_df
    if prepared:
        from purchase_intent.data.prepared import read_columns

        val_cols, test_cols = read_columns(prepared, "validation", ids=False), read_columns(prepared, "test")
    else:
        val_cols, test_cols = val_df, test_df
    y_val = val_cols[schema.label].to_numpy()
    y_test = test_cols[schema.label].to_numpy()

    def predict(data, split):
        return task.predict(scorer, cfg, schema, preprocessor, data, split)

    same = model is scorer
    # The boosted-tree branch (train.boosted_trees) on the training frame (from a prepared directory:
    # its sample), stacked with the network on validation; else Platt scaling.
    scorer, calibration, trees = task.fit_output(scorer, cfg, schema, preprocessor, train_df, val_data,
                                                 y_val, predict(val_data, "validation"))
    model = scorer if same else task.apply_calibration(model, calibration, trees, preprocessor)
    p_val = {"purchase_intent": predict(val_data, "validation")}
    p_test = {"purchase_intent": predict(test_data, "test")}
    # Fails soft: a baseline that raises is logged and left out, the trained model is kept.
    baseline_probs, skipped_baselines = baselines.baseline_predictions(splits, schema, seed=cfg.train.seed)
    sample = {"validation": len(val_df), "test": len(test_df)}  # the rows the baselines score
    sampled = sample["validation"] < len(y_val) or sample["test"] < len(y_test)
    comparison = None
    if not sampled:  # every model on the whole split
        p_val.update(baseline_probs["validation"])
        p_test.update(baseline_probs["test"])
        results = evaluate.evaluate_all(y_val, p_val, y_test, p_test)
        table = evaluate.format_table(results)
    else:  # the model on the whole split; the comparison: every model on the baselines' rows
        results = evaluate.evaluate_all(y_val, p_val, y_test, p_test)
        comparison = compare_on_sample(y_val, p_val, y_test, p_test, baseline_probs, sample,
                                       val_df[schema.label].to_numpy(), test_df[schema.label].to_numpy())
        table = (evaluate.format_table(results) + f"\n\nBeside the baselines, every model on the same "
                 f"first {sample['validation']:,} validation and {sample['test']:,} test examples "
                 f"(of {len(y_val):,} and {len(y_test):,}; the baselines score a sample):\n"
                 + evaluate.format_table(comparison["test"]))
        logger.info("The baselines scored the first %d validation and %d test examples (of %d and %d); "
                    "metrics.json's baseline_comparison holds every model on those rows",
                    sample["validation"], sample["test"], len(y_val), len(y_test))
    for plot, file_name in ((evaluate.plot_calibration, "calibration.png"),
                            (evaluate.plot_curves, "curves.png")):
        try:
            plot(y_test, p_test, run_dir / file_name)
        except Exception as err:  # a figure is not worth the trained model
            logger.warning("Figure %s skipped: %s: %s", file_name, type(err).__name__, err)
    metrics = {
        "test": results,
        "skipped_baselines": skipped_baselines,
        **({"baseline_eval_examples": sample} if prepared else {}),
        **({"baseline_comparison": comparison} if comparison else {}),
        "training": {"examples": n_train, "epochs_run": len(hist.get("loss", [])),
                     "resumed_from_epoch": resumed_from,
                     "fit_seconds": fit_seconds, "median_epoch_seconds": epoch_s,
                     "examples_per_second": throughput, "calibration": calibration,
                     "ensemble_members": len(members),
                     "best_epochs": [int(np.argmax(h["val_auc"])) + 1 for h in histories if h.get("val_auc")],
                     "replicas": strategy.num_replicas_in_sync, "weights_sha256": weights_sha256,
                     "dtype_policy": keras.mixed_precision.dtype_policy().name},
        "splits": ({k: {"examples": prepared.examples(k), "positive_rate": v["label_rate"]}
                    for k, v in prepared.manifest["splits"].items()} if prepared else
                   {k: {"examples": len(v), "positive_rate": float(v[schema.label].mean())}
                    for k, v in splits.items()}),
    }
    from purchase_intent import report  # figures + report.md/html, rebuildable without the model
    from purchase_intent.data.split_checks import split_checks  # leakage and shift across the splits

    # Whom to contact: top 5-50 % by probability -> share of buyers reached, precision, lift.
    metrics["targeting"] = report.targeting_summary(y_test, p_test, "purchase_intent",
                                                    results["purchase_intent"]["threshold"])
    metrics["warnings"] = split_checks(splits, schema, cfg.data) + report.split_warnings(metrics["splits"])
    for warning in metrics["warnings"]:
        logger.warning("%s", warning)
    id_columns = [c for c in schema.id if c in test_cols.columns]
    # Written before the export: the predictions of a trained model are never lost to a later step.
    report.save_predictions(run_dir / report.PREDICTIONS_FILE, y_test, p_test,
                            ids=test_cols[id_columns] if id_columns else None,
                            threshold=results["purchase_intent"]["threshold"], model="purchase_intent")
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    (run_dir / "metrics.txt").write_text(table + "\n")
    print(f"\nTest metrics ({cfg.data.name}, threshold chosen on validation):\n{table}\n", flush=True)

    # Export.
    if cfg.export.enabled:
        threshold = results["purchase_intent"]["threshold"]
        version_dir = export_model(
            model, preprocessor, cfg.export.base_dir or run_dir / "export", cfg.export.model_name,
            cfg.export.version,
            extra_assets={"schema.json": schema.to_dict(), "threshold.json": {"threshold": threshold},
                          "metrics.json": metrics, "config.json": cfg.to_dict()},
            warmup_examples=val_df.head(64))
        sample = test_df.head(64)
        from purchase_intent.contract import OUTPUT_KEY
        serving_fn = load_serving_fn(version_dir)
        served = serving_fn(**raw_batch(sample, schema))[OUTPUT_KEY]
        diff = float(np.max(np.abs(served.numpy() - p_test["purchase_intent"][:len(sample)])))
        logger.info("Export check: max |served - in-memory| = %.2e over %d test examples", diff, len(sample))
        from purchase_intent.exactness import export_check

        serving = export_check(version_dir, model, preprocessor, sample, trees=trees, fn=serving_fn)
        logger.info("Export check through TF Serving's path (TF1 loader, Session, Grappler): max |served - "
                    "in-memory| = %.2e over %d rows (every tree split, extremes, odd sequences)",
                    serving["max_abs_diff_in_memory_serving"], serving["rows"])
        if serving["max_abs_diff_in_memory_serving"] > 1e-6:
            logger.warning("TF Serving would answer up to %.2e away from this model", serving["max_abs_diff_in_memory_serving"])
        metrics["export"] = {"path": str(version_dir), "max_abs_diff": diff,
                             "max_abs_diff_serving": serving["max_abs_diff_in_memory_serving"],
                             "serving_rows_checked": serving["rows"]}
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
        print(f"SavedModel: {version_dir}\nRun directory: {run_dir}", flush=True)
    logger.info("Report: %s", report.build_report(run_dir))
    print(report.run_summary(run_dir), flush=True)
    return metrics


def compare_on_sample(y_val, p_val, y_test, p_test, baseline_probs, sample, y_val_sample,
                      y_test_sample) -> dict:
    """Every model on the rows the baselines scored: the first ``sample[split]`` examples of each split.

    The fusion model's probabilities of the whole splits (file order) are cut to those rows; each
    model's threshold is chosen on those validation rows, as :func:`evaluate.evaluate_all` does
    (the model's own ``test`` entry: threshold chosen on the whole validation split).

    Returns:
        ``metrics.json``'s ``baseline_comparison``: ``{"examples", "rows", "test"}``.

    Raises:
        RuntimeError: the sample's labels are not those of the first streamed examples.
    """
    import numpy as np

    from purchase_intent import evaluate

    nv, nt = sample["validation"], sample["test"]
    if not (np.array_equal(y_val[:nv], y_val_sample) and np.array_equal(y_test[:nt], y_test_sample)):
        raise RuntimeError("the baselines' sample rows are not the first rows of the streamed splits")
    pv = {name: p[:nv] for name, p in p_val.items()} | baseline_probs["validation"]
    pt = {name: p[:nt] for name, p in p_test.items()} | baseline_probs["test"]
    return {"examples": dict(sample), "rows": "the first examples of each split, in shard order",
            "test": evaluate.evaluate_all(y_val[:nv], pv, y_test[:nt], pt)}


if __name__ == "__main__":
    sys.exit(cli.run(main))
