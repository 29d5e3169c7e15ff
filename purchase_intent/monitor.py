"""Data and score drift of a new table against an export's training statistics: ``python -m purchase_intent.monitor``.

The reference is what ``train`` keeps in the export's ``assets.extra/``:
``training_stats.json`` (the training split's :class:`~purchase_intent.stats.SplitStats`,
compacted) and ``reference_scores.json`` (a sample of the validation
probabilities and their mean). The new table is read and validated as
scoring reads it, and summarised into the same statistics; a prepared
directory (``python -m purchase_intent.prepare``) brings its own ``stats.json``.

What is compared, per feature of the schema:

* **numeric**: population stability index (PSI) over the training deciles
  (from the training reservoir; missing values a bin of their own), the
  two-sample Kolmogorov-Smirnov statistic against the reservoir (reported,
  not voted: PSI decides), the missing rate before and after.
* **categorical**: share of rows with a value the training split never had
  (unseen), and PSI over the :data:`TOP_CATEGORIES` most frequent training
  values plus "other".
* **sequence**: share of unseen values among the events, and PSI over the
  top events plus "other" (events as the model reads them:
  :func:`purchase_intent.contract.frame_model_events`).
* **scores** (optional): PSI over the deciles of the reference sample, KS,
  and the predicted base rate (mean probability) against the reference's.

Text columns are not compared (free text has an open vocabulary).

Verdicts (:func:`grade`): a statistic is "warn" or "drift" when it reaches
its threshold **and** sampling noise explains it with probability below
:data:`SIGNIFICANCE` (0.001): 30 rows of the training distribution give
PSIs up to 0.6, and a resample of the training data must stay "ok" at any size.
Thresholds, warn / drift:

* **PSI** (features, scores): 0.10 / 0.25, the usual convention. Noise: between
  two samples of one distribution, ``PSI / (1/n_ref + 1/n_new)`` follows
  chi-squared with ``bins - 1`` degrees of freedom.
* **unseen share** above the expected share: 5 / 15 points. Unseen values go
  to the out-of-vocabulary id; 5 % of rows there is noticeable, 15 % is a new
  catalogue or coding the model never saw. The expected share is the
  Good-Turing estimate of the training split's unseen mass (values seen once
  / all values): what a resample of the training data shows. Noise: one-sided
  binomial. For a column with few values a new value shows in PSI's "other"
  bin (empty in training) first: 8 % of rows with a new device is a PSI of 0.5.
* **predicted base rate**: 1.25 times higher or lower or 5 points / 1.5 times
  or 10 points. Noise: z-test of the two means.

A feature's verdict is its worst statistic's; the overall verdict is the
worst of all. Exit status: 0 when the overall verdict is "ok" or "warn", 1
on "drift" (:data:`EXIT_DRIFT`), 2 for bad input.

Limits: ``training_stats.json`` keeps the 20,000 most frequent values per
column (``SplitStats.compact``); rarer ones count as unseen (for categorical
columns the dropped share is added to the expected share; for sequences it is
not known). A sequence column's noise tests count rows, not events (the events
of one session are not independent evidence).

Examples:

    python -m purchase_intent.monitor --model runs/<run>/export/purchase_intent/1 \\
        --input customers_2025_07.csv --output monitor/2025-07

    python -m purchase_intent.monitor --model runs/<run>/export/purchase_intent/1 \\
        --input prepared/2025-07 --no-scores        # a prepared directory's train split
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from purchase_intent import cli, contract
from purchase_intent.stats import SplitStats, merge

logger = logging.getLogger(__name__)

PSI_WARN = 0.10  # population stability index: the usual "some shift" ...
PSI_DRIFT = 0.25  # ... and "significant shift" thresholds
UNSEEN_WARN = 0.05  # unseen values: 5 points above the share a resample would show ...
UNSEEN_DRIFT = 0.15  # ... 15 points above it
RATE_WARN = (1.25, 0.05)  # predicted base rate: 1.25 times higher or lower, or 5 points away ...
RATE_DRIFT = (1.5, 0.10)  # ... 1.5 times, or 10 points
SIGNIFICANCE = 1e-3  # a statistic counts only when noise explains it with probability below this
DECILES = 10  # numeric and score bins: the reference's deciles
TOP_CATEGORIES = 10  # categorical and sequence bins: the most frequent training values, plus "other"
SMOOTHING = 0.5  # pseudo-count added to every bin: an empty bin of a small table is not log(0)
VERDICTS = ("ok", "warn", "drift")
EXIT_DRIFT = 1
CHUNK_ROWS = 20_000
TRAINING_STATS = "training_stats.json"
REFERENCE_SCORES = "reference_scores.json"


# -- statistics --------------------------------------------------------------
def psi(expected: np.ndarray, actual: np.ndarray, n_expected: float, n_actual: float) -> float:
    """Population stability index ``sum((a - e) * ln(a / e))`` of two share vectors over the same bins.

    Each side's shares are smoothed as counts: ``(share * n + 0.5) / (n + 0.5 * bins)``
    (:data:`SMOOTHING`), so an empty bin weighs what half an example would.

    Args:
        expected: shares of the reference, one per bin (they sum to 1).
        actual: shares of the new data over the same bins.
        n_expected: examples behind ``expected``.
        n_actual: examples behind ``actual``.
    """
    e = _smoothed(np.asarray(expected, np.float64), n_expected)
    a = _smoothed(np.asarray(actual, np.float64), n_actual)
    return float(np.sum((a - e) * np.log(a / e)))


def _smoothed(shares: np.ndarray, n: float) -> np.ndarray:
    n = max(float(n), 1.0)
    return (shares * n + SMOOTHING) / (n + SMOOTHING * len(shares))


def psi_p_value(value: float, bins: int, n_expected: float, n_actual: float) -> float:
    """Chance that two samples of one distribution give a PSI of at least ``value``.

    PSI is Jeffreys' divergence; between samples of ``n_expected`` and
    ``n_actual`` examples of one distribution, ``PSI / (1/n_expected + 1/n_actual)``
    follows a chi-squared law with ``bins - 1`` degrees of freedom.
    """
    from scipy.stats import chi2

    if bins < 2:
        return 1.0
    scale = 1.0 / max(n_expected, 1.0) + 1.0 / max(n_actual, 1.0)
    return float(chi2.sf(value / scale, bins - 1))


def ks(reference: np.ndarray, new: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and its (asymptotic) p-value; (nan, nan) for an empty side."""
    from scipy.stats import ks_2samp

    if len(reference) == 0 or len(new) == 0:
        return float("nan"), float("nan")
    result = ks_2samp(reference, new, method="asymp")
    return float(result.statistic), float(result.pvalue)


