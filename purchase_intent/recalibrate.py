"""Refit only the output calibration on recent outcomes: ``python -m purchase_intent.recalibrate``.

Seasons shift (every November the buying rate jumps): the probabilities of
an export drift while its ranking holds. This tool scores recent labelled
rows through an exported version (as TF Serving runs it:
:class:`purchase_intent.predict.Predictor`), fits a Platt map of the exported
probability on the earlier rows,

    p'' = sigmoid(a * logit(p') + b)     (:func:`purchase_intent.calibration.fit_platt`)

and writes a new TF Serving version beside the old one whose
``serving_default`` is the old signature followed by that map: the old
SavedModel, loaded and kept whole (every variable, table and op as it was),
plus two variables ``a`` and ``b``. Nothing else of the model changes, so the
ranking (ROC-AUC) is the old one; the slope must be positive (a negative one
would reverse the ranking: then the model needs retraining, not this).

The later rows (``--holdout-fraction``, by ``--time-column`` order, else the
file's) are held back: the ECE and log loss before and after on them are the
honest figures of the new version, and it is scored on them through both
TF Serving's path (TF1 loader, Session, Grappler) and ``tf.saved_model.load``
(:func:`purchase_intent.exactness.compare_paths`) before it becomes visible.

The new version keeps ``assets.extra/`` of the old one (schema, contract,
config, training statistics, warm-up requests: same inputs, same answers'
key) with ``threshold.json`` mapped through the recalibration (the same rows
are labelled 1), ``reference_scores.json`` mapped too (the monitor compares
new scores with what this version gives on the validation rows) and a
``recalibration`` entry in ``metrics.json`` (the ``test`` figures there stay
the source version's). The report is ``assets.extra/recalibration.json``
(and ``--output``/recalibration.json).

Examples:

    python -m purchase_intent.recalibrate --model runs/<run>/export/purchase_intent \\
        --input november.csv --time-column visit_time

From Python:

>>> from purchase_intent.recalibrate import recalibrate
>>> report = recalibrate("export/purchase_intent/1", labelled_frame)  # doctest: +SKIP
>>> report["version"], report["held_back"]["after"]["ece"]  # doctest: +SKIP
(2, 0.012)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from purchase_intent import cli, contract
from purchase_intent.contract import OUTPUT_KEY, SIGNATURE, existing_versions

logger = logging.getLogger(__name__)

RECALIBRATION_FILE = "recalibration.json"
VERSION_DIR_MODE = 0o755  # as export.VERSION_DIR_MODE: a model server user must read the folder
_EPS = 1e-6  # the clip of calibration.logit and PlattScaling
MIN_CLASS_ROWS = 10  # fewer buyers (or non-buyers) among the fit rows: a warning
EXACT = 1e-6  # the largest difference between TF Serving's path and tf.saved_model.load taken as equal


# -- the source version --------------------------------------------------------
def resolve_source(model: str | Path) -> Path:
    """The version folder of ``--model``: itself, or the highest version of a model folder.

    Raises:
        cli.UserError: no such folder, or no ``saved_model.pb`` / ``assets.extra/schema.json`` there.
    """
    path = Path(model)
    if not path.is_dir():
        raise cli.UserError(f"{path}: no such model folder; give an export such as "
                            "runs/<run>/export/purchase_intent or one of its version folders")
    if not (path / "saved_model.pb").exists() and existing_versions(path):
        path = path / str(existing_versions(path)[-1])
    if not (path / "saved_model.pb").exists():
        raise cli.UserError(f"{model}: no saved_model.pb and no numbered version folder in it; give "
                            "an export such as runs/<run>/export/purchase_intent[/1]")
    if not (path / "assets.extra" / "schema.json").is_file():
        raise cli.UserError(f"{path}/assets.extra/schema.json is missing: the export has no feature schema")
    return path


def target_version(model_dir: Path, version: int = 0) -> int:
    """The new version number: ``version``, or the highest present plus one (what TF Serving serves).

    Raises:
        cli.UserError: the version exists (versions are immutable) or is negative.
    """
    present = existing_versions(model_dir)
    if version < 0:
        raise cli.UserError(f"--version must be a positive number, got {version}")
    if version == 0:
        return (present or [0])[-1] + 1
    if version in present:
        raise cli.UserError(f"{model_dir / str(version)} exists: TF Serving versions are immutable, "
                            "pick another --version (or leave it out: the next free one)")
    if present and version < present[-1]:
        logger.warning("Version %d is below version %d: TF Serving serves the highest version unless its "
                       "model_version_policy names another", version, present[-1])
    return version


# -- rows: the earlier ones fit, the later ones are held back -----------------------
def split_rows(n: int, holdout_fraction: float, times: pd.Series | None = None,
               column: str = "time", where: str = "data") -> tuple[np.ndarray, np.ndarray]:
    """Row positions to fit on (the earlier ones) and to hold back (the later ``holdout_fraction``).

    Without ``times``, the order is the file's. With ``times`` (dates read by
    :func:`purchase_intent.data.readers.parse_times`; a numeric column such as
    ``202411`` or epoch seconds sorted as numbers), the rows are ordered by time
    (stable) and the cut moves back to the first row of its time, so the rows
    of one time stay on one side, as in :func:`purchase_intent.data.time_split`.

    Returns:
        ``(fit, held_back)``: positions into the frame, each in time order.

    Raises:
        cli.UserError: the fraction is outside (0, 1), or a side is left empty.
        SchemaError: a missing or unreadable time (column and row named).
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise cli.UserError(f"--holdout-fraction must be between 0 and 1 (exclusive), got {holdout_fraction}")
    n_held = max(1, int(round(holdout_fraction * n)))
    if times is None:
        order = np.arange(n)
        cut = n - n_held
    else:
        from purchase_intent.data.readers import parse_times
        from purchase_intent.schema import SchemaError, row_ref

        if pd.api.types.is_numeric_dtype(times) and not pd.api.types.is_bool_dtype(times):
            bad = ~np.isfinite(times.to_numpy(np.float64, na_value=np.nan))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise SchemaError(f"{where}: column {column!r} (--time-column), {row_ref(times.index[i])}: "
                                  f"missing time ({int(bad.sum())} such rows)")
            values = times.to_numpy(np.float64)
        else:
            values = parse_times(times, column, where).to_numpy()
        order = np.argsort(values, kind="stable")
        ordered = values[order]
        cut = int(np.searchsorted(ordered, ordered[n - n_held], side="left")) if n > n_held else 0
    if cut <= 0 or cut >= n:
        how = f"by {column!r} ({len(np.unique(values))} distinct times)" if times is not None else "in file order"
        raise cli.UserError(f"{where}: {n} rows {how} leave nothing to "
                            f"{'fit on' if cut <= 0 else 'hold back'} with --holdout-fraction {holdout_fraction}")
    return order[:cut], order[cut:]


