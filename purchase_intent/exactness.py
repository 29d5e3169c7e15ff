"""Does an export answer the same under TF Serving's execution path? Awkward rows and the comparison.

TF Serving runs an export through the TF1 loader in a Session, with
Grappler's rewrites on (:class:`purchase_intent.serving.session.SessionModel`);
``predict``, the export check and most tests call ``tf.saved_model.load``.
A rewrite may move a floating-point value by one ULP: harmless for the network
(a continuous function), fatal for a comparison with a threshold, which is
what the in-graph boosted trees do. So the exports are compared on the rows
where that would show:

* every split threshold of the fitted trees, on the value itself and its two
  float32 neighbours, in every numeric column the trees read (with
  ``feature_fn``, the raw values whose tree feature sits on each threshold,
  found by bisection: any reading of the features, any design);
* extremes (±3.4e38, ±inf, NaN, ±0, subnormals, ±1e30) and missing values;
* empty, one-event and over-long sequences, interior ``""`` events, unseen
  items and categories.

:func:`compare_paths` runs rows through both paths and reports the largest
difference; the tests, the export check of ``train`` and
``benchmarks/serving_exactness.py`` use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from purchase_intent import contract

EXTREMES = np.array([3.4028235e38, -3.4028235e38, np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-45, -1e-45,
                     1e30, -1e30, 1.0, -1.0, 0.5], np.float32)


def export_tree_thresholds(version_dir: str | Path) -> dict[int, np.ndarray]:
    """``{tree feature index: its split thresholds (float32)}`` of the export's boosted trees ({} without)."""
    import tensorflow as tf

    from purchase_intent.trees import LAYER_NAME

    loaded = tf.saved_model.load(str(version_dir))
    found = {v.name.split(":")[0]: v.numpy() for v in loaded.variables
             if v.name.startswith(f"{LAYER_NAME}/")}
    if f"{LAYER_NAME}/threshold" not in found:
        return {}
    return split_thresholds(found[f"{LAYER_NAME}/feature_left"][:, 0], found[f"{LAYER_NAME}/threshold"])


def split_thresholds(feature: np.ndarray, threshold: np.ndarray) -> dict[int, np.ndarray]:
    """``{feature index: sorted distinct finite thresholds}`` of a flattened node table (leaves: +inf)."""
    split = np.isfinite(threshold)
    return {int(j): np.unique(threshold[split & (feature == j)]) for j in np.unique(feature[split])}


def _float_keys(x: np.ndarray) -> np.ndarray:
    """float32 -> int64 keys in the same order (-0.0 and 0.0 adjacent)."""
    bits = np.asarray(x, np.float32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF) - 1, bits)


def _key_floats(k: np.ndarray) -> np.ndarray:
    k = np.asarray(k, np.int64)
    bits = np.where(k < 0, (-(k + 1)) | -0x80000000, k).astype(np.int32)
    return bits.view(np.float32)


def boundary_values(values_fn: Callable[[np.ndarray], np.ndarray], thresholds: np.ndarray) -> np.ndarray:
    """For each threshold ``t``, the largest float32 ``r`` with ``values_fn(r) <= t`` and the next float.

    ``values_fn`` maps raw float32 values to the (non-decreasing) tree feature.
    Thresholds no finite value reaches are skipped. Returns a 1-D float32 array.
    """
    t = np.asarray(thresholds, np.float32)
    lo = np.full(t.shape, _float_keys(np.float32(-3.4028235e38)), np.int64)
    hi = np.full(t.shape, _float_keys(np.float32(3.4028235e38)), np.int64)
    reach = (values_fn(_key_floats(lo)) <= t) & (values_fn(_key_floats(hi)) > t)
    lo, hi, t = lo[reach], hi[reach], t[reach]
    while len(t) and np.any(hi - lo > 1):
        mid = lo + (hi - lo) // 2
        below = values_fn(_key_floats(mid)) <= t
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return np.concatenate([_key_floats(lo), _key_floats(hi)])


