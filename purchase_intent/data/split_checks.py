"""Checks of a train / validation / test split that warn where test figures would mislead.

* **Leakage** (:func:`leakage_warnings`): a declared id column (``schema.id``)
  whose values are in the training split and in validation or test (one
  customer's monthly snapshots on both sides: the model is tested on
  customers it has seen), and validation or test rows whose features repeat
  a training row exactly.
* **Shift** (:func:`shift_warnings`): a base rate of validation or test far
  from the training split's, and numeric features distributed differently
  (population stability index over the training deciles).
* **Target leak** (:func:`target_leak_warnings`): a numeric or categorical
  feature that alone all but separates the validation buyers from the others,
  as a value known only after the purchase does.

Each returns plain sentences; ``train`` logs them, writes them into
``metrics.json`` ``warnings`` and the report shows them at the top. numpy
and pandas only.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from purchase_intent.config import DataConfig
from purchase_intent.data.readers import id_keys
from purchase_intent.schema import FeatureSchema

logger = logging.getLogger(__name__)

EVALUATED = ("validation", "test")
DUPLICATE_SHARE = 0.01  # warn when more of a split's rows repeat a training row exactly ...
DUPLICATE_OVER_CHANCE = 2.0  # ... and more than this many times as many as by chance
RATE_POINTS = 0.05  # a base rate this many points (absolute) from the training rate ...
RATE_RATIO = 1.5  # ... or this many times higher or lower ...
RATE_STANDARD_ERRORS = 3.0  # ... and more than this many standard errors away
PSI_THRESHOLD = 0.25  # population stability index above this: the feature has shifted
PSI_MIN_ROWS = 200  # the index is computed on splits of at least this many rows (noise below)
PSI_BINS = 10  # the training deciles
LEAK_ROC_AUC = 0.98  # one feature alone separating validation's classes this well (either direction) ...
LEAK_MIN_CLASS = 20  # ... with at least this many buyers and non-buyers in validation


def split_checks(splits: dict[str, pd.DataFrame], schema: FeatureSchema, cfg: DataConfig) -> list[str]:
    """:func:`leakage_warnings` then :func:`shift_warnings` of the split ``cfg`` made."""
    temporal = time_ordered(cfg)
    return (leakage_warnings(splits, schema, temporal) + target_leak_warnings(splits, schema)
            + shift_warnings(splits, schema, temporal))


def time_ordered(cfg: DataConfig) -> bool:
    """True when the split puts later examples in test: a date column, Online Retail's cut-offs,
    an event log split by time. The same id then appears on both sides by design (its past trains,
    its future tests): not leakage."""
    if cfg.split_column:
        return False
    return bool(cfg.split_time_column) or cfg.name == "online_retail" or (
        (cfg.format == "events" or cfg.name == "synthetic_clickstream") and cfg.split_by == "time")


def _key(df: pd.DataFrame, columns: list[str]) -> pd.Series:
    """One hashable value per row of ``columns`` (lists joined)."""
    cells = pd.DataFrame({c: df[c].map(lambda v: "\x1f".join(map(str, v))) if df[c].dtype == object
                          and len(df) and isinstance(df[c].iloc[0], (list, tuple, np.ndarray)) else df[c]
                          for c in columns}, index=df.index)
    return pd.Series(pd.util.hash_pandas_object(cells, index=False).to_numpy(), index=df.index)


def leakage_warnings(splits: dict[str, pd.DataFrame], schema: FeatureSchema, temporal: bool = False
                     ) -> list[str]:
    """Warnings for ids shared by training and validation/test, and rows repeated across them.

    Args:
        splits: ``{"train", "validation", "test"}`` frames (id columns kept, when the table has them).
        schema: the features; ``schema.id`` names the id columns.
        temporal: the split is by time (:func:`time_ordered`): shared ids are expected, not checked.

    Returns:
        For each id column, one sentence per split with ids of the training split: the share
        of its rows affected and what to set; one per split with more than
        :data:`DUPLICATE_SHARE` of its rows repeating a training row exactly (features only).
    """
    out = []
    train = splits.get("train")
    if train is None or not len(train):
        return out
    for column in ([] if temporal else schema.id):
        if column not in train.columns:
            continue
        seen = set(id_keys(train[column].dropna())) - {""}
        for name in EVALUATED:
            df = splits.get(name)
            if df is None or not len(df) or column not in df.columns:
                continue
            ids = id_keys(df[column])
            shared = ids.isin(seen).to_numpy() & df[column].notna().to_numpy()
            if shared.any():
                out.append(
                    f"Leakage: {shared.mean():.1%} of the {name} rows ({int(shared.sum()):,} of {len(df):,}) "
                    f"have a {column!r} that is also in the training split ({ids[shared].nunique():,} "
                    f"such ids, e.g. {ids[shared].iloc[0]!r}): the model is evaluated on ids it has seen, "
                    f"so its {name} figures overstate how it does on new ones. Keep each "
                    f"id in one split: --set data.group_column={column} (the default, auto, does so for the "
                    "first id column when the split is random), or --set data.split_time_column=<a date "
                    "column> to test on a later period.")
    features = [c for c in schema.feature_names if c in train.columns]
    if features:
        for name in EVALUATED:
            df = splits.get(name)
            if df is None or not len(df) or not all(c in df.columns for c in features):
                continue
            share, chance = repeated_share(train, df, features), chance_repeated_share(train, df, features)
            if share > DUPLICATE_SHARE and share > DUPLICATE_OVER_CHANCE * chance:
                advice = (f"They are not kept together by the id column {schema.id[0]!r}: the same rows under "
                          f"other ids (a table appended twice?); drop the repeats." if schema.id else
                          "If rows are repeated snapshots of one customer, declare its id column (schema 'id') "
                          "so the split keeps them together (data.group_column=auto), or drop the repeats.")
                out.append(
                    f"Leakage: {share:.1%} of the {name} rows repeat a training row exactly (every feature), "
                    f"against {chance:.1%} expected by chance from the columns' values: the model has seen "
                    f"them, label included. {advice}")
    return out


def repeated_share(train: pd.DataFrame, df: pd.DataFrame, features: list[str]) -> float:
    """The share of the rows of ``df`` whose features equal those of a row of ``train``."""
    return float(_key(df, features).isin(set(_key(train, features))).mean())


def chance_repeated_share(train: pd.DataFrame, df: pd.DataFrame, features: list[str], seed: int = 0) -> float:
    """:func:`repeated_share` with each column's values shuffled over both frames: how often rows meet
    by chance when the features are few and coarse (seeded)."""
    rng = np.random.default_rng(seed)
    both = pd.concat([train[features], df[features]], ignore_index=True)
    mixed = pd.DataFrame({c: both[c].to_numpy()[rng.permutation(len(both))] for c in features})
    return repeated_share(mixed.iloc[:len(train)], mixed.iloc[len(train):], features)


def shift_warnings(splits: dict[str, pd.DataFrame], schema: FeatureSchema, temporal: bool = False
                   ) -> list[str]:
    """Warnings for a base rate or numeric features of validation/test unlike the training split's.

    Base rate (validation against training; test against training and
    against validation, where the threshold was chosen): more than :data:`RATE_POINTS` (5 percentage points) away from
    the training rate, or more than :data:`RATE_RATIO` (1.5) times higher or
    lower, **and** more than :data:`RATE_STANDARD_ERRORS` (3) standard errors
    of the difference of two proportions away. Numeric features: population
    stability index over the training deciles (missing values a bin of their
    own) above :data:`PSI_THRESHOLD` (0.25), on splits of at least
    :data:`PSI_MIN_ROWS` rows; the features are named, largest first.
    """
    out = []
    train = splits.get("train")
    if train is None or not len(train) or schema.label not in train.columns:
        return out
    rates = {}
    for name in ("train",) + EVALUATED:
        df = splits.get(name)
        if df is not None and len(df) and schema.label in df.columns:
            rates[name] = (float(df[schema.label].to_numpy(np.float64).mean()), len(df))
    why = ("with a time split, the rate changed over time, or the last window is cut short by the end of the "
           "file (its examples had less time to buy)" if temporal else
           "with a random split, this is rare by chance: check how the split was made")
    for name in EVALUATED:
        if name not in rates:
            continue
        p1, n1 = rates[name]
        against = [(ref, *rates[ref]) for ref in ("train", "validation")[:EVALUATED.index(name) + 1]
                   if ref in rates and rate_shifted(*rates[ref], p1, n1)]
        if against:
            listed = " and ".join(
                f"{_pct(p0)} in {'training' if ref == 'train' else ref} ({(p1 - p0) * 100:+.1f} points, "
                f"{abs(p1 - p0) / _se(p0, n0, p1, n1):.0f} standard errors)" for ref, p0, n0 in against)
            out.append(
                f"Base rate shift: {_pct(p1)} of the {name} rows are buyers against {listed}: the "
                f"probabilities are calibrated to the training rate and the threshold chosen on validation, "
                f"so {name} precision, recall and calibration move with it ({why}).")
    if len(train) < PSI_MIN_ROWS:
        return out
    for name in EVALUATED:
        df = splits.get(name)
        if df is None or len(df) < PSI_MIN_ROWS:
            continue
        shifted = [(f, psi(train[f].to_numpy(np.float64), df[f].to_numpy(np.float64)))
                   for f in schema.numeric if f in train.columns and f in df.columns]
        shifted = sorted([(f, v) for f, v in shifted if v > PSI_THRESHOLD], key=lambda fv: -fv[1])
        if shifted:
            listed = ", ".join(f"{f!r} ({v:.2f})" for f, v in shifted[:8])
            more = f" and {len(shifted) - 8} more" if len(shifted) > 8 else ""
            out.append(
                f"Feature shift: {len(shifted)} numeric feature(s) of the {name} split are distributed unlike "
                f"in training (population stability index over the training deciles above "
                f"{PSI_THRESHOLD}): {listed}{more}. The model meets values it was not trained on; "
                f"its {name} figures may not hold for the training period, or the other way round.")
    return out


def target_leak_warnings(splits: dict[str, pd.DataFrame], schema: FeatureSchema) -> list[str]:
    """Warnings for features that alone separate the validation buyers from the others.

    Each numeric feature is ranked as it is (missing values lowest); each
    categorical one by its training buy rate per value (values unseen in
    training: the training rate). A feature whose validation ROC-AUC is at
    least :data:`LEAK_ROC_AUC` (0.98), or at most 1 - that, is named, best
    first, when validation has :data:`LEAK_MIN_CLASS` (20) buyers and
    non-buyers. Such a feature is usually known only after the purchase (an
    order count over the label window, a refund, an order status): the run's
    figures are then unreachable in production.
    """
    train, val = splits.get("train"), splits.get("validation")
    if train is None or val is None or not len(train) or schema.label not in val.columns:
        return []
    y = val[schema.label].to_numpy(np.float64) > 0.5
    if min(int(y.sum()), int((~y).sum())) < LEAK_MIN_CLASS:
        return []
    scores = {}
    for f in schema.numeric:
        if f in val.columns:
            x = val[f].to_numpy(np.float64)
            scores[f] = np.where(np.isnan(x), -np.inf, x)
    y_train = train[schema.label].to_numpy(np.float64)
    for f in schema.categorical:
        if f in train.columns and f in val.columns:
            rate = pd.Series(y_train).groupby(train[f].astype(str).to_numpy()).mean()
            scores[f] = val[f].astype(str).map(rate).fillna(float(y_train.mean())).to_numpy(np.float64)
    found = sorted(((f, rank_roc_auc(s, y)) for f, s in scores.items()), key=lambda fa: -abs(fa[1] - 0.5))
    found = [(f, a) for f, a in found if max(a, 1 - a) >= LEAK_ROC_AUC]
    if not found:
        return []
    listed = ", ".join(f"{f!r} (ROC-AUC {max(a, 1 - a):.3f}{', lower values buy' if a < 0.5 else ''})"
                       for f, a in found[:5])
    return [f"Possible target leak: {len(found)} feature(s) alone all but separate the validation buyers from the "
            f"others: {listed}. A value known only after the purchase (an order count over the label window, a "
            f"refund, an order status) does this, and the figures of this run are then out of reach in production: "
            f"if so, remove it from the schema and train again."]


def rank_roc_auc(score: np.ndarray, y: np.ndarray) -> float:
    """ROC-AUC of ``score`` for the boolean labels ``y`` (Mann-Whitney, ties counted half); 0.5 without both classes."""
    n1 = int(y.sum())
    n0 = len(y) - n1
    if not n1 or not n0:
        return 0.5
    ranks = pd.Series(score).rank(method="average").to_numpy()
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _se(p0: float, n0: int, p1: float, n1: int) -> float:
    return max(float(np.sqrt(p0 * (1 - p0) / n0 + p1 * (1 - p1) / n1)), 1e-12)


def rate_shifted(p0: float, n0: int, p1: float, n1: int) -> bool:
    """Whether base rate ``p1`` (of ``n1`` rows) is far from ``p0`` (of ``n0``): see :func:`shift_warnings`."""
    diff = abs(p1 - p0)
    ratio = max(p0, p1) / max(min(p0, p1), 1e-12)
    return (diff > RATE_POINTS or ratio > RATE_RATIO) and diff > RATE_STANDARD_ERRORS * _se(p0, n0, p1, n1)


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = PSI_BINS, eps: float = 1e-4) -> float:
    """Population stability index of ``actual`` against ``expected`` over the deciles of ``expected``.

    ``sum((a - e) * ln(a / e))`` over the bins (shares below ``eps`` count as
    ``eps``); non-finite values (missing) are a bin of their own.
    """
    def shares(x, edges):
        finite = np.isfinite(x)
        counts = np.bincount(np.searchsorted(edges, x[finite], side="right"), minlength=len(edges) + 1)
        return np.append(counts, (~finite).sum()) / max(len(x), 1)

    finite = expected[np.isfinite(expected)]
    edges = np.unique(np.quantile(finite, np.arange(1, bins) / bins)) if len(finite) else np.zeros(0)
    e = np.maximum(shares(expected, edges), eps)
    a = np.maximum(shares(actual, edges), eps)
    return float(np.sum((a - e) * np.log(a / e)))


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


MIN_VALIDATION_POSITIVES = 20  # fewer: early stopping and the threshold rest on a handful of buyers


def warn_few_positives(positives: int, examples: int, train_cfg) -> None:
    """Warns when the validation split has too few positives for early stopping to mean much.

    ``positives`` and ``examples``: the validation split's counts
    (``Splits.label_counts``: Python ints, from a frame or a prepared manifest alike).
    """
    if positives < MIN_VALIDATION_POSITIVES:
        logger.warning("The validation split has only %d positive example(s) (of %d): early stopping "
                       "(patience %d) and the decision threshold rest on them, so the kept epoch is "
                       "largely chance. Give it more (--set data.validation_fraction=0.25, or more rows "
                       "labelled validation in data.split_column).", positives, examples,
                       train_cfg.early_stopping_patience)


SMALL_SPLIT_ROWS = 200
SMALL_SPLIT_POSITIVES = 30


def split_warnings(splits: dict[str, dict[str, float]], min_rows: int = SMALL_SPLIT_ROWS,
                   min_positives: int = SMALL_SPLIT_POSITIVES) -> list[str]:
    """Plain warnings for a validation or test split too small to trust its figures.

    Args:
        splits: ``metrics.json``'s ``splits``: name -> ``{"examples", "positive_rate"}``.

    Returns:
        One sentence per small split (empty when all are large enough).
    """
    out = []
    for name in ("validation", "test"):
        s = splits.get(name)
        if not s:
            continue
        n = int(s["examples"])
        pos = int(round(n * float(s["positive_rate"])))
        if n < min_rows or pos < min_positives:
            use = ("the decision threshold and the kept epoch are chosen on it, so both can change "
                   "from one sample to another" if name == "validation"
                   else "every test figure in this report can move by several points from one "
                        "sample to another")
            out.append(f"The {name} split is small ({n:,} rows, {pos:,} buyers; fewer than "
                       f"{min_rows} rows or {min_positives} buyers): {use}. Treat differences between "
                       "models of a few hundredths as noise; use more data for a decision.")
    return out
