"""Whom to contact now, what it is worth, and why: ``python -m purchase_intent.campaign``.

Scores the current customer base (a table without labels, one row per
customer: an id in several rows is refused) with an export, read, validated
and scored exactly as ``python -m purchase_intent.predict`` does
(:func:`purchase_intent.scoring_io.validated_chunks`,
:class:`purchase_intent.predict.Predictor`), and writes into ``--output``:

* ``contacts.csv``: the schema's id columns as written in the input (strings:
  ``"007"`` stays ``"007"``; without id columns, ``row``, the data row number
  in the file), ``purchase_probability``, ``rank`` (1 = most likely),
  ``expected_value`` (``p * value - cost``), ``contact`` (1/0) and
  ``reason_1`` .. ``reason_3``, sorted by rank;
* ``campaign.html``: one page (figure embedded as base64 PNG): the decision in
  words, the gain curve with the cut, the model version, the date of scoring
  and the top of the list;
* ``campaign.json``: the figures.

**The cut.** Customers are sorted by probability (ties keep the file order).
Contacting the top ``N`` is worth ``sum_{i<=N} (p_i * value - cost)`` in
expectation; the number contacted is the ``N`` (0..n) that maximises this
cumulative sum (the smallest such ``N``; 0 when no one is worth a contact),
i.e. everyone whose probability beats the break-even ``cost / value``. With
``--budget B`` the maximum is taken over ``N <= floor(B / cost)``; with
``--contacts N`` exactly ``N`` are contacted (at most n).

**The value of a purchase** is ``--value-per-purchase V``, or
``--margin M --order-value O``: ``V = M * O`` (the profit a purchase brings).

**The intervals.** With calibrated probabilities the buyers among the
contacted are a sum of independent Bernoulli(p_i): a Poisson-binomial law of
mean ``sum p_i`` and variance ``sum p_i (1 - p_i)``. The interval
(``--confidence``, default 95 %) holds its central quantiles, computed exactly
(the law's distribution by convolution) up to :data:`EXACT_MAX` contacts and
by the normal approximation beyond (there the two agree to within a buyer).
Expected profit is ``value * buyers - cost * N``: its interval is the buyers'
interval mapped the same way. These intervals show the chance in who buys,
assuming the probabilities are right; an error of calibration (the export's
test ECE) comes on top.

**The reasons** are the top three drivers of each customer's score, by
occlusion per feature group: each group is replaced by its typical training
value, taken from the export's ``assets.extra/training_stats.json``
(:class:`purchase_intent.stats.SplitStats`), the row is scored again through
the same Predictor, and the drop ``p - p(group typical)`` is the group's
contribution. Groups and their typical values:

* each numeric feature: the training median (missing counts as a value);
* each categorical feature: the most frequent training value;
* all sequence columns together (events, with their per-event texts): no events;
* the text columns together: empty text.

Only rows whose value differs from the typical one are scored again (the
others contribute 0), in batches. Only groups that raise the probability by
at least :data:`MIN_REASON_DROP` count; fewer than three reasons when fewer
exist. A reason reads ``pages_viewed: 12 (typical 4)``, ``country: France``,
``viewed sku29 (3 times), sku41; 12 events`` (the most frequent items of the
sequence column with the largest vocabulary, ties by the most recent) or
``query: "cheap red dress"``; ``--reason-labels FILE`` (JSON
``{"visits_30d": "visited {value} times in 30 days"}``) words a feature
your way (fields: ``{value}`` and ``{typical}``; ``{items}`` and
``{events}`` for the sequence column; ``{text}`` for a text column).
Occlusion measures one group at a time: two groups that only matter together
are each credited with their joint effect, or neither.

Examples:

    python -m purchase_intent.campaign --model runs/<run>/export/purchase_intent/1 \\
        --input customers.csv --output campaign/2025-07 \\
        --cost-per-contact 1.0 --value-per-purchase 25

    python -m purchase_intent.campaign --model ... --input customers.csv --output out \\
        --cost-per-contact 0.8 --margin 0.3 --order-value 80 --budget 5000
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime
import html
import io
import json
import logging
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from purchase_intent import cli, contract
from purchase_intent.targeting import EXACT_MAX, buyers_interval, poisson_binomial_pmf  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

MIN_REASON_DROP = 0.001  # a reason raises the probability by at least 0.1 points
REASONS = 3
TOP_ROWS = 25  # rows of the contact list shown on the page
TRAINING_STATS = "training_stats.json"
OUTPUT_COLUMNS = (contract.PROBABILITY_COLUMN, "rank", "expected_value", "contact",
                  *(f"reason_{i}" for i in range(1, REASONS + 1)))

ScoreFn = Callable[[pd.DataFrame], np.ndarray]


# -- the decision (numbers only) ---------------------------------------------
def choose_contacts(p: np.ndarray, value: float, cost: float, *, budget: float | None = None,
                    contacts: int | None = None) -> int:
    """How many of the most likely customers to contact.

    Args:
        p: purchase probabilities (any order).
        value: float. What a purchase is worth.
        cost: float. What a contact costs.
        budget: optional total spend: at most ``floor(budget / cost)`` contacts.
        contacts: optional exact number (capped at ``len(p)``); overrides the optimum.

    Returns:
        The ``N`` in 0..len(p) maximising ``sum_{i<=N} (p_(i) * value - cost)`` over the
        probabilities sorted high to low (the smallest such N), within the budget;
        or ``min(contacts, len(p))``.
    """
    p = np.asarray(p, np.float64).reshape(-1)
    if contacts is not None:
        return int(min(max(contacts, 0), len(p)))
    profit = np.concatenate([[0.0], np.cumsum(np.sort(p)[::-1] * value - cost)])
    if budget is not None and cost > 0:
        profit = profit[:int(math.floor(budget / cost + 1e-9)) + 1]
    return int(np.argmax(profit))


def gain_curve(p_sorted: np.ndarray, value: float, cost: float) -> dict[str, np.ndarray]:
    """Cumulative expected buyers and profit (with their normal-approximation sd) for N = 0..n contacts."""
    p = np.asarray(p_sorted, np.float64)
    zero = np.zeros(1)
    return {"contacts": np.arange(len(p) + 1),
            "buyers": np.concatenate([zero, np.cumsum(p)]),
            "buyers_sd": np.sqrt(np.concatenate([zero, np.cumsum(p * (1 - p))])),
            "profit": np.concatenate([zero, np.cumsum(p * value - cost)])}


def decide(p: np.ndarray, value: float, cost: float, *, budget: float | None = None,
           contacts: int | None = None, confidence: float = 0.95) -> dict[str, Any]:
    """The decision and its figures (the ``decision`` entry of ``campaign.json``).

    Args:
        p: every customer's probability, in file order.
        value, cost, budget, contacts: as in :func:`choose_contacts`.
        confidence: float. Level of the intervals.
    """
    p = np.asarray(p, np.float64).reshape(-1)
    p_sorted = np.sort(p)[::-1]
    best = choose_contacts(p, value, cost)
    n = choose_contacts(p, value, cost, budget=budget, contacts=contacts)
    chosen = p_sorted[:n]
    low, high, method = buyers_interval(chosen, confidence)
    buyers = float(chosen.sum())
    rule = "contacts" if contacts is not None else ("budget" if budget is not None and n < best else "optimum")
    return {
        "customers": int(len(p)), "contacts": n, "rule": rule, "best_contacts": best,
        "best_expected_profit": float(np.sum(p_sorted[:best] * value - cost)),
        "budget": budget, "contacts_asked": contacts,
        "max_contacts_in_budget": (int(math.floor(budget / cost + 1e-9)) if budget is not None and cost > 0
                                   else None),
        "cost_per_contact": cost, "value_per_purchase": value,
        "break_even_probability": cost / value if value > 0 else None,
        "lowest_probability_contacted": float(chosen[-1]) if n else None,
        "expected_buyers": buyers, "buyers_interval": [low, high],
        "expected_profit": value * buyers - cost * n,
        "profit_interval": [value * low - cost * n, value * high - cost * n],
        "spend": cost * n, "confidence": confidence, "interval_method": method,
        "mean_probability": float(p.mean()) if len(p) else None,
    }


# -- reasons -----------------------------------------------------------------
@dataclasses.dataclass
class FeatureGroup:
    """Raw columns occluded together, and the typical value they are replaced with.

    Args:
        name: str. The group's name (a feature name, "events" or "text").
        kind: str. "numeric", "categorical", "sequence" or "text".
        columns: list of str. The raw columns.
        typical: the replacement: a float (numeric), a str (categorical), None (sequence, text).
        item_column: str or None. For "sequence": the column whose values a reason names.
    """

    name: str
    kind: str
    columns: list[str]
    typical: Any = None
    item_column: str | None = None


def feature_groups(schema, stats) -> list[FeatureGroup]:
    """The groups of :mod:`purchase_intent.campaign`'s attribution, typical values from training ``stats``.

    A numeric feature without finite training values, or a categorical one without
    counts, is left out (logged).
    """
    groups = []
    for name in schema.numeric:
        sample = stats.samples.get(name)
        moments = stats.moments.get(name, {}).get("none")
        if sample is not None and len(sample.values):
            typical = float(np.median(sample.values))
        elif moments is not None and moments.count:
            typical = float(moments.mean)
        else:
            logger.warning("No training statistics for %r: it is never given as a reason", name)
            continue
        groups.append(FeatureGroup(name, "numeric", [name], typical))
    for name in schema.categorical:
        counts = stats.values.get(name)
        if not counts:
            logger.warning("No training counts for %r: it is never given as a reason", name)
            continue
        groups.append(FeatureGroup(name, "categorical", [name],
                                   min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]))
    if schema.sequence_like:
        candidates = list(schema.sequences) or list(schema.sequence_like)
        item = max(candidates, key=lambda c: (len(stats.values.get(c, ())), -candidates.index(c)))
        groups.append(FeatureGroup("events", "sequence", list(schema.sequence_like), None, item))
    if schema.text:
        groups.append(FeatureGroup("text", "text", list(schema.text)))
    return groups


def differs(frame: pd.DataFrame, group: FeatureGroup) -> np.ndarray:
    """Rows of a validated frame whose ``group`` is not already its typical value (their contribution can be nonzero)."""
    if group.kind == "numeric":
        x = frame[group.name].to_numpy(np.float64)
        return ~(x == group.typical)
    if group.kind == "categorical":
        return np.array([contract.category(v) != group.typical for v in frame[group.name]], bool)
    if group.kind == "sequence":
        return np.array([contract.event_count(*rows) > 0 for rows in zip(*(frame[c] for c in group.columns))],
                        bool).reshape(-1)
    return np.logical_or.reduce([frame[c].to_numpy(object) != "" for c in group.columns]).reshape(-1)


def occlude(frame: pd.DataFrame, group: FeatureGroup) -> pd.DataFrame:
    """A copy of a validated frame with ``group`` set to its typical value."""
    out = frame.copy()
    for c in group.columns:
        if group.kind == "numeric":
            out[c] = np.float32(group.typical)
        elif group.kind == "categorical":
            out[c] = group.typical
        elif group.kind == "sequence":
            out[c] = pd.Series([[] for _ in range(len(out))], index=out.index, dtype=object)
        else:
            out[c] = ""
    return out


def attribute(score: ScoreFn, frame: pd.DataFrame, groups: list[FeatureGroup], p: np.ndarray, *,
              rows: np.ndarray | None = None, batch_size: int = 4096,
              progress: bool | None = None) -> np.ndarray:
    """Occlusion contributions ``p - p(group typical)``, one column per group.

    Args:
        score: validated frame -> probabilities (``Predictor.predict`` without validation).
        frame: the validated frame ``p`` was scored from.
        groups: from :func:`feature_groups`.
        p: the probabilities of ``frame``.
        rows: optional boolean mask: only these rows are attributed (others 0).
        batch_size: int. Rows rescored per call.
        progress: bool or None. tqdm bar; None shows it at a terminal only.

    Returns:
        float64 array ``[len(frame), len(groups)]``; 0 where a row already has the typical value.
    """
    from tqdm import tqdm

    p = np.asarray(p, np.float64).reshape(-1)
    out = np.zeros((len(frame), len(groups)))
    todo = [np.flatnonzero(differs(frame, g) & (True if rows is None else rows)) for g in groups]
    with tqdm(total=int(sum(len(t) for t in todo)), unit=" rows", desc="reasons", file=sys.stderr,
              disable=None if progress is None else not progress) as bar:
        for j, (group, idx) in enumerate(zip(groups, todo)):
            for start in range(0, len(idx), batch_size):
                part = idx[start:start + batch_size]
                occluded = occlude(frame.iloc[part].reset_index(drop=True), group)
                out[part, j] = p[part] - np.asarray(score(occluded), np.float64).reshape(-1)
                bar.update(len(part))
    return out


def top_reasons(contributions: np.ndarray, k: int = REASONS, min_drop: float = MIN_REASON_DROP) -> np.ndarray:
    """Per row, the indices of the ``k`` groups raising the probability most (-1: no further reason).

    Only contributions of at least ``min_drop`` count; ties keep the group order.
    """
    c = np.asarray(contributions, np.float64)
    if c.ndim != 2 or c.shape[1] == 0:
        return np.full((len(c), k), -1, np.int64)
    order = np.argsort(-c, axis=1, kind="stable")[:, :k]
    keep = np.take_along_axis(c, order, axis=1) >= min_drop
    out = np.where(keep, order, -1)
    if out.shape[1] < k:
        out = np.hstack([out, np.full((len(c), k - out.shape[1]), -1, np.int64)])
    return out


def number(x: float) -> str:
    """A number as a reason shows it: ``12``, ``3.46``, ``1,250``."""
    if not np.isfinite(x):
        return "missing"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.3g}"


def sequence_items(row_items: list, top: int = 2) -> tuple[str, int]:
    """``("sku29 (3 times), sku41", 12)``: the most frequent events (ties by the most recent) and the event count."""
    items = [v for v in contract.strip_padding(row_items) if v != ""]
    if not items:
        return "", 0
    counts = Counter(items)
    last = {v: i for i, v in enumerate(items)}
    ranked = sorted(counts, key=lambda v: (-counts[v], -last[v]))[:top]
    return ", ".join(f"{v} ({counts[v]} times)" if counts[v] > 1 else v for v in ranked), len(items)


def reason_text(group: FeatureGroup, frame: pd.DataFrame, i: int, labels: dict[str, str] | None = None) -> str:
    """The words of one reason: ``group`` for row ``i`` of the validated frame."""
    labels = labels or {}
    if group.kind == "numeric":
        x = float(frame[group.name].iat[i])
        fields = {"value": number(x), "typical": number(group.typical)}
        default = f"{group.name}: missing" if not np.isfinite(x) else \
            f"{group.name}: {fields['value']} (typical {fields['typical']})"
        key = group.name
    elif group.kind == "categorical":
        value = str(frame[group.name].iat[i])
        fields = {"value": value or "(blank)", "typical": group.typical}
        default, key = f"{group.name}: {fields['value']}", group.name
    elif group.kind == "sequence":
        items, events = sequence_items(frame[group.item_column].iat[i])
        fields = {"items": items, "events": events, "value": items}
        default = f"viewed {items}; {events} events" if items else f"{events} events"
        key = group.item_column if group.item_column in labels else "events"
    else:
        parts = [(c, str(frame[c].iat[i])) for c in group.columns if str(frame[c].iat[i])]
        c, text = parts[0] if parts else (group.columns[0], "")
        short = text if len(text) <= 40 else text[:39] + "\u2026"
        fields = {"text": short, "value": short}
        default, key = f'{c}: "{short}"', c
    template = labels.get(key)
    if template:
        try:
            return template.format(**fields)
        except (KeyError, IndexError, ValueError) as e:
            raise cli.UserError(f"--reason-labels: the template {template!r} of {key!r} does not fit "
                                f"({type(e).__name__}: {e}); fields: {sorted(fields)}") from None
    return default


def reason_columns(frame: pd.DataFrame, groups: list[FeatureGroup], top: np.ndarray,
                   labels: dict[str, str] | None = None) -> list[list[str]]:
    """``reason_1`` .. ``reason_k`` in words, one list per column, from :func:`top_reasons`' indices."""
    cols: list[list[str]] = [[""] * len(frame) for _ in range(top.shape[1])]
    for i, j in zip(*np.nonzero(top >= 0)):
        cols[j][i] = reason_text(groups[top[i, j]], frame, int(i), labels)
    return cols