def awkward_rows(frame: pd.DataFrame, schema, thresholds: dict[int, np.ndarray], *,
                 feature_fn: Callable[[pd.DataFrame], np.ndarray] | None = None,
                 max_events: int = 50, max_thresholds: int | None = None) -> pd.DataFrame:
    """Rows of ``frame`` (a validated frame, label dropped) changed where an export could disagree.

    Args:
        frame: validated rows to start from (a few are enough).
        schema: its ``FeatureSchema``.
        thresholds: :func:`export_tree_thresholds` (or :func:`split_thresholds`);
            feature ``j < len(schema.numeric)`` is numeric column ``j`` (the
            trees' layout, :func:`purchase_intent.model.tree_features`).
        feature_fn: optional: validated frame -> the trees' input ``[rows, n]``;
            then the raw values whose feature sits on each threshold are found by
            bisection (:func:`boundary_values`), whatever the trees read.
            Without it the thresholds and their float32 neighbours are used as raw values.
        max_events: int. The export's sequence width: over-long rows get more events.
        max_thresholds: int or None. At most this many thresholds per column,
            evenly spread over the sorted ones (None: all).
    """
    base = frame.drop(columns=[schema.label], errors="ignore").reset_index(drop=True)
    rows = []

    def with_values(column: str, values: np.ndarray) -> pd.DataFrame:
        out = base.iloc[np.arange(len(values)) % len(base)].copy().reset_index(drop=True)
        out[column] = np.asarray(values, np.float32)
        return out

    for j, column in enumerate(schema.numeric):
        t = np.asarray(thresholds.get(j, np.zeros(0, np.float32)), np.float32)
        if max_thresholds is not None and len(t) > max_thresholds:
            t = t[np.unique(np.linspace(0, len(t) - 1, max_thresholds).round().astype(int))]
        if feature_fn is not None and len(t):
            values = boundary_values(lambda r: feature_fn(with_values(column, r))[:, j], t)
        else:
            values = np.concatenate([t, np.nextafter(t, np.float32(np.inf)), np.nextafter(t, np.float32(-np.inf))])
        rows.append(with_values(column, np.concatenate([values, EXTREMES])))
    rows.append(_sequence_rows(base, schema, max_events))
    out = pd.concat([base] + rows, ignore_index=True)
    return schema.validate(out, require_label=False)


def _sequence_rows(base: pd.DataFrame, schema, max_events: int) -> pd.DataFrame:
    """Empty, short, interior-empty and over-long sequences; unseen and odd categories."""
    names = list(schema.sequence_like)
    cases = []
    for n in [0, 1, 2, 3, max_events - 1, max_events, max_events + 1, 2 * max_events + 7]:
        cases.append({c: [f"{c}_{i % 5}" for i in range(n)] for c in names})
    cases.append({c: ["x", "", "y"] for c in names})  # an interior empty event
    cases.append({c: ["never-seen-item"] * 4 for c in names})
    out = base.iloc[np.arange(len(cases)) % len(base)].copy().reset_index(drop=True)
    for i, case in enumerate(cases):
        for c, v in case.items():
            out.at[i, c] = v
    for i, value in enumerate(["never-seen", "", "3.0", "-0"]):
        for c in schema.categorical:
            out.at[i % len(out), c] = value
    return out


def compare_paths(version_dir: str | Path, frame: pd.DataFrame, schema, *, expected=None,
                  batch_size: int = 1024, fn=None, session=None) -> dict:
    """The export's probabilities of ``frame`` through ``tf.saved_model.load`` and TF Serving's path.

    Args:
        version_dir: the export's version folder.
        frame: validated rows (label optional).
        schema: its ``FeatureSchema``.
        expected: optional in-memory probabilities of the same rows.
        fn: the export's loaded ``serving_default`` (:func:`purchase_intent.export.load_serving_fn`) to reuse.
        session: a loaded :class:`~purchase_intent.serving.session.SessionModel` to reuse.

    Returns:
        ``{"rows", "max_abs_diff_serving"`` (Session path vs ``tf.saved_model.load``),
        ``"rows_above_1e-6"``, and with ``expected`` also ``"max_abs_diff_in_memory"``
        (in memory vs ``tf.saved_model.load``) and ``"max_abs_diff_in_memory_serving"``}.
    """
    from purchase_intent.export import load_serving_fn
    from purchase_intent.serving.codec import to_tensors
    from purchase_intent.serving.session import SessionModel

    fn = fn or load_serving_fn(version_dir)
    session = session or SessionModel(version_dir)
    loaded, served = [], []
    for start in range(0, len(frame), batch_size):
        arrays = contract.frame_to_arrays(frame.iloc[start:start + batch_size], schema, max_events=None)
        loaded.append(fn(**to_tensors(arrays))[contract.OUTPUT_KEY].numpy().reshape(-1))
        served.append(np.asarray(session(arrays)[contract.OUTPUT_KEY]).reshape(-1))
    loaded, served = np.concatenate(loaded), np.concatenate(served)
    diff = np.abs(loaded.astype(np.float64) - served)
    out = {"rows": int(len(frame)), "max_abs_diff_serving": float(diff.max(initial=0.0)),
           "rows_above_1e-6": int(np.sum(diff > 1e-6)), "served": served}
    if expected is not None:
        expected = np.asarray(expected, np.float64).reshape(-1)
        out["max_abs_diff_in_memory"] = float(np.abs(expected - loaded).max(initial=0.0))
        out["max_abs_diff_in_memory_serving"] = float(np.abs(expected - served).max(initial=0.0))
    return out