def grade(value: float, warn: float, drift: float, p_value: float) -> str:
    """ "ok", "warn" or "drift": ``value`` against its thresholds, if beyond noise (``p_value < SIGNIFICANCE``)."""
    if not np.isfinite(value) or p_value >= SIGNIFICANCE or value < warn:
        return "ok"
    return "drift" if value >= drift else "warn"


def worst(verdicts) -> str:
    """The most severe of ``verdicts`` ("ok" for none)."""
    return max(verdicts, key=VERDICTS.index, default="ok")


def decile_edges(sample: np.ndarray, bins: int = DECILES) -> np.ndarray:
    """The distinct inner quantiles of ``sample`` (at most ``bins - 1``): bin ``i`` is ``[edge[i-1], edge[i])``."""
    sample = np.asarray(sample, np.float64)
    if len(sample) == 0:
        return np.zeros(0)
    return np.unique(np.quantile(sample, np.arange(1, bins) / bins))


def bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares of finite ``values`` in the bins ``edges`` make (``len(edges) + 1`` bins)."""
    values = np.asarray(values, np.float64)
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def effective_rows(stats: SplitStats, name: str) -> float:
    """Rows a numeric column's shares rest on: all rows while the reservoir holds every finite value,
    else the rows a reservoir of that size stands for (``len(sample) / finite share``)."""
    finite = stats.moments[name]["none"].count
    sample = len(stats.samples[name].values)
    if sample >= finite or not stats.examples:
        return float(stats.examples)
    return min(float(stats.examples), sample * stats.examples / finite)


def numeric_shares(stats: SplitStats, name: str, edges: np.ndarray) -> np.ndarray:
    """Shares of a numeric column's rows in the bins of ``edges``, then the missing rows' share."""
    missing = missing_rate(stats, name)
    return np.append((1.0 - missing) * bin_shares(stats.samples[name].values, edges), missing)


def missing_rate(stats: SplitStats, name: str) -> float:
    """Share of rows whose value of numeric column ``name`` is missing or not finite."""
    return 1.0 - stats.moments[name]["none"].count / stats.examples if stats.examples else 0.0


def numeric_drift(name: str, ref: SplitStats, new: SplitStats) -> dict[str, Any]:
    """PSI over the training deciles (missing a bin of its own), KS and missing rates of numeric column ``name``.

    Returns:
        ``{"kind": "numeric", "verdict", "reason" (what flagged it, "" when ok), "detail", "psi", "psi_p", "ks", "ks_p",
        "missing_reference", "missing_new", "mean_reference", "mean_new"}``.
    """
    edges = decile_edges(ref.samples[name].values)
    n_ref, n_new = effective_rows(ref, name), effective_rows(new, name)
    e, a = numeric_shares(ref, name, edges), numeric_shares(new, name, edges)
    value = psi(e, a, n_ref, n_new)
    p_value = psi_p_value(value, len(e), n_ref, n_new)
    d, d_p = ks(ref.samples[name].values, new.samples[name].values)
    m0, m1 = missing_rate(ref, name), missing_rate(new, name)
    verdict = grade(value, PSI_WARN, PSI_DRIFT, p_value)
    missing = f"missing {m0:.1%} -> {m1:.1%}" if abs(m1 - m0) >= 0.01 else ""
    reason = ", ".join(t for t in (f"PSI {value:.2f}", missing) if t) if verdict != "ok" else ""
    detail = ", ".join(t for t in (f"mean {_num(ref.moments[name]['none'].mean)} -> "
                                   f"{_num(new.moments[name]['none'].mean)}", missing or f"missing {m1:.1%}") if t)
    return {"kind": "numeric", "verdict": verdict, "reason": reason, "detail": detail, "psi": value,
            "psi_p": p_value, "ks": d, "ks_p": d_p, "missing_reference": m0, "missing_new": m1,
            "mean_reference": ref.moments[name]["none"].mean, "mean_new": new.moments[name]["none"].mean}


def top_values(counter, k: int = TOP_CATEGORIES) -> list[str]:
    """The ``k`` most frequent values of a counter (ties by value)."""
    return [v for v, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def category_shares(counter, values: list[str], total: float) -> np.ndarray:
    """Shares of ``values``, then of everything else ("other"), among ``total`` counted values."""
    shares = np.array([counter.get(v, 0) for v in values], np.float64) / max(total, 1.0)
    return np.append(shares, max(0.0, 1.0 - shares.sum()))


def expected_unseen(counter, total: float) -> float:
    """Good-Turing estimate of the share of unseen values in a resample: (values seen once + counts
    a pruned counter dropped) / all values."""
    kept = sum(counter.values())
    return (sum(1 for c in counter.values() if c == 1) + max(0.0, total - kept)) / max(total, 1.0)


def unseen_p_value(share: float, expected: float, rows: int) -> float:
    """One-sided binomial chance of ``share`` unseen or more among ``rows`` at the expected rate."""
    from scipy.stats import binom

    k = int(round(share * rows))
    if k == 0:
        return 1.0
    return float(binom.sf(k - 1, rows, min(max(expected, 0.0), 1.0)))


def categorical_drift(name: str, ref: SplitStats, new: SplitStats, kind: str = "categorical") -> dict[str, Any]:
    """Unseen share and PSI over the top training values plus "other" of a categorical or sequence column.

    Categorical values are counted per row; sequence values per event (the
    noise tests still count rows, the independent units, so events of one
    long session do not pass for independent evidence).

    Returns:
        ``{"kind", "verdict", "reason", "detail", "unseen", "unseen_expected", "unseen_p", "unseen_examples",
        "psi", "psi_p", "categories"}``.
    """
    old, cur = ref.values[name], new.values[name]
    total_ref = float(ref.examples if kind == "categorical" else sum(old.values()))
    total_new = float(sum(cur.values()))
    top = top_values(old)
    e, a = category_shares(old, top, total_ref), category_shares(cur, top, total_new)
    n_ref, n_new = (float(ref.examples), float(new.examples))
    value = psi(e, a, n_ref, n_new)
    p_value = psi_p_value(value, len(e), n_ref, n_new)
    unseen_counts = {v: c for v, c in cur.items() if v not in old}
    unseen = sum(unseen_counts.values()) / max(total_new, 1.0)
    expected = expected_unseen(old, total_ref)
    u_p = unseen_p_value(unseen, expected, new.examples)
    by_psi = grade(value, PSI_WARN, PSI_DRIFT, p_value)
    by_unseen = grade(unseen - expected, UNSEEN_WARN, UNSEEN_DRIFT, u_p)
    examples = top_values(unseen_counts, 5)
    of = "rows" if kind == "categorical" else "events"
    detail = f"{unseen:.1%} of {of} unseen (expected {expected:.1%})" + (
        f", e.g. {', '.join(_show(v) for v in examples[:3])}" if examples else "")
    short = f"{unseen:.1%} of {of} unseen" + (f", e.g. {_show(examples[0])}" if examples else "")
    reason = ", ".join(t for t, v in ((f"PSI {value:.2f}", by_psi), (short, by_unseen)) if v != "ok")
    return {"kind": kind, "verdict": worst([by_psi, by_unseen]), "reason": reason, "detail": detail,
            "psi": value, "psi_p": p_value,
            "unseen": unseen, "unseen_expected": expected, "unseen_p": u_p, "unseen_examples": examples,
            "categories": {"values": top + ["(other)"], "reference": e.tolist(), "new": a.tolist()}}


def _num(value: float) -> str:
    return f"{value:.4g}"


def _show(value: str) -> str:
    return "(missing)" if value == "" else repr(value)


def score_drift(reference: dict[str, Any], scores: np.ndarray) -> dict[str, Any]:
    """PSI over the reference sample's deciles, KS, and the predicted base rate of new ``scores``.

    Args:
        reference: ``reference_scores.json`` of the export (``examples``, ``mean``, ``sample``).
        scores: the new table's probabilities.

    Returns:
        ``{"kind": "score", "verdict", "reason", "detail", "psi", "psi_p", "ks", "ks_p", "mean_reference",
        "mean_new", "rate_p", "examples"}``.
    """
    sample = np.asarray(reference["sample"], np.float64)
    scores = np.asarray(scores, np.float64)
    edges = decile_edges(sample)
    value = psi(bin_shares(sample, edges), bin_shares(scores, edges), len(sample), len(scores))
    p_value = psi_p_value(value, len(edges) + 1, len(sample), len(scores))
    d, d_p = ks(sample, scores)
    m0, m1 = float(reference["mean"]), float(scores.mean())
    se = np.sqrt(sample.var() / max(reference["examples"], 1) + scores.var() / max(len(scores), 1))
    from scipy.stats import norm

    rate_p = float(2 * norm.sf(abs(m1 - m0) / max(se, 1e-12)))
    ratio = max(m0, m1) / max(min(m0, m1), 1e-12)
    rate = worst([grade(ratio, RATE_WARN[0], RATE_DRIFT[0], rate_p),
                  grade(abs(m1 - m0), RATE_WARN[1], RATE_DRIFT[1], rate_p)])
    by_psi = grade(value, PSI_WARN, PSI_DRIFT, p_value)
    detail = f"predicted base rate {m0:.1%} -> {m1:.1%}"
    reason = ", ".join(t for t, v in ((f"PSI {value:.2f}", by_psi), (detail, rate)) if v != "ok")
    return {"kind": "score", "verdict": worst([by_psi, rate]), "reason": reason, "detail": detail,
            "psi": value, "psi_p": p_value, "ks": d, "ks_p": d_p, "mean_reference": m0, "mean_new": m1,
            "rate_p": rate_p, "examples": int(len(scores))}


def compare(ref: SplitStats, new: SplitStats, schema, reference_scores: dict | None = None,
            scores: np.ndarray | None = None) -> dict[str, Any]:
    """The drift of ``new`` against ``ref`` for every numeric, categorical and sequence column of ``schema``.

    Args:
        ref: the training split's statistics (``training_stats.json``).
        new: the new table's (:func:`table_stats`, or a prepared directory's split).
        schema: FeatureSchema. The export's.
        reference_scores: ``reference_scores.json``; with ``scores``, the score drift is added.
        scores: the new table's probabilities.

    Returns:
        ``{"verdict", "summary", "rows", "reference": {...}, "features": {name: {...}},
        "scores": {...} or None, "not_compared": {name: why}, "thresholds": {...}}``.

    Raises:
        UserError: a column of the schema has no statistics in ``new`` or ``ref``.
    """
    check_columns(ref, schema, "the training statistics")
    check_columns(new, schema, "the new data")
    features = {}
    for name in schema.numeric:
        features[name] = numeric_drift(name, ref, new)
    for name in schema.categorical:
        features[name] = categorical_drift(name, ref, new, "categorical")
    for name in schema.sequences:
        features[name] = categorical_drift(name, ref, new, "sequence")
    score = (score_drift(reference_scores, scores)
             if reference_scores is not None and scores is not None else None)
    verdicts = [f["verdict"] for f in features.values()] + ([score["verdict"]] if score else [])
    return {
        "verdict": worst(verdicts),
        "summary": summary_sentence(features, score),
        "rows": new.examples,
        "reference": {"training_examples": ref.examples,
                      "numeric_sample": {n: len(ref.samples[n].values) for n in schema.numeric},
                      "score_examples": reference_scores.get("examples") if reference_scores else None,
                      "score_sample": len(reference_scores["sample"]) if reference_scores else None},
        "features": features,
        "scores": score,
        "not_compared": {n: "text: free text is not compared" for n in list(schema.text) + list(schema.event_text)},
        "thresholds": {"psi": [PSI_WARN, PSI_DRIFT], "unseen_excess": [UNSEEN_WARN, UNSEEN_DRIFT],
                       "base_rate_ratio": [RATE_WARN[0], RATE_DRIFT[0]],
                       "base_rate_points": [RATE_WARN[1], RATE_DRIFT[1]], "significance": SIGNIFICANCE},
    }


def check_columns(stats: SplitStats, schema, what: str) -> None:
    """Raises :class:`cli.UserError` naming the schema columns ``stats`` has no statistics of."""
    missing = ([n for n in schema.numeric if n not in stats.samples or n not in stats.moments]
               + [n for n in schema.categorical + schema.sequences if n not in stats.values])
    if missing:
        raise cli.UserError(f"{what} have no column(s) {missing} of the export's schema")
    if not stats.examples:
        raise cli.UserError(f"{what} hold no rows")


def summary_sentence(features: dict[str, dict], score: dict | None) -> str:
    """The verdict in words: "2 of 7 features drifted: a (PSI 1.93), b (...); 1 warned: c. Scores: ..."."""
    parts = []
    for verdict, verb in (("drift", "drifted"), ("warn", "warned")):
        named = [f"{n} ({f['reason']})" for n, f in features.items() if f["verdict"] == verdict]
        if named:
            lead = f"{len(named)} of {len(features)} features {verb}" if not parts else f"{len(named)} {verb}"
            parts.append(f"{lead}: " + "; ".join(named))
    text = ". ".join(parts) if parts else f"No feature drifted ({len(features)} compared)"
    if score is not None:
        text += f". Scores: {score['verdict']} ({score['reason'] or score['detail']})"
    return text + "."


# -- reading the reference and the new data ----------------------------------
def version_folder(path: str | Path) -> Path:
    """The export version folder ``path`` names: itself, or a model folder's highest numbered version.

    Raises:
        UserError: neither holds ``assets.extra/``.
    """
    path = Path(path)
    if not (path / "assets.extra").is_dir() and path.is_dir():
        versions = contract.existing_versions(path)
        if versions:
            path = path / str(versions[-1])
    if not (path / "assets.extra").is_dir():
        raise cli.UserError(f"{path}: no assets.extra/ folder; give an export version folder such as "
                            "runs/<run>/export/purchase_intent/1")
    return path


def load_reference(version_dir: Path, with_scores: bool) -> tuple[Any, SplitStats, dict | None]:
    """The schema, training statistics and (``with_scores``) reference scores of an export.

    Raises:
        UserError: a file is missing or unreadable (named, with what to do).
    """
    from purchase_intent.schema import FeatureSchema

    extra = version_dir / "assets.extra"
    schema = FeatureSchema.load(extra / "schema.json")
    stats_file = extra / TRAINING_STATS
    if not stats_file.is_file():
        raise cli.UserError(f"{stats_file} is missing: the export predates monitoring; export the model "
                            "again with this version of train")
    ref = SplitStats.from_dict(_read_json(stats_file))
    scores = None
    if with_scores:
        score_file = extra / REFERENCE_SCORES
        if not score_file.is_file():
            raise cli.UserError(f"{score_file} is missing: no reference for score drift; run with --no-scores")
        scores = _read_json(score_file)
        if not scores.get("sample"):
            raise cli.UserError(f"{score_file}: no reference scores in 'sample'; run with --no-scores")
    return schema, ref, scores


def _read_json(path: Path) -> dict:
    try:
        out = json.loads(path.read_text())
    except ValueError as e:
        raise cli.UserError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(out, dict):
        raise cli.UserError(f"{path}: expected a JSON object")
    return out


def table_stats(path: str | Path, schema, score: Callable[[pd.DataFrame], np.ndarray] | None = None,
                chunk_rows: int = CHUNK_ROWS) -> tuple[SplitStats, np.ndarray | None]:
    """Statistics of a CSV/Parquet table read and validated as scoring reads it, chunk by chunk.

    Args:
        path: the table.
        schema: the export's FeatureSchema.
        score: optional: maps a validated chunk to its probabilities.
        chunk_rows: rows read at a time.

    Returns:
        The table's SplitStats and, with ``score``, every row's probability.

    Raises:
        SchemaError: the file cannot be read, lacks a column, or a value is invalid (named).
    """
    from purchase_intent.data.readers import iter_table
    from purchase_intent.schema import check_delimiters

    parts, scores = [], []
    for number, chunk in iter_table(path, schema, chunk_rows=chunk_rows):
        if number == 0 and all(c in chunk.columns for c in schema.feature_names):
            check_delimiters(chunk, schema, str(path), scoring=True)
        valid = schema.validate(chunk, require_label=False, where=str(path))
        parts.append(SplitStats.of_frame(valid, schema, seed=number))
        if score is not None:
            scores.append(np.asarray(score(valid), np.float64).reshape(-1))
    return merge(parts), (np.concatenate(scores) if score is not None else None)


def prepared_stats(path: Path, split: str) -> SplitStats:
    """The statistics of ``split`` of a prepared directory (its ``stats.json``)."""
    from purchase_intent.data.prepared import Prepared

    prepared = Prepared.load(path)
    stats = prepared.stats()
    if split not in stats:
        raise cli.UserError(f"{path}: no split {split!r} in its statistics; it has {sorted(stats)}")
    return stats[split]


def read_scores(path: str | Path) -> np.ndarray:
    """The ``purchase_probability`` column of a scored table (``predict``'s output).

    Raises:
        UserError: no such column, or a value outside [0, 1] (row named).
    """
    from purchase_intent.data.readers import check_table_file
    from purchase_intent.schema import row_ref

    column = contract.PROBABILITY_COLUMN
    fmt = check_table_file(path)
    try:
        df = (pd.read_parquet(path, columns=[column]) if fmt == "parquet"
              else pd.read_csv(path, usecols=[column]))
    except (ValueError, KeyError) as e:
        raise cli.UserError(f"{path}: cannot read a {column!r} column ({' '.join(str(e).split())})") from None
    x = pd.to_numeric(df[column], errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~((x >= 0) & (x <= 1)))
    if len(bad):
        raise cli.UserError(f"{path}: {row_ref(int(bad[0]))}: {column} {str(df[column].iloc[bad[0]])!r} is not a "
                            f"probability in [0, 1] ({len(bad)} such rows)")
    if not len(x):
        raise cli.UserError(f"{path}: no scores")
    return x


# -- output ------------------------------------------------------------------
def summary_table(report: dict[str, Any]) -> str:
    """The plain-text table printed on stdout: one line per feature (and the scores), then the verdict."""
    rows = [("feature", "kind", "verdict", "PSI", "KS", "detail")]
    entries = list(report["features"].items()) + ([("(scores)", report["scores"])] if report["scores"] else [])
    for name, f in entries:
        rows.append((name, f["kind"], f["verdict"], f"{f['psi']:.3f}", _fmt(f.get("ks")), f["detail"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]
    return "\n".join(lines + ["", f"{report['verdict'].upper()}: {report['summary']}"])


def write_outputs(report: dict[str, Any], out_dir: Path, ref: SplitStats, new: SplitStats,
                  reference_scores: dict | None = None, scores: np.ndarray | None = None) -> None:
    """Writes ``monitor.json`` and ``monitor.html`` (one file: figures embedded as base64 PNG) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "monitor.json").write_text(json.dumps(report, indent=2, default=_json_default))
    (out_dir / "monitor.html").write_text(render_html(report, ref, new, reference_scores, scores))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def render_html(report: dict[str, Any], ref: SplitStats, new: SplitStats,
                reference_scores: dict | None = None, scores: np.ndarray | None = None) -> str:
    """The page: the verdict in words, the table of every feature, then a figure per flagged feature and the scores."""
    colours = {"ok": "#2e7d32", "warn": "#b26a00", "drift": "#c62828"}
    entries = list(report["features"].items()) + ([("(scores)", report["scores"])] if report["scores"] else [])
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{f['kind']}</td>"
        f"<td style='color:{colours[f['verdict']]};font-weight:bold'>{f['verdict']}</td>"
        f"<td>{f['psi']:.3f}</td><td>{_fmt(f.get('ks'))}</td><td>{html.escape(f['detail'])}</td></tr>"
        for n, f in entries)
    figures = []
    for name, f in report["features"].items():
        if f["verdict"] != "ok":
            figures.append((name, _figure(_plot_feature, name, f, ref, new)))
    if report["scores"] is not None:
        figures.append(("predicted probability", _figure(_plot_scores, reference_scores, scores)))
    images = "".join(f"<figure><img src='data:image/png;base64,{img}' alt='{html.escape(n)}'>"
                     f"<figcaption>{html.escape(n)}</figcaption></figure>" for n, img in figures)
    not_compared = ", ".join(html.escape(n) for n in report["not_compared"]) or "none"
    verdict = report["verdict"]
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Drift monitor: {verdict}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}} figure{{display:inline-block;margin:8px}}
img{{width:420px}}</style></head><body>
<h1>Drift monitor: <span style="color:{colours[verdict]}">{verdict.upper()}</span></h1>
<p>{html.escape(report['summary'])}</p>
<p>{report['rows']:,} new rows ({html.escape(report.get('input', ''))}) against the
{report['reference']['training_examples']:,} training rows of {html.escape(report.get('export', 'the export'))}.
Thresholds: PSI {PSI_WARN} (warn) / {PSI_DRIFT} (drift); unseen values {UNSEEN_WARN:.0%} / {UNSEEN_DRIFT:.0%}
above the share a resample of the training data would show; predicted base rate {RATE_WARN[0]}x or
{RATE_WARN[1] * 100:.0f} points / {RATE_DRIFT[0]}x or {RATE_DRIFT[1] * 100:.0f} points; each only when sampling noise
explains it with probability below {SIGNIFICANCE}. Not compared: {not_compared}.</p>
<table><tr><th>feature</th><th>kind</th><th>verdict</th><th>PSI</th><th>KS</th><th>detail</th></tr>{rows}</table>
{images}
</body></html>
"""


def _fmt(value) -> str:
    return f"{value:.3f}" if value is not None and np.isfinite(value) else ""


def _figure(plot: Callable, *args) -> str:
    """A small figure drawn by ``plot(ax, *args)``, as base64 PNG (Agg backend, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 3.0), dpi=90)
    FigureCanvasAgg(fig)
    plot(fig.add_subplot(), *args)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plot_feature(ax, name: str, f: dict, ref: SplitStats, new: SplitStats) -> None:
    if f["kind"] == "numeric":
        a, b = ref.samples[name].values, new.samples[name].values
        both = np.concatenate([a, b])
        lo, hi = np.quantile(both, [0.005, 0.995]) if len(both) else (0.0, 1.0)
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 31)
        ax.hist(np.clip(a, lo, hi), bins, density=True, alpha=0.5, color="grey", label="training")
        ax.hist(np.clip(b, lo, hi), bins, density=True, histtype="step", lw=2, color="C1", label="new")
        ax.set_title(f"{name}: PSI {f['psi']:.2f}, KS {_fmt(f['ks'])}, {f['detail']}", fontsize=8)
    else:
        c = f["categories"]  # "(other)" of the new data split into values seen in training and unseen ones
        labels = c["values"][:-1] + ["(other seen)", "(unseen)"]
        ref_shares = c["reference"] + [0.0]
        new_shares = c["new"][:-1] + [max(0.0, c["new"][-1] - f["unseen"]), f["unseen"]]
        x = np.arange(len(labels))
        ax.bar(x - 0.2, ref_shares, 0.4, color="grey", label="training")
        ax.bar(x + 0.2, new_shares, 0.4, color="C1", label="new")
        ax.set_xticks(x, [v[:14] or "(missing)" for v in labels], rotation=60, fontsize=7)
        ax.set_ylabel("share of " + ("rows" if f["kind"] == "categorical" else "events"))
        ax.set_title(f"{name}: {f['unseen']:.1%} unseen, PSI {f['psi']:.2f}", fontsize=9)
    ax.legend(fontsize=8)


