"""Targeting: whom to contact, and what contacting the top of the list by probability achieves.

Metrics of a contact list, computed from labels and predicted probabilities
beside those of :mod:`purchase_intent.evaluate` (numpy and pandas; no
matplotlib):

* :func:`targeting_table`: contacting the top 5-50 % of customers
  (:data:`TARGET_SHARES`) -> share of buyers reached, precision, lift;
* :func:`threshold_reach`: the same for everyone above the decision threshold;
* :func:`targeting_summary`: the ``targeting`` entry of ``metrics.json``
  (written by ``train``, shown by the report);
* :func:`lift_table`: customers cut into deciles by probability, the table of
  the lift and gain chart (:func:`purchase_intent.plots.plot_lift_gain`);
* :func:`buyers_interval`: the interval of the number of buyers among
  customers of given probabilities (Poisson-binomial; the campaign tool's too);
* :func:`expected_buyers`: the buyers the probabilities promise among the top
  10, 20, 30 % (:data:`DECISION_SHARES`), with that interval;
* :func:`auc_difference`: a model's ROC-AUC minus a baseline's, with a paired
  bootstrap interval (the report's decision block).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


TARGET_SHARES = (0.05, 0.10, 0.20, 0.30, 0.50)


def targeting_table(y: np.ndarray, p: np.ndarray, shares=TARGET_SHARES) -> pd.DataFrame:
    """What contacting the top X % of customers by predicted probability achieves.

    The top ``k = max(1, floor(X * n + 0.5))`` rows by probability are
    contacted (ties keep the file order). Per share:

    * ``customers_contacted``: ``k``; ``buyers_reached``: labels 1 among them;
    * ``share_of_buyers_reached``: ``buyers_reached`` / all labels 1;
    * ``precision``: ``buyers_reached / k``, the buy rate of the contacted;
    * ``lift``: ``precision`` / the overall buy rate (1 = random targeting);
    * ``min_probability``: the lowest probability contacted (the cut-off).

    Args:
        y: 0/1 labels.
        p: predicted probabilities, as long as ``y``.
        shares: shares of customers contacted, each in (0, 1].

    Returns:
        One row per share, in the order given.
    """
    y = np.asarray(y, np.float64).reshape(-1)
    p = np.asarray(p, np.float64).reshape(-1)
    if len(y) != len(p) or len(y) == 0:
        raise ValueError(f"{len(p)} probabilities for {len(y)} labels")
    order = np.argsort(-p, kind="stable")
    hits = np.cumsum(y[order])
    total, base = float(y.sum()), float(y.mean())
    rows = []
    for share in shares:
        if not 0 < share <= 1:
            raise ValueError(f"share contacted must be in (0, 1], got {share}")
        k = max(1, int(np.floor(share * len(y) + 0.5)))
        reached = float(hits[k - 1])
        precision = reached / k
        rows.append({"share_contacted": float(share), "customers_contacted": k,
                     "buyers_reached": int(reached),
                     "share_of_buyers_reached": reached / total if total else float("nan"),
                     "precision": precision, "lift": precision / base if base else float("nan"),
                     "min_probability": float(p[order[k - 1]])})
    return pd.DataFrame(rows)


def threshold_reach(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """What contacting everyone with probability >= ``threshold`` means, as in :func:`targeting_table`."""
    y = np.asarray(y, np.float64).reshape(-1)
    p = np.asarray(p, np.float64).reshape(-1)
    chosen = p >= threshold
    k = int(chosen.sum())
    reached = float(y[chosen].sum())
    total, base = float(y.sum()), float(y.mean())
    precision = reached / k if k else float("nan")
    return {"threshold": float(threshold), "share_contacted": k / len(y), "customers_contacted": k,
            "buyers_reached": int(reached),
            "share_of_buyers_reached": reached / total if total else float("nan"),
            "precision": precision, "lift": precision / base if base and k else float("nan")}


def targeting_summary(y: np.ndarray, probs: dict[str, np.ndarray], model: str,
                      threshold: float | None = None, split: str = "test") -> dict[str, Any]:
    """The ``targeting`` entry of ``metrics.json``: ``model``'s table and every model's top-share reach."""
    out: dict[str, Any] = {
        "split": split, "model": model, "examples": int(len(y)), "buyers": int(np.sum(y)),
        "table": targeting_table(y, probs[model]).to_dict(orient="records"),
        "share_of_buyers_reached_by_model": {
            name: {f"top_{round(100 * s)}%": r for s, r in zip(
                TARGET_SHARES, targeting_table(y, p)["share_of_buyers_reached"])}
            for name, p in probs.items()},
    }
    if threshold is not None:
        out["at_threshold"] = threshold_reach(y, probs[model], threshold)
    return out


def lift_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Customers ranked by probability, cut into ``bins`` equal groups (deciles by default).

    Returns:
        One row per group, most likely buyers first: ``group`` (1 = top),
        ``customers``, ``buyers``, ``buy_rate``, ``lift`` (buy rate / overall
        rate), ``cumulative_share_contacted`` and ``cumulative_gain`` (share of
        all buyers found when contacting the groups down to this one).
    """
    y = np.asarray(y, np.float64).reshape(-1)
    p = np.asarray(p, np.float64).reshape(-1)
    order = np.argsort(-p, kind="stable")
    groups = np.array_split(order, bins)
    base = y.mean() if len(y) else float("nan")
    rows, found, seen = [], 0.0, 0
    for i, idx in enumerate(groups, start=1):
        buyers = float(y[idx].sum())
        found += buyers
        seen += len(idx)
        rate = buyers / max(len(idx), 1)
        rows.append({"group": i, "customers": len(idx), "buyers": int(buyers), "buy_rate": rate,
                     "min_probability": float(p[idx].min()) if len(idx) else float("nan"),
                     "lift": rate / base if base > 0 else float("nan"),
                     "cumulative_share_contacted": seen / len(y),
                     "cumulative_gain": found / max(y.sum(), 1.0)})
    return pd.DataFrame(rows)