# -- the map -----------------------------------------------------------------------
def platt_map(p: np.ndarray, a: float, b: float) -> np.ndarray:
    """``sigmoid(a * logit(p) + b)`` in float64, ``p`` clipped to ``[1e-6, 1 - 1e-6]``: the graph's mirror."""
    from purchase_intent.calibration import logit

    return 1.0 / (1.0 + np.exp(-(a * logit(p) + b)))


def check_fit_labels(y: np.ndarray, where: str = "the fit rows") -> None:
    """Raises unless ``y`` holds both classes; warns when one has fewer than :data:`MIN_CLASS_ROWS` rows.

    Raises:
        cli.UserError: a single class: nothing to fit.
    """
    y = np.asarray(y).astype(int)
    positives = int(y.sum())
    if positives in (0, len(y)):
        raise cli.UserError(f"{where}: all {len(y)} rows have label {y[0]}: a recalibration needs buyers and "
                            "non-buyers; give more rows or a smaller --holdout-fraction")
    if min(positives, len(y) - positives) < MIN_CLASS_ROWS:
        logger.warning("%s: only %d buyers and %d non-buyers: the recalibration will be noisy", where,
                       positives, len(y) - positives)


def fit_recalibration(y: np.ndarray, p: np.ndarray, where: str = "the fit rows") -> tuple[float, float]:
    """``(a, b)`` of :func:`purchase_intent.calibration.fit_platt` on ``(y, p)``, checked.

    Raises:
        cli.UserError: a single class (nothing to fit), or a slope that is not
            positive (the map would reverse the ranking).
    """
    from purchase_intent.calibration import fit_platt

    check_fit_labels(y, where)
    a, b = fit_platt(y, p)
    if not a > 0:
        raise cli.UserError(f"{where}: the fitted slope a = {a:.4g} is not positive: on these rows the model "
                            "no longer ranks buyers above non-buyers, which a recalibration cannot fix; "
                            "retrain the model")
    return a, b


