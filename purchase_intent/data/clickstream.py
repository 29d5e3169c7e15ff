"""In-session purchase prediction from a raw clickstream (one row per event).

A shop's event log has one row per event: a session id, a timestamp, an
event type (view, cart, purchase, ...), an item id, optionally per-event text
(the product title), a price and session-level columns (device, channel).
The task is to predict, *during* a session, whether it will end in a
purchase. Each session gives one example per **cut point** (a *prefix*):

* cut points: after every ``data.prefix_every``-th event of the session
  and/or at each event whose type is in ``data.prefix_at`` (e.g. ``cart``),
  only **before the session's first purchase event**: the purchase and every
  event after it are never in any prefix. ``data.max_prefixes_per_session``
  keeps a seeded random sample of at most that many cuts per session;
* inputs: only the events up to and including the cut event, oldest first:
  the sequence columns (``schema.sequences``, ``schema.event_text``) as
  lists (the most recent ``data.events_kept()`` events), the derived
  numeric features of :func:`derived_numeric` (computed from those events
  only), and the session-level columns (``schema.text``, ``categorical``,
  ``numeric``) at the cut event (their last non-missing value so far);
* label (``schema.label``, a column this module creates): 1 if the session
  has a purchase event (necessarily after the cut), else 0.

Events are ordered by time within a session; events with equal timestamps
keep their order in the file. The split is by session (:func:`split_sessions`),
so all prefixes of a session land in one split.

At serving time, :func:`live_example` turns the events of a live session so
far into the one raw example the exported model takes.
"""

from __future__ import annotations

import dataclasses
import logging
import time as _time
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from purchase_intent.config import DataConfig
from purchase_intent.data.readers import (event_order, group_boundaries, id_keys, is_missing_key, parse_times,
                                          read_raw)
from purchase_intent.schema import SPLITS, FeatureSchema, SchemaError, _as_float_column, row_ref

logger = logging.getLogger(__name__)

SESSION_START = "session_start"  # extra column of the prefix frame: the session's first event time

# Derived numeric features of a prefix, from the events up to the cut event only.
DERIVED_NUMERIC = {
    "prefix_events": "events in the prefix (all of them, not only the kept max_sequence_length)",
    "prefix_seconds": "seconds from the session's first event to the cut event",
    "prefix_last_gap_seconds": "seconds from the previous event to the cut event (0 for the first)",
    "prefix_distinct_items": "distinct values of the item column in the prefix",
    "prefix_hour": "hour of day of the cut event, 0-23, as written in the log (no time-zone change)",
    "prefix_weekday": "weekday of the cut event, 0 = Monday ... 6 = Sunday",
    "prefix_price_mean": "mean price of the prefix's events that have one (NaN if none)",
    "prefix_price_last": "the last price in the prefix (NaN if none)",
}
_PRICE_FEATURES = ("prefix_price_mean", "prefix_price_last")
_DAY_NS = 86_400 * 10**9
_HOUR_NS = 3_600 * 10**9


def item_column(schema: FeatureSchema, cfg: DataConfig) -> str | None:
    """The item column: the first of ``schema.sequences`` that is not the event type (or None)."""
    return next((c for c in schema.sequences if c != cfg.event_type_column), None)


def derived_numeric(schema: FeatureSchema, cfg: DataConfig) -> list[str]:
    """Names of the derived numeric features (:data:`DERIVED_NUMERIC`) a prefix gets.

    ``prefix_distinct_items`` needs an item column (:func:`item_column`), the
    price features ``data.price_column``.
    """
    names = [n for n in DERIVED_NUMERIC if n not in _PRICE_FEATURES]
    if item_column(schema, cfg) is None:
        names.remove("prefix_distinct_items")
    return names + (list(_PRICE_FEATURES) if cfg.price_column else [])


def prefix_schema(event_schema: FeatureSchema, cfg: DataConfig) -> FeatureSchema:
    """The schema of the prefix examples: the log's schema plus the derived numeric features."""
    return dataclasses.replace(event_schema,
                               numeric=list(event_schema.numeric) + derived_numeric(event_schema, cfg))