# -- reading -----------------------------------------------------------------
def read_customers(path: str | Path, schema, chunk_rows: int = 20_000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The table read and validated as scoring reads it: ``(id columns as in the file, validated frame)``.

    Without id columns in the schema the first frame holds ``row``: the data row
    number in the file (1 = the first row after the header).

    Raises:
        SchemaError: an id column of the schema is missing, or an id is in more than one row (a campaign
            contacts each customer once), or as :func:`~purchase_intent.scoring_io.validated_chunks`.
    """
    from purchase_intent.scoring_io import validated_chunks

    ids, valid, rows = [], [], []
    for chunk, v in validated_chunks(path, schema, chunk_rows):
        if schema.id:
            schema.require_ids(chunk.columns, where=str(path))
            ids.append(chunk[list(schema.id)].reset_index(drop=True))
        else:
            ids.append(pd.DataFrame({"row": np.asarray(chunk.index) + 1}))
        rows.append(np.asarray(chunk.index))
        valid.append(v)
    ids = pd.concat(ids, ignore_index=True)
    if schema.id:
        _refuse_repeated_ids(ids[schema.id[0]], np.concatenate(rows), path)
    return ids, pd.concat(valid, ignore_index=True)


def _refuse_repeated_ids(values: pd.Series, rows: np.ndarray, path) -> None:
    """Raises if a customer id (read as :func:`~purchase_intent.data.readers.id_keys` reads it) is in several
    rows: each would be scored, ranked and counted as a customer of its own, contacted once per row."""
    from purchase_intent.data.readers import id_keys, is_missing_key
    from purchase_intent.schema import SchemaError

    keys = id_keys(values).where(~is_missing_key(values))
    repeated = keys.duplicated(keep=False) & keys.notna()
    if not repeated.any():
        return
    first = keys[repeated].iloc[0]
    at = " and ".join(str(int(r) + 2) for r in rows[(keys == first).to_numpy()][:3])  # as row_ref counts
    example = values[keys == first].iloc[0]
    raise SchemaError(
        f"{path}: {keys[repeated].nunique():,} id(s) of column {values.name!r} are in more than one row "
        f"({int(repeated.sum()):,} rows; e.g. {example!r} in spreadsheet rows {at}, header = row 1): a "
        "campaign contacts each customer once, so give one row per customer, the current one (e.g. the "
        "latest month)")


def model_info(version_dir: Path) -> dict[str, Any]:
    """Version number, test ROC-AUC and calibration of an export (``assets.extra/metrics.json``, else the run's)."""
    info: dict[str, Any] = {"path": str(version_dir), "version": version_dir.name, "test_roc_auc": None,
                            "test_ece": None, "calibration": None}
    for path in (version_dir / "assets.extra" / "metrics.json", version_dir.parents[2] / "metrics.json"
                 if len(version_dir.parents) > 2 else None):
        if path is None or not path.is_file():
            continue
        try:
            metrics = json.loads(path.read_text())
            test = metrics.get("test", {})
            model = test.get("purchase_intent") or next((v for v in test.values() if isinstance(v, dict)), {})
            info.update(test_roc_auc=model.get("roc_auc"), test_ece=model.get("ece"), metrics_file=str(path),
                        calibration=(metrics.get("training", {}).get("calibration") or {}).get("method"))
        except (ValueError, AttributeError) as e:
            logger.warning("%s: not readable (%s); the model's metrics are not shown", path, e)
            continue
        break
    return info


def read_labels(path: str | Path | None) -> dict[str, str]:
    """``--reason-labels``: a JSON object ``{feature: template}``."""
    if not path:
        return {}
    try:
        labels = json.loads(Path(path).read_text())
    except ValueError as e:
        raise cli.UserError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise cli.UserError(f"{path}: expected a JSON object of templates, e.g. "
                            '{"visits_30d": "visited {value} times in 30 days"}')
    return labels


# -- the run -----------------------------------------------------------------
def run_campaign(version_dir: str | Path, input_path: str | Path, out_dir: str | Path, *, value: float,
                 cost: float, budget: float | None = None, contacts: int | None = None,
                 confidence: float = 0.95, reasons: str = "all", labels: dict[str, str] | None = None,
                 batch_size: int = 4096, progress: bool | None = None, period: str | None = None,
                 value_note: str = "") -> dict[str, Any]:
    """Scores ``input_path``, decides, explains and writes the three files; returns ``campaign.json``'s content.

    Args:
        version_dir: export version folder (a model folder picks its highest version).
        reasons: "all", "contacted" or "none": whose reasons are computed.
        labels: ``--reason-labels`` templates.
        period: optional words for the data period shown on the page.
        value_note: how the value per purchase was obtained (shown after it).
        value, cost, budget, contacts, confidence, batch_size, progress: as the flags.
    """
    from purchase_intent.monitor import version_folder
    from purchase_intent.predict import Predictor
    from purchase_intent.stats import SplitStats

    timings: dict[str, float] = {}
    start = time.perf_counter()
    version_dir = version_folder(version_dir)
    stats_file = version_dir / "assets.extra" / TRAINING_STATS
    if reasons != "none" and not stats_file.is_file():
        raise cli.UserError(f"{stats_file} is missing: no typical values for the reasons; export the model "
                            "again with this version of train, or run with --reasons none")
    predictor = Predictor(version_dir)
    schema = predictor.schema
    clash = sorted(set(schema.id) & set(OUTPUT_COLUMNS))
    if clash:
        raise cli.UserError(f"id column(s) {clash} have the names of output columns; rename them in the input "
                            "and the schema")
    timings["load_seconds"] = time.perf_counter() - start

    t = time.perf_counter()
    ids, frame = read_customers(input_path, schema)
    timings["read_seconds"] = time.perf_counter() - t
    t = time.perf_counter()
    p = np.asarray(predictor.predict(frame, batch_size=batch_size, validate=False, progress=progress),
                   np.float64)
    timings["scoring_seconds"] = time.perf_counter() - t
    logger.info("Scored %d customers of %s with %s in %.1f s", len(p), input_path, version_dir,
                timings["scoring_seconds"])

    decision = decide(p, value, cost, budget=budget, contacts=contacts, confidence=confidence)
    order = np.argsort(-p, kind="stable")
    rank = np.empty(len(p), np.int64)
    rank[order] = np.arange(1, len(p) + 1)
    contact = rank <= decision["contacts"]

    t = time.perf_counter()
    groups: list[FeatureGroup] = []
    top = np.full((len(p), REASONS), -1, np.int64)
    if reasons != "none":
        stats = SplitStats.from_dict(json.loads(stats_file.read_text()))
        groups = feature_groups(schema, stats)
        score = lambda f: predictor.predict(f, batch_size=batch_size, validate=False, progress=False)  # noqa: E731
        contrib = attribute(score, frame, groups, p, rows=contact if reasons == "contacted" else None,
                            batch_size=batch_size, progress=progress)
        top = top_reasons(contrib)
    words = reason_columns(frame, groups, top, labels)
    timings["reasons_seconds"] = time.perf_counter() - t

    table = ids.copy()
    table[contract.PROBABILITY_COLUMN] = np.round(p, 6)
    table["rank"] = rank
    table["expected_value"] = np.round(p * value - cost, 4)
    table["contact"] = contact.astype(np.int64)
    for j, col in enumerate(words, start=1):
        table[f"reason_{j}"] = col
    table = table.iloc[order].reset_index(drop=True)

    contacted_top = top[contact]
    reason_counts = Counter(groups[j].name for j in contacted_top.reshape(-1) if j >= 0)
    input_path = Path(input_path)
    report = {
        "decision": decision,
        "sentence": decision_sentence(decision, value_note),
        "model": model_info(version_dir),
        "data": {"input": str(input_path), "rows": int(len(p)), "period": period,
                 "input_modified": datetime.datetime.fromtimestamp(input_path.stat().st_mtime).date().isoformat(),
                 "scored_at": datetime.datetime.now().isoformat(timespec="seconds")},
        "reasons": {"computed_for": reasons, "method": "occlusion per feature group (typical training value)",
                    "min_drop": MIN_REASON_DROP,
                    "groups": [{"name": g.name, "kind": g.kind, "columns": g.columns,
                                "typical": g.typical, "item_column": g.item_column} for g in groups],
                    "most_common_among_contacted": dict(reason_counts.most_common()),
                    "contacted_without_reason": int(np.sum(contacted_top[:, 0] < 0)) if reasons != "none" else None},
        "value_note": value_note,
    }
    t = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / "contacts.csv.partial"
    table.to_csv(partial, index=False)
    partial.replace(out_dir / "contacts.csv")
    curve = gain_curve(p[order], value, cost)
    timings["writing_seconds"] = time.perf_counter() - t  # the page's figure is drawn below
    timings["total_seconds"] = time.perf_counter() - start
    report["timings"] = timings
    (out_dir / "campaign.html").write_text(render_html(report, curve, table.head(TOP_ROWS), list(ids.columns)))
    (out_dir / "campaign.json").write_text(json.dumps(report, indent=2, default=_json_default))
    return report


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# -- words and the page --------------------------------------------------------
def _count(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 or float(x).is_integer() else f"{x:,.1f}"


def _money(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:,.2f}"


def decision_sentence(d: dict[str, Any], value_note: str = "") -> str:
    """The decision in words: whom to contact, the buyers and the profit expected, at which cost and value."""
    terms = (f"at cost {_money(d['cost_per_contact'])} per contact and {_money(d['value_per_purchase'])} "
             f"per purchase{f' ({value_note})' if value_note else ''}")
    level = f"{d['confidence']:.0%} intervals"
    if d["contacts"] == 0:
        why = "as asked (--contacts 0)" if d["rule"] == "contacts" else (
            "the budget allows no contact" if d["rule"] == "budget" else
            f"no customer's expected value is positive (break-even probability {d['break_even_probability']:.1%})")
        return f"Contact no one of {d['customers']:,} customers: {why}, {terms}."
    low, high = d["buyers_interval"]
    plow, phigh = d["profit_interval"]
    text = (f"Contact the top {d['contacts']:,} of {d['customers']:,} customers: about "
            f"{_count(d['expected_buyers'])} buyers expected ({_count(low)}-{_count(high)}), expected profit "
            f"{_money(d['expected_profit'])} ({_money(plow)} to {_money(phigh)}; {level}) {terms}.")
    if d["rule"] == "budget":
        text += (f" The budget of {_money(d['budget'])} allows {d['max_contacts_in_budget']:,} contacts; "
                 f"{d['best_contacts']:,} would be worth contacting (expected profit "
                 f"{_money(d['best_expected_profit'])}).")
    elif d["rule"] == "contacts":
        text += (f" The number was set with --contacts; the most profitable number is {d['best_contacts']:,} "
                 f"(expected profit {_money(d['best_expected_profit'])}).")
    else:
        text += (f" That is everyone whose purchase probability beats the break-even "
                 f"{d['break_even_probability']:.1%} (cost / value)." if d["break_even_probability"] else "")
    return text


def _figure(curve: dict[str, np.ndarray], d: dict[str, Any]) -> str:
    """The gain curve (expected buyers, expected profit with its band) with the cut, as base64 PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from scipy.stats import norm

    fig = Figure(figsize=(8.0, 3.6), dpi=90)
    FigureCanvasAgg(fig)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    x = curve["contacts"]
    z = float(norm.ppf(0.5 + d["confidence"] / 2))
    band = z * curve["buyers_sd"]
    left.plot(x, curve["buyers"], color="C0")
    left.fill_between(x, curve["buyers"] - band, curve["buyers"] + band, color="C0", alpha=0.2, lw=0)
    left.set_xlabel("customers contacted (most likely first)")
    left.set_ylabel("expected buyers")
    value = d["value_per_purchase"]
    right.plot(x, curve["profit"], color="C2")
    right.fill_between(x, curve["profit"] - value * band, curve["profit"] + value * band, color="C2", alpha=0.2,
                       lw=0)
    right.axhline(0, color="grey", lw=0.8)
    right.set_xlabel("customers contacted (most likely first)")
    right.set_ylabel("expected profit")
    for ax in (left, right):
        ax.axvline(d["contacts"], color="C3", ls="--", lw=1.2, label=f"contact {d['contacts']:,}")
        ax.legend(fontsize=8, loc="lower right" if ax is left else "best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def render_html(report: dict[str, Any], curve: dict[str, np.ndarray], top: pd.DataFrame,
                id_columns: list[str]) -> str:
    """``campaign.html``: the decision, the gain curve, the model and data, the top of the list, the method."""
    d, m, data, r = report["decision"], report["model"], report["data"], report["reasons"]
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in top.columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(_cell(v))}</td>" for v in row) + "</tr>"
                   for row in top.itertuples(index=False))
    auc = f"{m['test_roc_auc']:.3f}" if m.get("test_roc_auc") is not None else "not recorded"
    ece = f", test calibration error (ECE) {m['test_ece']:.3f}" if m.get("test_ece") is not None else ""
    calibration = f", calibrated by {esc(str(m['calibration']))}" if m.get("calibration") else ""
    common = ", ".join(f"{esc(k)} ({v:,})" for k, v in r["most_common_among_contacted"].items()) or "none"
    groups = ", ".join(esc(f"{g['name']} (typical: {'no events' if g['kind'] == 'sequence' else 'empty' if g['kind'] == 'text' else _cell(g['typical'])})")
                       for g in r["groups"]) or "none computed"
    period = f"Data period: {esc(data['period'])}. " if data.get("period") else ""
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Campaign: contact {d['contacts']:,} of {d['customers']:,}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} table{{border-collapse:collapse;font-size:90%}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}} .decision{{font-size:130%;line-height:1.4}}
img{{max-width:100%}}</style></head><body>
<h1>Campaign: whom to contact now</h1>
<p class="decision">{esc(report['sentence'])}</p>
<figure><img src="data:image/png;base64,{_figure(curve, d)}" alt="gain curve">
<figcaption>Cumulative expected buyers and expected profit against the number contacted, most likely
customers first; bands: {d['confidence']:.0%} intervals; dashed: the cut.</figcaption></figure>
<h2>Model and data</h2>
<p>Model version {esc(str(m['version']))} ({esc(m['path'])}): test ROC-AUC {auc}{ece}{calibration}.
{period}Customers: {data['rows']:,} rows of {esc(data['input'])} (file dated {esc(data['input_modified'])}),
scored on {esc(data['scored_at'])}. Mean purchase probability {d['mean_probability']:.1%}.</p>
<h2>Top of the contact list</h2>
<table><tr>{head}</tr>{body}</table>
<p>The full list, with every customer, is contacts.csv beside this page ({', '.join(map(esc, id_columns))} first,
sorted by rank). Reasons most often given first among the contacted: {common}.</p>
<h2>How these figures are computed</h2>
<ul>
<li><b>The cut.</b> Customers are sorted by purchase probability. Contacting the top N is worth
sum(p &times; value &minus; cost) over them in expectation; the N that maximises it is chosen (everyone above the
break-even probability cost / value), within the budget if one is given (N &le; budget / cost), or exactly the
number asked with --contacts.</li>
<li><b>The intervals.</b> With calibrated probabilities the number of buyers among the contacted follows a
Poisson-binomial law (mean sum p, variance sum p(1&minus;p)); its central {d['confidence']:.0%} interval is
computed exactly up to {EXACT_MAX:,} contacts and by the normal approximation beyond
(here: {'exact' if d['interval_method'] == 'exact' else 'normal approximation'}).
Profit = value &times; buyers &minus; cost &times; N. They show the chance in who buys, assuming the
probabilities are right; an error of calibration comes on top.</li>
<li><b>The reasons.</b> Occlusion per feature group: each group is replaced by its typical training value
and the customer scored again by the same model; the drop in probability is the group's contribution.
Only groups that raise the probability by at least {MIN_REASON_DROP * 100:.1f} points are reasons (up to
{REASONS}, largest first). Groups: {groups}. Computed for: {esc(r['computed_for'])} customers.</li>
</ul>
</body></html>
"""


def _cell(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return str(v)


# -- command line ------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m purchase_intent.campaign",
        description="Whom to contact now, what it is worth, and why: score the current customers with an export, "
                    "choose how many to contact (the most expected profit, or within a budget), and write "
                    "contacts.csv (ranked, with expected value and three reasons each), campaign.html and "
                    "campaign.json.",
        formatter_class=cli.HelpFormatter)
    p.add_argument("--model", required=True,
                   help="exported version folder, e.g. runs/<run>/export/purchase_intent/1 (a model folder picks "
                        "its highest version)")
    p.add_argument("--input", required=True,
                   help="CSV/Parquet of the current customers, named as in the schema (no label needed); "
                        "sequences as '|'-delimited strings")
    p.add_argument("--output", required=True, help="folder for contacts.csv, campaign.html and campaign.json")
    p.add_argument("--cost-per-contact", type=float, required=True, help="what one contact costs")
    p.add_argument("--value-per-purchase", type=float, default=None,
                   help="what a purchase brings (the profit of it); or give --margin and --order-value")
    p.add_argument("--margin", type=float, default=None,
                   help="share of an order's value that is profit, e.g. 0.3: value per purchase = margin x "
                        "--order-value")
    p.add_argument("--order-value", type=float, default=None, help="the value of an order, with --margin")
    cap = p.add_mutually_exclusive_group()
    cap.add_argument("--budget", type=float, default=None,
                     help="total spend allowed: at most budget / cost contacts (fewer when fewer are worth it)")
    cap.add_argument("--contacts", type=int, default=None, help="contact exactly this many (the most likely)")
    p.add_argument("--confidence", type=float, default=0.95, help="level of the intervals")
    p.add_argument("--reasons", choices=("all", "contacted", "none"), default="all",
                   help="whose reasons to compute (each costs about one scoring of the table per feature group)")
    p.add_argument("--reason-labels", default=None,
                   help='JSON file of wordings per feature, e.g. {"visits_30d": "visited {value} times in 30 days"}')
    p.add_argument("--period", default=None, help="the data period, shown on the page (e.g. 'June 2025')")
    p.add_argument("--batch-size", type=int, default=4096, help="rows per model call")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (shown at a terminal only anyway)")
    cli.add_common_flags(p)
    return p.parse_args(argv)


def purchase_value(args: argparse.Namespace) -> tuple[float, str]:
    """The value per purchase from the flags, and how it was obtained (for the page).

    Raises:
        UserError: neither or both ways given, or a value out of range.
    """
    if args.value_per_purchase is not None:
        if args.margin is not None or args.order_value is not None:
            raise cli.UserError("give either --value-per-purchase or --margin with --order-value, not both")
        value, note = args.value_per_purchase, ""
    elif args.margin is not None and args.order_value is not None:
        if not 0 < args.margin <= 1:
            raise cli.UserError(f"--margin is a share in (0, 1], got {args.margin}")
        value, note = args.margin * args.order_value, f"{args.margin:.0%} margin on an order of {_money(args.order_value)}"
    else:
        raise cli.UserError("give --value-per-purchase, or --margin with --order-value (value = margin x order value)")
    if not (math.isfinite(value) and value > 0):
        raise cli.UserError(f"the value per purchase must be positive, got {value}")
    return value, note


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cli.setup_logging()
    value, note = purchase_value(args)
    cost = args.cost_per_contact
    if not (math.isfinite(cost) and cost >= 0):
        raise cli.UserError(f"--cost-per-contact must be >= 0, got {cost}")
    if args.budget is not None and not (math.isfinite(args.budget) and args.budget >= 0):
        raise cli.UserError(f"--budget must be >= 0, got {args.budget}")
    if args.budget is not None and cost == 0:
        logger.warning("--budget with a cost of 0 per contact limits nothing")
    if args.contacts is not None and args.contacts < 0:
        raise cli.UserError(f"--contacts must be >= 0, got {args.contacts}")
    if not 0 < args.confidence < 1:
        raise cli.UserError(f"--confidence is a level in (0, 1), got {args.confidence}")
    if args.batch_size < 1:
        raise cli.UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    labels = read_labels(args.reason_labels)
    from purchase_intent.data.readers import check_table_file
    from purchase_intent.monitor import version_folder

    version_folder(args.model)
    check_table_file(args.input)  # before the model (and TensorFlow) loads
    report = run_campaign(args.model, args.input, args.output, value=value, cost=cost, budget=args.budget,
                          contacts=args.contacts, confidence=args.confidence, reasons=args.reasons,
                          labels=labels, batch_size=args.batch_size,
                          progress=False if args.no_progress else None, period=args.period, value_note=note)
    if args.contacts is not None and args.contacts > report["decision"]["customers"]:
        logger.warning("--contacts %d exceeds the %d customers: all are contacted", args.contacts,
                       report["decision"]["customers"])
    print(report["sentence"], flush=True)
    out = Path(args.output)
    print(f"Contacts: {out / 'contacts.csv'}\nReport: {out / 'campaign.html'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