def recalibrated_module(source, a: float, b: float, version: int):
    """The new version's root object: the loaded ``source`` SavedModel, ``a``, ``b`` and ``serving_default``.

    The serving function calls the source's ``serving_default`` signature and
    maps its ``purchase_probability`` (float64 inside, float32 out, same shape).
    ``variables`` lists the source's variables then ``recalibration_<version>/a``
    and ``/b`` (float64, not trainable), as a Keras export lists its own.

    Returns:
        ``(root, concrete serving function)`` for ``tf.saved_model.save(root, dir, signatures=...)``.
    """
    import tensorflow as tf

    signature = source.signatures[SIGNATURE]
    specs = signature.structured_input_signature[1]
    # tf.Module's base class: `variables` is then a plain attribute (a list), as in a Keras export.
    root = tf.__internal__.tracking.AutoTrackable()
    root.source = source
    root.a = tf.Variable(a, dtype=tf.float64, trainable=False, name=f"recalibration_{version}/a")
    root.b = tf.Variable(b, dtype=tf.float64, trainable=False, name=f"recalibration_{version}/b")
    old = list(getattr(source, "variables", []))
    root.variables = old + [root.a, root.b]
    root.trainable_variables = list(getattr(source, "trainable_variables", []))
    root.non_trainable_variables = list(getattr(source, "non_trainable_variables", [])) + [root.a, root.b]

    @tf.function(input_signature=[specs])
    def serve(raw):
        out = root.source.signatures[SIGNATURE](**raw)
        p = tf.clip_by_value(tf.cast(out[OUTPUT_KEY], tf.float64), _EPS, 1.0 - _EPS)
        return {OUTPUT_KEY: tf.cast(tf.sigmoid(root.a * tf.math.log(p / (1.0 - p)) + root.b), tf.float32)}

    root.serving_default = serve
    return root, serve.get_concrete_function()


def _load(version_dir: Path):
    import tensorflow as tf

    try:
        import tensorflow_text  # noqa: F401  (registers the WordPiece ops of text models)
    except ImportError:  # pragma: no cover
        logger.warning("tensorflow_text is not installed: models with text inputs will not load")
    return tf.saved_model.load(str(version_dir))


# -- metrics -------------------------------------------------------------------------
def held_back_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """:func:`purchase_intent.evaluate.binary_metrics` plus the mean predicted probability."""
    from purchase_intent.evaluate import binary_metrics

    out = binary_metrics(y, p, threshold)
    out["mean_probability"] = float(np.mean(p))
    return out


TABLE_ROWS = (("roc_auc", "ROC-AUC"), ("log_loss", "log loss"), ("ece", "ECE"),
              ("mean_probability", "mean probability"), ("positive_rate", "observed buying rate"),
              ("threshold", "threshold"), ("precision", "precision"), ("recall", "recall"))