def _mean_text(reference: dict, scores: np.ndarray) -> str:
    return f"mean {float(reference['mean']):.1%} -> {float(np.mean(scores)):.1%}"


def _plot_scores(ax, reference: dict, scores: np.ndarray) -> None:
    bins = np.linspace(0, 1, 26)
    ax.hist(reference["sample"], bins, density=True, alpha=0.5, color="grey", label="validation (reference)")
    ax.hist(scores, bins, density=True, histtype="step", lw=2, color="C1", label="new")
    ax.set_xlabel("purchase probability")
    ax.set_title(f"predicted probability: {_mean_text(reference, scores)}", fontsize=9)
    ax.legend(fontsize=8)


# -- command line ------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m purchase_intent.monitor",
        description="Compare a new table with the training statistics an export keeps: per feature PSI, "
                    "KS, missing and unseen shares, and the drift of the predicted probabilities. Exit "
                    "status 0: ok or warn; 1: drift; 2: bad input.",
        formatter_class=cli.HelpFormatter)
    p.add_argument("--model", required=True,
                   help="exported version folder, e.g. runs/<run>/export/purchase_intent/1 (a model folder "
                        "picks its highest version): its assets.extra/ holds the reference")
    p.add_argument("--input", required=True,
                   help="CSV/Parquet of new raw examples named as in the schema, or a directory written by "
                        "python -m purchase_intent.prepare (its --split is compared)")
    p.add_argument("--split", default="train", help="with a prepared directory: the split to compare")
    p.add_argument("--output", default=None,
                   help="folder for monitor.json and monitor.html (default: <input>.monitor/ beside the input)")
    scores = p.add_mutually_exclusive_group()
    scores.add_argument("--scores", default=None,
                        help=f"scored table of the same rows (a {contract.PROBABILITY_COLUMN} column, e.g. "
                             "predict's output) instead of scoring the input with the export")
    scores.add_argument("--no-scores", action="store_true",
                        help="no score drift (the export is not loaded, TensorFlow not imported)")
    p.add_argument("--batch-size", type=int, default=512, help="rows per model call when scoring (default: 512)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while scoring")
    cli.add_common_flags(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the comparison; writes the outputs, prints the table; returns 0 (ok, warn) or 1 (drift)."""
    args = parse_args(argv)
    cli.setup_logging()
    if args.batch_size < 1:
        raise cli.UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    version_dir = version_folder(args.model)
    schema, ref, reference_scores = load_reference(version_dir, with_scores=not args.no_scores)
    scores = read_scores(args.scores) if args.scores else None
    score_with_export = not args.no_scores and scores is None
    inp = Path(args.input)
    prepared = inp.is_dir()
    if prepared:
        new = prepared_stats(inp, args.split)
        check_columns(new, schema, f"{inp} (split {args.split})")  # before the model loads
        if score_with_export:
            from purchase_intent.data.prepared import Prepared, read_frame

            scores = _scorer(version_dir, args)(read_frame(Prepared.load(inp), args.split))
    else:
        from purchase_intent.data.readers import check_table_file

        check_table_file(inp)  # before the model (and TensorFlow) loads
        new, scored = table_stats(inp, schema, _scorer(version_dir, args) if score_with_export else None)
        scores = scored if scores is None else scores
    if scores is not None and len(scores) != new.examples:
        logger.warning("%d scores for %d rows: are --scores of this table?", len(scores), new.examples)
    report = compare(ref, new, schema, reference_scores, scores)
    logger.info("Compared %d rows of %s with the %d training rows of %s", new.examples, inp, ref.examples,
                version_dir)
    report.update(input=str(inp) + (f" (split {args.split})" if prepared else ""), export=str(version_dir))
    out_dir = Path(args.output) if args.output else inp.with_name(inp.name + ".monitor")
    write_outputs(report, out_dir, ref, new, reference_scores, scores)
    print(summary_table(report), flush=True)
    print(f"Report: {out_dir / 'monitor.html'}", flush=True)
    return EXIT_DRIFT if report["verdict"] == "drift" else 0


def _scorer(version_dir: Path, args: argparse.Namespace) -> Callable[[pd.DataFrame], np.ndarray]:
    """Scores validated frames with predict's :class:`~purchase_intent.predict.Predictor` (TensorFlow loads here)."""
    from purchase_intent.predict import Predictor

    predictor = Predictor(version_dir)
    progress = False if args.no_progress else None
    return lambda valid: predictor.predict(valid, batch_size=args.batch_size, validate=False, progress=progress)


if __name__ == "__main__":
    sys.exit(cli.run(main))