EXACT_MAX = 5_000  # contacts up to which the buyers' interval is the exact Poisson-binomial one


def poisson_binomial_pmf(p: np.ndarray) -> np.ndarray:
    """Distribution of the number of successes of independent Bernoulli(p_i): ``pmf[k]``, k = 0..len(p)."""
    pmf = np.ones(1)
    for q in np.asarray(p, np.float64).reshape(-1):
        nxt = np.zeros(len(pmf) + 1)
        nxt[:-1] = pmf * (1.0 - q)
        nxt[1:] += pmf * q
        pmf = nxt
    return pmf


def buyers_interval(p: np.ndarray, confidence: float = 0.95) -> tuple[float, float, str]:
    """Central ``confidence`` interval of the number of buyers among customers of probabilities ``p``.

    Returns:
        ``(low, high, method)``: exact quantiles of the Poisson-binomial law
        ("exact") up to :data:`EXACT_MAX` customers, else the normal
        approximation ``sum p +- z sqrt(sum p(1-p))`` clipped to [0, n] ("normal").
    """
    from scipy.stats import norm

    p = np.asarray(p, np.float64).reshape(-1)
    tail = (1.0 - confidence) / 2.0
    if len(p) == 0:
        return 0.0, 0.0, "exact"
    if len(p) <= EXACT_MAX:
        cdf = np.cumsum(poisson_binomial_pmf(p))
        low = int(np.searchsorted(cdf, tail - 1e-12))
        high = int(np.searchsorted(cdf, 1.0 - tail - 1e-12))
        return float(low), float(min(high, len(p))), "exact"
    mean, sd = float(p.sum()), float(math.sqrt(np.sum(p * (1 - p))))
    z = float(norm.ppf(1.0 - tail))
    return max(0.0, mean - z * sd), min(float(len(p)), mean + z * sd), "normal"


DECISION_SHARES = (0.10, 0.20, 0.30)  # the report's decision block: contact the top 10, 20, 30 %


def expected_buyers(p: np.ndarray, shares=DECISION_SHARES, confidence: float = 0.95) -> pd.DataFrame:
    """Buyers expected among the top X % by probability, with an interval, if the probabilities are right.

    The top ``k`` rows are those of :func:`targeting_table` (same ``k``, same
    order). With calibrated probabilities the buyers among them are a sum of
    independent Bernoulli(p_i): a Poisson-binomial law of mean ``sum p_i``.
    The interval holds its central ``confidence`` quantiles, exact up to
    :data:`EXACT_MAX` rows and by the normal
    approximation beyond (:func:`buyers_interval`, the campaign tool's
    interval too). It is the chance in who buys; an error of
    calibration comes on top.

    Returns:
        One row per share: ``share_contacted``, ``customers_contacted``,
        ``expected_buyers`` (``sum p_i``), ``low``, ``high`` and ``method``
        (``"exact"`` or ``"normal"``).
    """
    p = np.asarray(p, np.float64).reshape(-1)
    if len(p) == 0:
        raise ValueError("no probabilities")
    top = p[np.argsort(-p, kind="stable")]
    rows = []
    for share in shares:
        if not 0 < share <= 1:
            raise ValueError(f"share contacted must be in (0, 1], got {share}")
        k = max(1, int(np.floor(share * len(p) + 0.5)))
        low, high, method = buyers_interval(top[:k], confidence)
        rows.append({"share_contacted": float(share), "customers_contacted": k,
                     "expected_buyers": float(top[:k].sum()), "low": low, "high": high, "method": method})
    return pd.DataFrame(rows)