def event_schema_of(schema: FeatureSchema) -> FeatureSchema:
    """The log's schema back from a prefix schema (e.g. a run's ``schema.json``): derived names removed."""
    return dataclasses.replace(schema, numeric=[n for n in schema.numeric if n not in DERIVED_NUMERIC])


def resolve_config(cfg: DataConfig) -> DataConfig:
    """``cfg`` with the column names of the synthetic log when ``cfg.name`` is "synthetic_clickstream"."""
    if cfg.name != "synthetic_clickstream":
        return cfg
    from purchase_intent.data.synthetic import CLICKSTREAM_COLUMNS

    return dataclasses.replace(cfg, **CLICKSTREAM_COLUMNS)


# -- reading -----------------------------------------------------------------
def read_clickstream(path: str | Path, schema: FeatureSchema, cfg: DataConfig) -> pd.DataFrame:
    """Reads an event log file, its rows numbered as a spreadsheet shows them.

    Args:
        path: a ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` file, one row per event.
        schema: the event-level schema (the user's schema file).
        cfg: data configuration (column names).

    Returns:
        The raw rows; the index is the 0-based row position in the file,
        which error messages (:func:`~purchase_intent.schema.row_ref`) show
        as the spreadsheet row (the header is row 1, the first event row 2).
        Ids, event types, text and categorical columns are read as strings.

    Raises:
        SchemaError: unsupported suffix, missing, empty or unreadable file.
    """
    strings = ([cfg.session_column, cfg.event_type_column] + list(schema.sequence_like)
               + list(schema.text) + list(schema.categorical))
    df = read_raw(path, string_columns=strings)
    return df  # read_raw's fresh RangeIndex: row_ref(0) is spreadsheet row 2