def export_check(version_dir: str | Path, model, preprocessor, frame: pd.DataFrame, *, trees=None, fn=None,
                 max_thresholds: int = 64) -> dict:
    """The in-memory ``model`` against its export through TF Serving's path, on :func:`awkward_rows` of ``frame``.

    ``trees``: the model's :class:`~purchase_intent.trees.TreeEnsemble` (None:
    its thresholds are read from the export); ``fn``: the export's loaded
    ``serving_default``; ``max_thresholds`` per numeric column (a text model
    runs its encoder on every row).

    Returns:
        :func:`compare_paths`'s figures (without the probabilities).
    """
    from purchase_intent.preprocessing import raw_batch

    schema = preprocessor.feature_schema
    thresholds = (split_thresholds(trees.tables["feature"], trees.tables["threshold"]) if trees is not None
                  else export_tree_thresholds(version_dir))
    rows = awkward_rows(frame, schema, thresholds, max_events=preprocessor.wide_length,
                        max_thresholds=max_thresholds)
    expected = np.concatenate([
        np.asarray(model(preprocessor(raw_batch(rows.iloc[i:i + 1024], schema)), training=False)).reshape(-1)
        for i in range(0, len(rows), 1024)])
    out = compare_paths(version_dir, rows, schema, expected=expected, fn=fn)
    out.pop("served")
    return out


def export_and_check(model, preprocessor, export_cfg, base_dir, assets: dict, warmup: pd.DataFrame,
                     sample: pd.DataFrame, expected: np.ndarray, trees=None) -> dict:
    """Exports ``model`` (:func:`purchase_intent.export.export_model`) and checks the export against it.

    Two checks: ``tf.saved_model.load`` on ``sample`` against ``expected`` (the
    in-memory probabilities of those rows), and TF Serving's path (TF1 loader,
    Session, Grappler) on :func:`awkward_rows` of ``sample`` (:func:`export_check`).

    Returns:
        ``metrics.json``'s ``export``: ``{"path", "max_abs_diff", "max_abs_diff_serving",
        "serving_rows_checked"}``.
    """
    import logging

    from purchase_intent.export import export_model, load_serving_fn
    from purchase_intent.preprocessing import raw_batch

    logger = logging.getLogger("purchase_intent.export")
    version_dir = export_model(model, preprocessor, base_dir, export_cfg.model_name, export_cfg.version,
                               extra_assets=assets, warmup_examples=warmup)
    fn = load_serving_fn(version_dir)
    served = fn(**raw_batch(sample, preprocessor.feature_schema))[contract.OUTPUT_KEY].numpy().reshape(-1)
    diff = float(np.max(np.abs(served - np.asarray(expected).reshape(-1)[:len(sample)])))
    logger.info("Export check: max |served - in-memory| = %.2e over %d test examples", diff, len(sample))
    serving = export_check(version_dir, model, preprocessor, sample, trees=trees, fn=fn)
    worst = serving["max_abs_diff_in_memory_serving"]
    logger.info("Export check through TF Serving's path (TF1 loader, Session, Grappler): max |served - "
                "in-memory| = %.2e over %d rows (every tree split, extremes, odd sequences)", worst, serving["rows"])
    if worst > 1e-6:
        logger.warning("TF Serving would answer up to %.2e away from this model", worst)
    return {"path": str(version_dir), "max_abs_diff": diff, "max_abs_diff_serving": worst,
            "serving_rows_checked": serving["rows"]}