def auc_difference(y: np.ndarray, p_model: np.ndarray, p_baseline: np.ndarray, *, n: int = 1000,
                   seed: int = 0) -> dict[str, float]:
    """ROC-AUC of a model minus a baseline's on the same rows, with a 95 % paired bootstrap interval.

    The resampling is :func:`bootstrap_auc`'s (the same
    resamples of the rows for both models). Rows where either probability is
    missing are left out.

    Returns:
        ``{"difference"`` (on all rows), ``"low"``, ``"high"`` (2.5 and 97.5
        percentiles of the resampled differences), ``"model_auc"``,
        ``"baseline_auc"``, ``"rows"``, ``"resamples"}``.

    Raises:
        ValueError: fewer than two classes among the rows.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y).reshape(-1)
    a = np.asarray(p_model, np.float64).reshape(-1)
    b = np.asarray(p_baseline, np.float64).reshape(-1)
    keep = np.isfinite(a) & np.isfinite(b)
    y, a, b = y[keep], a[keep], b[keep]
    if len(y) == 0 or y.min() == y.max():
        raise ValueError("the ROC-AUC needs both classes among the rows")
    boot = bootstrap_auc(y, {"model": a, "baseline": b}, n=n, seed=seed, pairs=[("model", "baseline")])
    d = boot["differences"]["model - baseline"]
    model_auc, baseline_auc = float(roc_auc_score(y, a)), float(roc_auc_score(y, b))
    return {"difference": model_auc - baseline_auc, "low": d["low"], "high": d["high"], "model_auc": model_auc,
            "baseline_auc": baseline_auc, "rows": int(len(y)), "resamples": n}


def bootstrap_auc(y: np.ndarray, probs: dict[str, np.ndarray], n: int = 1000, seed: int = 0,
                  pairs: list[tuple[str, str]] = ()) -> dict[str, Any]:
    """Paired bootstrap of the test ROC-AUC (the same resamples for every model).

    Returns:
        ``{"models": {name: [low, high]}, "differences": {"a - b": {"mean", "low", "high",
        "p_le_0"}}, "resamples": n}`` with 95 % percentile intervals.
    """
    pos = np.asarray(y).reshape(-1).astype(np.float64) > 0.5
    probs = {k: np.asarray(p, np.float64).reshape(-1) for k, p in probs.items()}
    rng = np.random.default_rng(seed)
    rows = len(pos)
    chunk = max(1, 10_000_000 // max(rows, 1))  # resamples scored together: about 80 MB of counts
    samples, counts = {k: [] for k in probs}, []
    for i in range(n):
        idx = rng.integers(0, rows, rows)
        if pos[idx].any() and not pos[idx].all():  # a resample of one class has no ROC-AUC: skipped
            counts.append(np.bincount(idx, minlength=rows))
        if counts and (len(counts) == chunk or i == n - 1):
            for k, p in probs.items():  # each resample as how many times it holds each row
                samples[k].append(weighted_auc(pos, p, np.asarray(counts, np.float64)))
            counts = []
    samples = {k: np.concatenate(v) if v else np.zeros(0) for k, v in samples.items()}
    out = {"models": {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
                      for k, v in samples.items()}, "differences": {}, "resamples": n}
    for a, b in pairs:
        d = samples[a] - samples[b]
        out["differences"][f"{a} - {b}"] = {
            "mean": float(d.mean()), "low": float(np.percentile(d, 2.5)),
            "high": float(np.percentile(d, 97.5)), "p_le_0": float((d <= 0).mean())}
    return out


def weighted_auc(pos: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC of ``p`` for the labels ``pos`` under each row of ``weights``, at once.

    ``weights[b, i]``: how many times resample ``b`` holds row ``i`` (a
    bootstrap resample's counts), so row ``b`` of the result is
    ``roc_auc_score`` of that resample: the share of (positive, negative)
    pairs ranked right, ties counting half. One sort of ``p`` serves every
    resample; each then costs a few passes over its counts.
    """
    order = np.argsort(p, kind="stable")
    sorted_p = p[order]
    starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])  # groups of tied scores
    w = weights[:, order]
    positives = np.add.reduceat(w * pos[order], starts, axis=1)
    negatives = np.add.reduceat(w * ~pos[order], starts, axis=1)
    below = np.cumsum(negatives, axis=1) - negatives
    with np.errstate(invalid="ignore", divide="ignore"):
        return (positives * (below + 0.5 * negatives)).sum(1) / (positives.sum(1) * negatives.sum(1))