def event_times(values: pd.Series, column: str, where: str, time_format: str = "") -> np.ndarray:
    """Event timestamps as int64 nanoseconds of wall-clock time.

    Strings and datetimes are parsed by :func:`readers.parse_times` (with
    ``time_format``, ``data.time_format``, the format every string must match;
    without, d/m/y dates are read in the order the column shows, never
    guessed); a
    time-zone-aware column keeps its wall-clock time (the time zone is
    dropped, not converted). Numbers are Unix epoch seconds, or milliseconds
    when the largest is above 1e11 (after the year 5138 in seconds).

    Raises:
        SchemaError: missing, negative or unparseable timestamps, naming the
            column, the first bad row and its value.
    """
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        v = values.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(v) | (v < 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise SchemaError(f"{where}: column {column!r}, {row_ref(values.index[i])}: expected a "
                              f"timestamp or Unix epoch seconds / milliseconds, got {values.iloc[i]!r} "
                              f"({int(bad.sum())} such rows)")
        scale = 10**6 if v.max() > 1e11 else 10**9
        return np.round(v * scale).astype(np.int64)
    parsed = parse_times(values, column, where, fmt=time_format or None, exact=bool(time_format))
    if not pd.api.types.is_datetime64_any_dtype(parsed):
        raise SchemaError(f"{where}: column {column!r}: timestamps with different UTC offsets; "
                          "write them all in one time zone")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    return parsed.astype("datetime64[ns]").to_numpy().view(np.int64)


# -- the sorted log ------------------------------------------------------------
@dataclasses.dataclass
class _Log:
    """The used columns of an event log, sorted by session (first event time), then time."""

    frame: pd.DataFrame  # used columns, sorted, fresh RangeIndex
    sessions: np.ndarray  # id of each session (object), by session number
    group: np.ndarray  # session number of each event, contiguous and ascending
    bounds: np.ndarray  # group_boundaries(group)
    t: np.ndarray  # int64 ns, wall clock
    event_type: np.ndarray  # object: str
    is_purchase: np.ndarray

    @property
    def start(self) -> np.ndarray:
        """Position of the first event of each event's session."""
        return self.bounds[self.group]


def _check_columns(df: pd.DataFrame, schema: FeatureSchema, cfg: DataConfig, where: str,
                   need_session: bool = True) -> None:
    roles = {cfg.session_column: "data.session_column", cfg.time_column: "data.time_column",
             cfg.event_type_column: "data.event_type_column"}
    if cfg.price_column:
        roles[cfg.price_column] = "data.price_column"
    for name in (cfg.session_column, cfg.time_column):
        if name in schema.feature_names:
            raise SchemaError(f"{where}: column {name!r} is the {roles[name]} and cannot also be a "
                              "feature in the schema")
    if not need_session:
        roles.pop(cfg.session_column)
    derived = [n for n in schema.feature_names if n in DERIVED_NUMERIC]
    if derived:
        raise SchemaError(f"{where}: the schema lists {derived}, names of derived prefix features that "
                          "are computed from the events; remove them from the schema")
    needed = list(roles) + schema.feature_names
    missing = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if missing:
        named = ", ".join(f"{c!r} ({roles[c]})" if c in roles else repr(c) for c in missing)
        raise SchemaError(f"{where}: missing column(s) {named} in the event log; "
                          f"it has {list(df.columns)[:30]}")


def _prepare(df: pd.DataFrame, schema: FeatureSchema, cfg: DataConfig, where: str,
             need_session: bool = True) -> _Log:
    """Checks the columns, drops events without a session id, parses times and sorts."""
    _check_columns(df, schema, cfg, where, need_session)
    if len(df) == 0:
        raise SchemaError(f"{where}: the event log is empty (0 rows)")
    if need_session:
        no_key = is_missing_key(df[cfg.session_column])
        if no_key.any():
            logger.warning("%s: dropped %d of %d events with a missing %r: cannot attribute them "
                           "to a session", where, int(no_key.sum()), len(df), cfg.session_column)
            df = df[~no_key]
            if len(df) == 0:
                raise SchemaError(f"{where}: every event has a missing {cfg.session_column!r}")
        codes, sessions = pd.factorize(id_keys(df[cfg.session_column]), sort=False)  # "12.0" is "12"
    else:
        codes, sessions = np.zeros(len(df), dtype=np.int64), pd.Index(["live"])
    t = event_times(df[cfg.time_column], cfg.time_column, where, cfg.time_format)
    order, group = event_order(codes, t)
    rank_to_code = codes[order][group_boundaries(group)[:-1]]
    columns = list(dict.fromkeys([cfg.event_type_column] + schema.feature_names
                                 + ([cfg.price_column] if cfg.price_column else [])))
    frame = df[columns].iloc[order].reset_index(drop=True)
    for name in schema.numeric + ([cfg.price_column] if cfg.price_column else []):
        column = df[name].iloc[order]
        _as_float_column(column, name, where)  # a non-number: error naming its (spreadsheet) row
        values = pd.to_numeric(column, errors="coerce").to_numpy(np.float64, na_value=np.nan, copy=True)
        values[~np.isfinite(values)] = np.nan  # inf is missing, as in FeatureSchema.validate
        frame[name] = values
    etype = frame[cfg.event_type_column].fillna("").astype(str).str.strip().to_numpy(dtype=object)
    return _Log(frame=frame, sessions=np.asarray(sessions, dtype=object)[rank_to_code].astype(str),
                group=group, bounds=group_boundaries(group), t=t[order], event_type=etype,
                is_purchase=etype == str(cfg.purchase_value).strip())


@dataclasses.dataclass
class LogSummary:
    """What the whole-log checks need of a log or of one part of it (a bucket): mergeable counts."""

    events: int = 0
    sessions: int = 0
    buying_sessions: int = 0
    sessions_with_prefixes: int = 0
    prefixes: int = 0
    longest_session: int = 0
    event_types: dict[str, int] = dataclasses.field(default_factory=dict)  # events by type

    def merge(self, other: "LogSummary") -> "LogSummary":
        types = dict(self.event_types)
        for k, v in other.event_types.items():
            types[k] = types.get(k, 0) + v
        return LogSummary(self.events + other.events, self.sessions + other.sessions,
                          self.buying_sessions + other.buying_sessions,
                          self.sessions_with_prefixes + other.sessions_with_prefixes,
                          self.prefixes + other.prefixes,
                          max(self.longest_session, other.longest_session), types)


def _session_buys(log: _Log) -> np.ndarray:
    """Per session: does it have a purchase event?"""
    return np.maximum.reduceat(log.is_purchase, log.bounds[:-1])


def _summary(log: _Log, buys: np.ndarray, cuts: np.ndarray) -> LogSummary:
    counts = pd.Series(log.event_type).value_counts(sort=False)
    return LogSummary(events=len(log.t), sessions=len(buys), buying_sessions=int(buys.sum()),
                      sessions_with_prefixes=len(np.unique(log.group[cuts])), prefixes=len(cuts),
                      longest_session=int(np.diff(log.bounds).max()),
                      event_types={str(k): int(v) for k, v in counts.items()})


def check_labels(summary: LogSummary, cfg: DataConfig, where: str) -> None:
    """Raises if no event is a purchase or every session buys (on the whole log's summary)."""
    col, value = cfg.event_type_column, str(cfg.purchase_value).strip()
    if not summary.event_types.get(value):
        counts = sorted(summary.event_types.items(), key=lambda kv: -kv[1])
        values = dict(counts[:20])
        near = [k for k, _ in counts if k.lower() == value.lower()]
        hint = f" (did you mean {near[0]!r}? values are case-sensitive)" if near else ""
        raise SchemaError(
            f"{where}: no event has {col!r} == {value!r}{hint}, so no session buys and there is "
            f"nothing to predict. The values of {col!r} (event counts) are {values}; name the one "
            "that means a purchase with --set data.purchase_value=VALUE")
    if summary.buying_sessions == summary.sessions:
        raise SchemaError(
            f"{where}: every one of the {summary.sessions} sessions has a {col}={value!r} event; a "
            "classifier needs sessions that do not buy. Is the log filtered to buying sessions, "
            "or is data.session_column an order id?")


def check_cuts(summary: LogSummary, cfg: DataConfig, where: str) -> None:
    """Warns of ``data.prefix_at`` values absent from the log; raises if there is no cut point at all."""
    if cfg.prefix_at:
        present = set(summary.event_types)
        absent = [v for v in (str(v).strip() for v in cfg.prefix_at) if v not in present]
        if absent:
            logger.warning("%s: data.prefix_at value(s) %s never occur in %r (values: %s)", where,
                           absent, cfg.event_type_column, sorted(present)[:20])
    if summary.prefixes == 0:
        raise SchemaError(
            f"{where}: no prefix: no session has a cut point before its first purchase "
            f"(data.prefix_every={cfg.prefix_every}, data.prefix_at={list(cfg.prefix_at)}; sessions have "
            f"at most {summary.longest_session} events). Lower data.prefix_every or add event "
            "types to data.prefix_at")


def log_summary(summary: LogSummary, where: str, seconds: float | None = None) -> None:
    """The info lines of a built log: events, sessions, prefixes, sessions without any."""
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    logger.info("%s: %d events, %d sessions (%.1f %% buy) -> %d prefixes of %d sessions%s", where,
                summary.events, summary.sessions, 100 * summary.buying_sessions / max(summary.sessions, 1),
                summary.prefixes, summary.sessions_with_prefixes, took)
    if summary.sessions_with_prefixes < summary.sessions:
        logger.info("%s: %d sessions have no cut point before their first purchase (too short, or "
                    "buying at once) and give no example", where,
                    summary.sessions - summary.sessions_with_prefixes)


# -- cut points and prefixes ----------------------------------------------------
def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a uint64 hash of each uint64."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _cut_points(log: _Log, cfg: DataConfig, seed: int) -> np.ndarray:
    """Sorted event positions of the cut points (all before their session's first purchase).

    Under ``max_prefixes_per_session`` each session keeps the cuts with the
    smallest hash of (seed, session id, event position in the session): the
    sample of a session does not depend on the rest of the log, so a log
    prepared in buckets (:mod:`purchase_intent.prepare`) gives the same cuts.
    """
    n = len(log.t)
    pos = np.arange(n) - log.start
    first_buy = np.minimum.reduceat(np.where(log.is_purchase, pos, n), log.bounds[:-1])
    cut = np.zeros(n, dtype=bool)
    if cfg.prefix_every:
        cut |= (pos + 1) % cfg.prefix_every == 0
    if cfg.prefix_at:
        cut |= np.isin(log.event_type, [str(v).strip() for v in cfg.prefix_at])
    cut &= pos < first_buy[log.group]
    idx = np.flatnonzero(cut)
    if cfg.max_prefixes_per_session and len(idx):
        # Sort each session's cuts by a seeded hash and keep the first ones.
        g = log.group[idx]
        session_key = _session_hash(log.sessions)[g]
        with np.errstate(over="ignore"):
            key = _mix64(session_key ^ _mix64(pos[idx].astype(np.uint64)
                                              + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)))
        o = np.lexsort((key, g))
        b = group_boundaries(g[o])
        rank = np.arange(len(o)) - np.repeat(b[:-1], np.diff(b))
        idx = np.sort(idx[o[rank < cfg.max_prefixes_per_session]])
    return idx


