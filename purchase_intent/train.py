"""Train, evaluate and export: ``python -m purchase_intent.train`` (the command line only).

Reads top to bottom: config -> data (:mod:`purchase_intent.data.source`, in memory or prepared shards) ->
strategy -> task (:class:`purchase_intent.task.PurchaseIntentTask`) -> fit -> output stage -> evaluation
beside baselines -> report files -> export (:func:`purchase_intent.exactness.export_and_check`) -> drivers.
With no arguments: the default model on the built-in Online Retail task, exported for TF Serving. One
line per stage on the terminal; everything else in the run folder's ``train.log`` (``--verbose``: both).
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
    p.add_argument("--preset", default="default", help="named configuration: default, quick or tiny")
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
    cli.add_common_flags(p, verbose_help="also show on the terminal what goes to the run folder's train.log: "
                                         "every module's log lines, the full config, the history, library "
                                         "warnings, and TensorFlow's own log lines")
    return p.parse_args(argv)


def main(argv: list[str] | None = None, callbacks=()) -> dict:
    """Runs one training job; returns the metrics dict written to ``metrics.json``.

    The config and the data are checked before TensorFlow is imported, so
    input errors come back in seconds; a run that fails later marks its
    folder (:func:`mark_failed`). ``callbacks``: more Keras callbacks for
    every fit (e.g. a test's slow steps), after the run's own.
    """
    args = parse_args(argv)
    cli.setup_logging(verbose=args.verbose)  # the run log: kept until the run folder exists (rundir.start)
    logger.debug("Arguments: %s", sys.argv[1:] if argv is None else list(argv))
    try:
        return _main(args, callbacks)
    finally:
        cli.close_run_log()


def _main(args, callbacks) -> dict:
    from purchase_intent.config import get_config, load_config_file

    overrides = cli.config_overrides(args)
    cfg = get_config(args.preset, args.config, overrides)
    from purchase_intent.data.source import open_splits  # pandas: after the config is known to be valid

    given = {o.split("=", 1)[0].strip() for o in overrides} | set(load_config_file(args.config) if args.config else ())
    # In memory, or streamed from a prepared directory (docs/data-at-scale.md): the same run.
    data = open_splits(cfg.data, seed=cfg.train.seed, given=given)
    cfg.validate()  # a prepared event log's settings are now the run's
    from purchase_intent.data.split_checks import warn_few_positives

    warn_few_positives(*data.label_counts("validation"), cfg.train)
    summary = data.summary()
    logger.info("Data: %s: %s examples; %s %% positive", cfg.data.name,
                ", ".join(f"{v['examples']:,} {s}" for s, v in summary.items()),
                " / ".join(f"{100 * v['positive_rate']:.1f}" for v in summary.values()), extra=cli.STAGE)

    run_dir = Path(args.output_dir or Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    from purchase_intent import distribute, rundir, task

    if cfg.train.strategy == "multi_worker":
        run_dir = distribute.worker_dir(run_dir)  # only the chief writes the run directory
    if run_dir.exists() and not run_dir.is_dir():
        raise cli.UserError(f"--output-dir {run_dir} is a file, not a folder")
    created = not run_dir.exists()  # a failed run leaves a folder it created only with results in it
    try:
        distribute.configure_cpu_replicas(cfg.train.cpu_replicas)
        with task.dtype_policy(cfg.train.mixed_precision):
            return run(cfg, run_dir, data, callbacks)
    except BaseException as err:
        rundir.mark_failed(run_dir, err, created)
        raise


def run(cfg, run_dir: Path, data, callbacks=()) -> dict:
    """The training job of :func:`main` for a resolved config and its data (a ``Splits``), under its dtype policy."""
    import keras

    from purchase_intent import evaluate, explain, report, rundir, targeting, task
    from purchase_intent.data.split_checks import split_checks, split_warnings  # leakage, shift, small splits
    from purchase_intent.distribute import make_strategy
    from purchase_intent.output_stage import describe

    rundir.start(run_dir, cfg, schema := data.schema)  # config.json, schema.json; a rerun's FAILED.txt removed
    keras.utils.set_random_seed(cfg.train.seed)
    strategy = make_strategy(cfg.train.strategy, cfg.train.cpu_replicas)
    model = task.PurchaseIntentTask(cfg, data, strategy=strategy)
    for line in model.describe():  # the model's size; the strategy, batch and dtype policy
        logger.info("%s", line, extra=cli.STAGE)

    # Fit: each ensemble member with its own shuffle seed and files (member 0 in the run directory).
    timer, resumed_from = task.EpochTimer.make(), []

    def member_callbacks(i):  # checkpoints, resumable backup, TensorBoard
        return [*rundir.member_callbacks(run_dir if i == 0 else run_dir / f"member_{i}", resumed_from), timer,
                *callbacks]

    t0 = time.perf_counter()
    histories = model.fit(member_callbacks, verbose=1 if sys.stdout.isatty() else 2)
    (run_dir / "history.json").write_text(json.dumps(histories[0], indent=2))
    logger.debug("Train history: %s", histories)  # the run log only
    training = evaluate.fit_summary(histories, timer.train_seconds, time.perf_counter() - t0,
                                    data.examples("train"), resumed_from)
    logger.info("%s", evaluate.describe_fit(training), extra=cli.STAGE)

    # The output stage on validation (trees + stacking, or Platt), then the test split beside the
    # baselines. Scored as fitted (a frozen encoder's texts are cached: BERT does not run again).
    calibration = model.fit_output()
    logger.info("Output stage (fitted on validation): %s", describe(calibration), extra=cli.STAGE)
    p_val = model.predict("validation")
    ev = evaluate.beside_baselines(data, p_val, model.predict("test"), seed=cfg.train.seed)
    results, y_test, p_test = ev["results"], ev["y_test"], ev["p_test"]
    logger.info("%s", evaluate.describe_results(results, len(y_test)), extra=cli.STAGE)
    evaluate.save_figures(y_test, p_test, run_dir)  # calibration.png, curves.png
    served = model.exportable_model()  # around the real text encoder: raw strings in
    weights_sha256, threshold = task.weights_digest(served), results["purchase_intent"]["threshold"]
    metrics = {
        "test": results, "skipped_baselines": ev["skipped"],
        **({"baseline_eval_examples": ev["sample"], "baseline_comparison": ev["comparison"]}
           if ev["comparison"] else {}),
        "training": {**training, "calibration": calibration, "replicas": strategy.num_replicas_in_sync,
                     "weights_sha256": weights_sha256, "dtype_policy": keras.mixed_precision.dtype_policy().name},
        "splits": data.summary(),
        "targeting": targeting.targeting_summary(y_test, p_test, "purchase_intent", threshold),
        "warnings": split_checks(data.frames(), schema, cfg.data) + split_warnings(data.summary()),
    }
    for warning in metrics["warnings"]:
        logger.warning("%s", warning)
    # Written before the export: the predictions of a trained model are never lost to a later step.
    ids = data.columns("test").drop(columns=schema.label)
    report.save_predictions(run_dir / report.PREDICTIONS_FILE, y_test, p_test, ids=ids if ids.shape[1] else None,
                            threshold=threshold, model="purchase_intent")
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    (run_dir / "metrics.txt").write_text(ev["table"] + "\n")

    if cfg.export.enabled:  # checked against the model through tf.saved_model.load and TF Serving's path
        from purchase_intent.exactness import export_and_check

        assets = {"schema.json": schema.to_dict(), "threshold.json": {"threshold": threshold},
                  "metrics.json": metrics, "config.json": cfg.to_dict(),  # then what monitor compares with:
                  "training_stats.json": model.train_stats.compact(seed=cfg.train.seed).to_dict(),
                  "reference_scores.json": evaluate.reference_scores(p_val, seed=cfg.train.seed)}
        metrics["export"] = export_and_check(served, model.preprocessor, cfg.export,
                                             cfg.export.base_dir or run_dir / "export", assets,
                                             warmup=data.frame("validation").head(64),
                                             sample=data.frame("test").head(64),
                                             expected=p_test["purchase_intent"], trees=model.trees)
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
        checked = metrics["export"]
        logger.info("Export: SavedModel: %s (served = in-memory within %.1e; TF Serving's path %.1e). "
                    "Final weights sha256: %s", checked["path"], checked["max_abs_diff"],
                    checked["max_abs_diff_serving"], weights_sha256, extra=cli.STAGE)
        explain.explain_run(cfg, checked["path"], data.frame("test"), run_dir)  # RUN_DIR/explain/: the drivers
    else:
        logger.info("Export: off (export.enabled=false). Final weights sha256: %s", weights_sha256, extra=cli.STAGE)
    logger.info("Report: %s", report.build_report(run_dir), extra=cli.STAGE)
    print(f"\nTest metrics ({cfg.data.name}, threshold chosen on validation):\n{ev['table']}", flush=True)
    print(report.run_summary(run_dir), flush=True)
    return metrics


if __name__ == "__main__":
    sys.exit(cli.run(main))