def format_table(report: dict[str, Any]) -> str:
    """The before/after table of the held-back rows, with a one-line heading."""
    before, after = report["held_back"]["before"], report["held_back"]["after"]
    lines = [f"Recalibrated version {report['source_version']} -> {report['version']}: "
             f"p'' = sigmoid({report['a']:.4f} * logit(p) + {report['b']:.4f}), fitted on "
             f"{report['rows_fit']} rows; {report['rows_held_back']} later rows held back:",
             f"{'':22}{'before':>10}{'after':>10}"]
    for key, label in TABLE_ROWS:
        lines.append(f"{label:22}{before[key]:>10.4f}{after[key]:>10.4f}")
    ex = report["exactness"]
    lines.append(f"TF Serving's path vs tf.saved_model.load: max |diff| {ex['max_abs_diff_serving']:.2e} "
                 f"over {ex['rows']} rows")
    return "\n".join(lines)


# -- the new version --------------------------------------------------------------
def _mapped_reference(reference: dict, a: float, b: float, version: int) -> dict:
    """``reference_scores.json`` as the new version scores those rows (its sample mapped)."""
    sample = platt_map(np.asarray(reference.get("sample", []), np.float64), a, b)
    out = dict(reference)
    out["sample"] = [round(float(v), 7) for v in np.sort(sample)]
    if len(sample):  # the mean of every row was kept, not the rows: the sample's mean stands for it
        out["mean"] = float(sample.mean())
    out["recalibration"] = {"a": a, "b": b, "version": version, "mean_before": reference.get("mean"),
                            "note": "sample mapped through the recalibration; mean is the mapped sample's"}
    return out


def _replay_warmup(version_dir: Path, session) -> int:
    """Runs the version's warm-up requests through ``session`` (TF Serving replays them at load)."""
    from purchase_intent.serving.codec import tensor_proto_to_ndarray
    from purchase_intent.serving.warmup import WARMUP_FILE, read_warmup_requests

    if not (version_dir / "assets.extra" / WARMUP_FILE).is_file():
        return 0
    logs = read_warmup_requests(version_dir)
    for log in logs:
        inputs = log.predict_log.request.inputs
        session({k: tensor_proto_to_ndarray(v) for k, v in inputs.items()})
    return len(logs)