def _last_valid(valid: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per event: position of the latest valid event of its session so far (itself included), or -1."""
    run = np.maximum.accumulate(np.where(valid, np.arange(len(valid)), -1))
    run[run < start] = -1
    return run


def _is_present(s: pd.Series) -> np.ndarray:
    present = ~s.isna().to_numpy()
    if s.dtype == object or pd.api.types.is_string_dtype(s):
        present &= s.astype(str).str.strip().ne("").to_numpy()
    return present


def _prefix_frame(log: _Log, cuts: np.ndarray, schema: FeatureSchema, cfg: DataConfig,
                  buys: np.ndarray | None) -> pd.DataFrame:
    """One row per cut: ids, the prefix's sequences, derived and session-level features, label."""
    g = log.group[cuts]
    start = log.bounds[g]
    out = {cfg.session_column: log.sessions[g],
           SESSION_START: log.t[start].astype("datetime64[ns]"),
           cfg.time_column: log.t[cuts].astype("datetime64[ns]")}

    # Sequences: the events start..cut, the most recent events_kept() of them.
    lo = np.maximum(start, cuts + 1 - cfg.events_kept()).tolist()
    hi = (cuts + 1).tolist()
    for name in schema.sequence_like:
        flat = log.frame[name].to_numpy(dtype=object).tolist()
        out[name] = [flat[a:b] for a, b in zip(lo, hi)]

    # Derived numeric features: only events start..cut enter.
    t_cut = log.t[cuts]
    prev = np.where(cuts > start, log.t[np.maximum(cuts - 1, 0)], t_cut)
    derived = {
        "prefix_events": (cuts - start + 1).astype(np.float64),
        "prefix_seconds": (t_cut - log.t[start]) / 1e9,
        "prefix_last_gap_seconds": (t_cut - prev) / 1e9,
        "prefix_hour": ((t_cut % _DAY_NS) // _HOUR_NS).astype(np.float64),
        "prefix_weekday": ((t_cut // _DAY_NS + 3) % 7).astype(np.float64),  # 1970-01-01: Thursday
    }
    item = item_column(schema, cfg)
    if item is not None:
        codes = pd.factorize(log.frame[item])[0]
        o = np.lexsort((np.arange(len(codes)), codes, log.group))
        first = np.ones(len(o), dtype=bool)
        first[1:] = (log.group[o][1:] != log.group[o][:-1]) | (codes[o][1:] != codes[o][:-1])
        new_item = np.zeros(len(o), dtype=np.int64)
        new_item[o] = first
        csum = np.concatenate([[0], np.cumsum(new_item)])
        derived["prefix_distinct_items"] = (csum[cuts + 1] - csum[start]).astype(np.float64)
    if cfg.price_column:
        price = log.frame[cfg.price_column].to_numpy(np.float64)
        has = ~np.isnan(price)
        total = np.concatenate([[0.0], np.cumsum(np.where(has, price, 0.0))])
        count = np.concatenate([[0], np.cumsum(has)])
        n_priced = count[cuts + 1] - count[start]
        with np.errstate(invalid="ignore", divide="ignore"):
            derived["prefix_price_mean"] = np.where(
                n_priced > 0, (total[cuts + 1] - total[start]) / n_priced, np.nan)
        last = _last_valid(has, log.start)[cuts]
        derived["prefix_price_last"] = np.where(last >= 0, price[np.maximum(last, 0)], np.nan)
    for name in derived_numeric(schema, cfg):
        out[name] = derived[name]

    # Session-level columns: the last non-missing value up to the cut event.
    for name in schema.text + schema.categorical + schema.numeric:
        s = log.frame[name]
        last = _last_valid(_is_present(s), log.start)[cuts]
        values = s.to_numpy(dtype=np.float64 if name in schema.numeric else object)
        missing = np.nan if name in schema.numeric else ""
        out[name] = np.where(last >= 0, values[np.maximum(last, 0)], missing)
    if buys is not None:
        out[schema.label] = buys[g].astype(np.int64)
    return pd.DataFrame(out)


def build_prefixes(events: pd.DataFrame, schema: FeatureSchema, cfg: DataConfig, seed: int = 0,
                   where: str = "event log") -> pd.DataFrame:
    """Turns an event log into in-session prefix examples.

    See the module docstring for the cut points, inputs and label.

    Args:
        events: one row per event, in any order: ``cfg.session_column``,
            ``cfg.time_column``, ``cfg.event_type_column``, the columns of
            ``schema`` and, if set, ``cfg.price_column``. Rows without a
            session id are dropped (counted in a warning).
        schema: the event-level schema: ``sequences`` / ``event_text`` are
            per-event columns, ``text`` / ``categorical`` / ``numeric``
            session-level ones; ``label`` names the label column to create.
        cfg: data configuration: the column names, ``purchase_value``,
            ``prefix_every``, ``prefix_at``, ``max_prefixes_per_session`` and
            ``events_kept()`` (events kept in each sequence list).
        seed: seed of the sample of cuts under ``max_prefixes_per_session``.
        where: the source, for messages (a file name).

    Returns:
        One row per prefix, ordered by session (first event time), then cut:
        ``cfg.session_column`` (str), :data:`SESSION_START` and
        ``cfg.time_column`` (the cut event's time, datetime64), the sequence
        columns as lists (oldest first), the session-level columns, the
        :func:`derived_numeric` features, and ``schema.label`` (0/1). Not yet
        validated: :func:`prefix_schema` ``.validate`` does that.

    Raises:
        SchemaError: missing columns, unparseable timestamps or numbers
            (naming the column and the row), a log column named like the
            label, no purchase event (listing the event types there are),
            every session buying, or no cut point at all.
    """
    clock = _time.perf_counter()
    check_label_column(events, schema, cfg, where)
    out, summary = prefixes_of_part(events, schema, cfg, seed, where)
    check_labels(summary, cfg, where)
    check_cuts(summary, cfg, where)
    log_summary(summary, where, _time.perf_counter() - clock)
    logger.info("%s: %.1f %% of the prefixes are positive", where, 100 * out[schema.label].mean())
    return out


def check_label_column(events: pd.DataFrame, schema: FeatureSchema, cfg: DataConfig, where: str) -> None:
    """Raises if the log has a column named like the label (the label is built from the event types)."""
    if schema.label in events.columns:
        raise SchemaError(f"{where}: the log has a column {schema.label!r}, the schema's label; the label "
                          f"is built from the event types ({cfg.event_type_column}={cfg.purchase_value!r}), "
                          "so give it a new name in the schema (e.g. label: purchase)")


def prefixes_of_part(events: pd.DataFrame, schema: FeatureSchema, cfg: DataConfig, seed: int = 0,
                     where: str = "event log") -> tuple[pd.DataFrame, LogSummary]:
    """The prefixes of a log or of a part of it that holds whole sessions, and its summary.

    :func:`build_prefixes` without the whole-log checks: each session's
    prefixes depend on its own events only, so the parts of a log split by
    session (the buckets of :mod:`purchase_intent.prepare`) give together the
    prefixes of the whole log. The caller runs :func:`check_labels` and
    :func:`check_cuts` on the merged :class:`LogSummary`.
    """
    log = _prepare(events, schema, cfg, where)
    buys = _session_buys(log)
    cuts = _cut_points(log, cfg, seed)
    return _prefix_frame(log, cuts, schema, cfg, buys), _summary(log, buys, cuts)


def live_example(events: pd.DataFrame | Iterable[Mapping[str, Any]], schema: FeatureSchema,
                 cfg: DataConfig) -> dict[str, Any]:
    """The raw example of a live session so far, as the exported model takes it.

    The same computation as a training prefix cut at the session's latest
    event: sequences of the last ``events_kept()`` events, the
    :func:`derived_numeric` features and the session-level columns' latest
    values. Send the result with the serving client
    (``client.predict([live_example(...)])``).

    Args:
        events: the session's events so far (a DataFrame or a list of dicts),
            in any order, with the time, event-type, price (if configured)
            and schema columns; the session column is not needed.
        schema: the run's schema (``schema.json`` of the run or the export's
            ``assets.extra/schema.json``, derived names included) or the
            log's schema.
        cfg: the run's data configuration (``config.json`` ``data``
            section: ``DataConfig(**config["data"])``).

    Returns:
        ``{feature name: value}`` for every feature of :func:`prefix_schema`.

    Raises:
        SchemaError: no events, missing columns, bad timestamps, or a
            purchase event among them (the session has bought already).
    """
    df = events if isinstance(events, pd.DataFrame) else pd.DataFrame(list(events))
    if len(df) == 0:
        raise SchemaError("live session: no events")
    cfg = resolve_config(cfg)
    base = event_schema_of(schema)
    unknown = [n for n in schema.numeric if n in DERIVED_NUMERIC and n not in derived_numeric(base, cfg)]
    if unknown:
        raise SchemaError(f"live session: the schema has {unknown}, which this configuration does not "
                          "compute (data.price_column unset?); pass the run's own config")
    log = _prepare(df, base, cfg, "live session", need_session=False)
    if log.is_purchase.any():
        raise SchemaError(f"live session: it has a {cfg.event_type_column}={cfg.purchase_value!r} "
                          "event already; the model predicts for sessions that have not bought yet")
    row = _prefix_frame(log, np.array([len(log.t) - 1]), base, cfg, buys=None).iloc[0]
    full = prefix_schema(base, cfg)
    return {name: float(row[name]) if name in full.numeric else row[name] for name in full.feature_names}


# -- split -----------------------------------------------------------------------
def _session_hash(ids: pd.Series | np.ndarray, key: str = "0123456789123456") -> np.ndarray:
    """A stable uint64 per id: pandas' SipHash of the id as a string, with a fixed 16-byte key."""
    return pd.util.hash_pandas_object(pd.Series(np.asarray(ids, dtype=object)).astype(str),
                                      index=False, hash_key=key).to_numpy(np.uint64)


def session_hash_unit(ids: pd.Series | np.ndarray) -> np.ndarray:
    """A stable pseudo-random number in [0, 1) per id (pandas' SipHash of the string, fixed key)."""
    return (_session_hash(ids) >> np.uint64(11)).astype(np.float64) / float(2**53)


def session_bucket(ids: pd.Series | np.ndarray, buckets: int) -> np.ndarray:
    """A stable bucket 0 .. buckets-1 per session id, independent of its split (another hash key)."""
    return (_session_hash(ids, key="purchase_intent_") % np.uint64(buckets)).astype(np.int64)


def hash_split_parts(ids: pd.Series | np.ndarray, cfg: DataConfig) -> np.ndarray:
    """Split number (0 train, 1 validation, 2 test) of each session id under ``split_by=session``."""
    u = session_hash_unit(ids)
    return np.where(u < cfg.test_fraction, 2, np.where(u < cfg.test_fraction + cfg.validation_fraction, 1, 0))


def time_split_parts(starts: np.ndarray, ids: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """Split number of each session under ``split_by=time``, from the first event time of every session.

    The latest ``test_fraction`` of the sessions (by first event, ties by id)
    are test, the ``validation_fraction`` before them validation.
    """
    n = len(ids)
    order = np.lexsort((np.asarray(ids, dtype=str), starts))  # oldest first, ties by id
    n_test = max(1, int(round(cfg.test_fraction * n)))
    n_val = max(1, int(round(cfg.validation_fraction * n)))
    part = np.zeros(n, dtype=np.int64)
    part[order[n - n_test:]] = 2
    part[order[n - n_test - n_val:n - n_test]] = 1
    return part


def check_session_count(n: int, where: str) -> None:
    if n < 10:
        raise SchemaError(f"{where}: {n} sessions with prefixes are too few to split into "
                          "train/validation/test")


def split_sessions(examples: pd.DataFrame, cfg: DataConfig, where: str = "event log"
                   ) -> dict[str, pd.DataFrame]:
    """Splits prefix examples by session: all prefixes of a session land in one split.

    ``cfg.split_by="session"``: a stable hash of the session id
    (:func:`session_hash_unit`) below ``test_fraction`` is test, below
    ``test_fraction + validation_fraction`` validation, the rest train: the
    same session always lands in the same split, whatever the seed or the
    rest of the log. ``"time"``: sessions ordered by their first event; the
    latest ``test_fraction`` of them are test, the ``validation_fraction``
    before them validation, the earlier ones train.

    Args:
        examples: the frame of :func:`build_prefixes` (its session column
            and :data:`SESSION_START` are used).
        cfg: data configuration.
        where: the source, for messages.

    Returns:
        ``{"train": df, "validation": df, "test": df}`` (row order kept).

    Raises:
        SchemaError: fewer than 10 sessions, or a split left without sessions.
    """
    codes, ids = pd.factorize(examples[cfg.session_column], sort=False)
    n = len(ids)
    check_session_count(n, where)
    if cfg.split_by == "time":
        first_row = np.unique(codes, return_index=True)[1]  # a row of each session, by code
        part = time_split_parts(examples[SESSION_START].to_numpy()[first_row], np.asarray(ids), cfg)
    else:
        part = hash_split_parts(ids, cfg)
    row_part = part[codes]
    frames = {name: examples[row_part == k] for k, name in enumerate(SPLITS)}
    for k, name in enumerate(SPLITS):
        if not (part == k).any():
            raise SchemaError(f"{where}: split_by={cfg.split_by} put none of the {n} sessions in the "
                              f"{name} split; use more sessions or larger data.*_fraction")
        logger.info("%s: %s split: %d sessions, %d prefixes", where, name, int((part == k).sum()),
                    len(frames[name]))
    return frames



# -- the data.format=events path of load_splits ------------------------------------
def load_clickstream(cfg: DataConfig, seed: int = 0) -> tuple[FeatureSchema, dict[str, pd.DataFrame]]:
    """Reads an event log (or makes the synthetic one), builds prefixes and splits by session.

    Args:
        cfg: data configuration. ``cfg.name`` is the log's path (with
            ``cfg.schema``, the event-level schema file) or
            ``"synthetic_clickstream"`` (:func:`make_synthetic_clickstream`
            with ``cfg.synthetic_examples`` sessions and its own column names).
        seed: seed of the synthetic log and of the ``max_prefixes_per_session`` sample.

    Returns:
        ``(schema, {"train": df, "validation": df, "test": df})``: the prefix
        schema (:func:`prefix_schema`) and the raw prefix frames of
        :func:`build_prefixes`, split by :func:`split_sessions`.

    Raises:
        SchemaError: no schema file, or bad data (see :func:`build_prefixes`).
    """
    cfg = resolve_config(cfg)
    if cfg.name == "synthetic_clickstream":
        from purchase_intent.data.synthetic import CLICKSTREAM_SCHEMA, make_synthetic_clickstream

        schema, where = CLICKSTREAM_SCHEMA, cfg.name
        events = make_synthetic_clickstream(cfg.synthetic_examples, seed=seed)
    else:
        if not cfg.schema:
            raise SchemaError(f"data.name={cfg.name!r} is an event log: give its schema file with "
                              "--set data.schema=PATH (JSON or YAML; docs/clickstream.md)")
        schema, where = FeatureSchema.load(cfg.schema), str(cfg.name)
        events = read_clickstream(cfg.name, schema, cfg)
    examples = build_prefixes(events, schema, cfg, seed=seed, where=where)
    return prefix_schema(schema, cfg), split_sessions(examples, cfg, where)