def recalibrate(source: str | Path, frame: pd.DataFrame, *, times: pd.Series | None = None,
                time_column: str | None = None, holdout_fraction: float = 0.5, version: int = 0,
                model_dir: str | Path | None = None, input_name: str = "frame",
                batch_size: int = 512) -> dict[str, Any]:
    """Fits the recalibration on the earlier rows of ``frame`` and writes it as a new version.

    Args:
        source: the version folder to recalibrate (or a model folder: its highest version).
        frame: recent labelled rows, validated (``schema.validate`` with the label).
        times: optional times of the rows (same order); None: the frame's order.
        time_column: the name of ``times``, for messages and the report.
        holdout_fraction: float. The later share of the rows held back for the figures.
        version: int. The new version number; 0: the highest present plus one.
        model_dir: where the new version goes (default: beside the source).
        input_name: where the rows came from, for messages and the report.
        batch_size: int. Rows per call of the model.

    Returns:
        The report (``recalibration.json``): ``a``, ``b``, ``source_version``,
        ``version``, ``path``, ``rows_fit``, ``rows_held_back``, ``held_back``
        (``before``/``after`` metrics), ``threshold``, ``exactness``, ...

    Raises:
        cli.UserError: bad arguments, a single class or a non-positive slope on the fit rows.
    """
    from purchase_intent.schema import FeatureSchema

    source_dir = resolve_source(source)
    model_dir = Path(model_dir) if model_dir is not None else source_dir.parent
    version = target_version(model_dir, version)
    fit, held = split_rows(len(frame), holdout_fraction, times, time_column or "time", input_name)

    schema = FeatureSchema.load(source_dir / "assets.extra" / "schema.json")
    label = schema.label
    y = frame[label].to_numpy().astype(int)
    fit_where = f"{input_name}: the {len(fit)} fit rows"
    check_fit_labels(y[fit], fit_where)  # before TensorFlow and the model load

    import tensorflow as tf

    from purchase_intent.exactness import awkward_rows, compare_paths, export_tree_thresholds
    from purchase_intent.export import load_serving_fn
    from purchase_intent.predict import Predictor
    from purchase_intent.serving.session import SessionModel

    predictor = Predictor(source_dir)
    features = frame.drop(columns=[label])
    p_old = predictor.predict(features, batch_size=batch_size, validate=False)
    threshold_before = predictor.threshold
    del predictor
    a, b = fit_recalibration(y[fit], p_old[fit], fit_where)
    logger.info("Platt recalibration of version %s on %d rows: a = %.6f, b = %.6f", source_dir.name,
                len(fit), a, b)

    final = model_dir / str(version)
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_dir))
    try:
        root, serve = recalibrated_module(_load(source_dir), a, b, version)
        tf.saved_model.save(root, str(tmp), signatures={SIGNATURE: serve})
        del root, serve
        shutil.copytree(source_dir / "assets.extra", tmp / "assets.extra", dirs_exist_ok=True)

        # The new version scored through TF Serving's path and tf.saved_model.load, before it is visible:
        # the recent rows, then rows where the two could part (tree splits, extremes, odd sequences).
        max_events = int(contract.read_contract(tmp)["max_events"])
        awkward = awkward_rows(features.head(64), schema, export_tree_thresholds(tmp), max_events=max_events,
                               max_thresholds=64)
        rows = pd.concat([features, awkward], ignore_index=True)
        session = SessionModel(tmp)
        check = compare_paths(tmp, rows, schema, fn=load_serving_fn(tmp), session=session,
                              batch_size=batch_size)
        p_new = check.pop("served")[:len(frame)]
        warmup = _replay_warmup(tmp, session)
        session.close()
        formula = float(np.max(np.abs(p_new - platt_map(p_old, a, b)), initial=0.0))
        if check["max_abs_diff_serving"] > EXACT:
            logger.warning("TF Serving's path and tf.saved_model.load differ by up to %.2e on the new version",
                           check["max_abs_diff_serving"])

        threshold_after = float(platt_map(np.array([threshold_before]), a, b)[0])
        report = {
            "a": a, "b": b, "source": str(source_dir), "source_version": int(source_dir.name)
            if source_dir.name.isdigit() else source_dir.name, "version": version, "path": str(final),
            "input": input_name, "time_column": time_column, "holdout_fraction": holdout_fraction,
            "rows_fit": int(len(fit)), "rows_held_back": int(len(held)),
            "fit_positive_rate": float(y[fit].mean()),
            "held_back": {"before": held_back_metrics(y[held], p_old[held], threshold_before),
                          "after": held_back_metrics(y[held], p_new[held], threshold_after)},
            "threshold": {"before": threshold_before, "after": threshold_after,
                          "rule": "the source's threshold mapped through the recalibration: same decisions"},
            "exactness": {**check, "max_abs_diff_formula": formula, "warmup_requests_replayed": warmup},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        _write_assets(tmp / "assets.extra", report)
        os.chmod(tmp, VERSION_DIR_MODE)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    before, after = report["held_back"]["before"], report["held_back"]["after"]
    logger.info("Wrote version %d to %s: held-back ECE %.4f -> %.4f, log loss %.4f -> %.4f", version, final,
                before["ece"], after["ece"], before["log_loss"], after["log_loss"])
    if after["log_loss"] > before["log_loss"]:
        logger.warning("The recalibration does not lower the held-back log loss (%.4f -> %.4f): the recent "
                       "rows may not have shifted; version %d is written all the same", before["log_loss"],
                       after["log_loss"], version)
    return report


def _write_assets(extra: Path, report: dict[str, Any]) -> None:
    """threshold.json, metrics.json and reference_scores.json of the new version, and recalibration.json."""
    a, b, version = report["a"], report["b"], report["version"]
    entry = {k: v for k, v in report.items() if k != "path"}
    threshold_file = extra / "threshold.json"
    threshold = json.loads(threshold_file.read_text()) if threshold_file.is_file() else {}
    threshold.update({"threshold": report["threshold"]["after"],
                      "recalibration": {"threshold_before": report["threshold"]["before"], "a": a, "b": b,
                                        "source_version": report["source_version"]}})
    threshold_file.write_text(json.dumps(threshold, indent=2))
    metrics_file = extra / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    metrics["recalibration"] = {**entry, "note": "the other figures are the source version's, before this "
                                                 "recalibration (same ROC-AUC; probabilities differ)"}
    metrics_file.write_text(json.dumps(metrics, indent=2, default=float))
    reference_file = extra / "reference_scores.json"
    if reference_file.is_file():
        reference = json.loads(reference_file.read_text())
        reference_file.write_text(json.dumps(_mapped_reference(reference, a, b, version), indent=2))
    (extra / RECALIBRATION_FILE).write_text(json.dumps(entry, indent=2, default=float))


# -- command line ----------------------------------------------------------------------
def read_labelled(path: str | Path, schema, time_column: str | None = None
                  ) -> tuple[pd.DataFrame, pd.Series | None]:
    """The validated rows of a labelled table and their times (``time_column``), as scoring reads tables.

    Raises:
        SchemaError: unreadable file, a missing feature, label or time column, a bad value (row named).
    """
    from purchase_intent.data.readers import read_table
    from purchase_intent.schema import SchemaError, check_delimiters

    raw = read_table(path, schema)
    if time_column and time_column not in raw.columns:
        raise SchemaError(f"{path}: no column {time_column!r} (--time-column); the table has "
                          f"{list(raw.columns)[:30]}")
    if all(c in raw.columns for c in schema.feature_names):
        check_delimiters(raw, schema, str(path), scoring=True)
    frame = schema.validate(raw, require_label=True, where=str(path))
    times = raw[time_column].reset_index(drop=True) if time_column else None
    return frame, times


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m purchase_intent.recalibrate",
        description="Refit only the output calibration of an export on recent labelled rows "
                    "(p'' = sigmoid(a * logit(p) + b), fitted on the earlier rows) and write it as a new "
                    "TF Serving version beside the old one; prints ECE and log loss before/after on the "
                    "later rows, held back.",
        formatter_class=cli.HelpFormatter)
    p.add_argument("--model", required=True,
                   help="export to recalibrate: a model folder such as runs/<run>/export/purchase_intent "
                        "(its highest version) or one version folder")
    p.add_argument("--input", required=True,
                   help="CSV or Parquet of recent rows named as in the schema, with the label column "
                        "(the observed outcome); sequences as '|'-delimited strings")
    p.add_argument("--time-column", default=None,
                   help="column ordering the rows in time (dates, or numbers such as epoch seconds); "
                        "default: the file's order")
    p.add_argument("--holdout-fraction", type=float, default=0.5,
                   help="the later share of the rows held back to measure the recalibration (default: 0.5)")
    p.add_argument("--version", type=int, default=0,
                   help="number of the new version (default: the highest present plus one, which TF "
                        "Serving then serves)")
    p.add_argument("--output", default=None,
                   help=f"folder to write {RECALIBRATION_FILE} to as well (it is always in the new "
                        "version's assets.extra/)")
    p.add_argument("--batch-size", type=int, default=512, help="rows per model call (default: 512)")
    cli.add_common_flags(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cli.setup_logging()
    from purchase_intent.data.readers import check_table_file
    from purchase_intent.schema import FeatureSchema

    if not 0.0 < args.holdout_fraction < 1.0:
        raise cli.UserError(f"--holdout-fraction must be between 0 and 1 (exclusive), got {args.holdout_fraction}")
    if args.batch_size < 1:
        raise cli.UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    source = resolve_source(args.model)  # before the table and TensorFlow load
    schema = FeatureSchema.load(source / "assets.extra" / "schema.json")
    check_table_file(args.input)
    frame, times = read_labelled(args.input, schema, args.time_column)
    report = recalibrate(source, frame, times=times, time_column=args.time_column,
                         holdout_fraction=args.holdout_fraction, version=args.version,
                         input_name=str(args.input), batch_size=args.batch_size)
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        (out / RECALIBRATION_FILE).write_text(json.dumps(report, indent=2, default=float))
    print(format_table(report), flush=True)
    print(f"New version: {report['path']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
