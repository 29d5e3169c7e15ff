"""UCI Online Retail as a customer purchase-propensity task.

The raw data has one row per invoice line of a UK online gift retailer,
2010-12-01 to 2011-12-09. At a cut-off date ``T`` every customer with at least
one purchase before ``T`` becomes one example:

* inputs: the customer's invoice lines strictly before ``T`` only: the item
  sequence (``item_id``, ``event_type``, ``item_description``, oldest first),
  RFM-style numeric features and the country;
* label: 1 if the customer has a purchase line (not a cancellation,
  ``Quantity > 0``) with ``T < InvoiceDate <= T + horizon``, else 0.

Cut-offs are midnights. The shop has no invoice at exactly midnight, so the
open/closed ends of the windows never matter on the real data; an event at
exactly ``T`` is neither an input nor in the label window of ``T``.

Splits are by time (:func:`default_cutoffs`): train cut-offs are rolled back
from the validation cut-off so that every train label window ends by the
validation cut-off, and the validation label window ends by the test cut-off.

Data: UCI Online Retail (Chen, Sain & Guo 2012), CC BY 4.0, see
:data:`ATTRIBUTION`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time as _time
from pathlib import Path

import numpy as np
import pandas as pd

from purchase_intent.config import ConfigError, DataConfig
from purchase_intent.data.readers import (group_boundaries, id_keys, keep_last_n, parse_times, read_raw,
                                          split_to_lists)
from purchase_intent.schema import FeatureSchema, SchemaError, row_ref

logger = logging.getLogger(__name__)

ATTRIBUTION = ("UCI Online Retail (Chen, Sain & Guo 2012), https://archive.ics.uci.edu/dataset/352, "
               "CC BY 4.0")

DATA_FILE = Path(__file__).resolve().parent / "files" / "online_retail.csv.gz"
DATA_START = pd.Timestamp("2010-12-01")
DATA_END = pd.Timestamp("2011-12-09")
MIN_HISTORY_DAYS = 30  # a train cut-off needs this much history after the data start
DEFAULT_MAX_EVENTS = 200

RAW_COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
               "CustomerID", "Country"]
_STRING_COLUMNS = ["InvoiceNo", "StockCode", "Description", "InvoiceDate", "Country"]
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_DAY_NS = 86_400 * 10**9

NUMERIC = [
    "recency_days",  # T minus the last purchase, in (fractional) days
    "frequency",  # distinct purchase invoices
    "monetary",  # sum of Quantity * UnitPrice over purchase lines
    "tenure_days",  # T minus the first purchase, in days
    "n_lines",  # invoice lines (purchases and cancellations) = full event-sequence length
    "n_unique_items",  # distinct StockCodes purchased
    "avg_basket_value",  # monetary / frequency
    "n_cancellations",  # cancellation lines
    "purchases_last_30d",  # distinct purchase invoices in [T - 30 d, T)
    "spend_last_30d",  # purchase value in [T - 30 d, T)
    "mean_days_between_purchases",  # (last - first purchase) / (frequency - 1); NaN if frequency == 1
    "purchases_last_90d",  # distinct purchase invoices in [T - 90 d, T)
    "total_quantity",  # units purchased
    "cancelled_value",  # value of cancellation lines (positive)
]

SCHEMA = FeatureSchema(
    label="label",
    event_text=["item_description"],
    sequences=["item_id", "event_type"],
    numeric=list(NUMERIC),
    categorical=["country"],
    id=["customer_id", "cutoff"],
)


def hash_id(value: str) -> str:
    """Stable, unsalted pseudonym of an id: the first 16 hex chars of its SHA-256."""
    return hashlib.sha256(str(value).encode("utf-8")).hexdigest()[:16]


def _customer_ids(s: pd.Series, where: str) -> pd.Series:
    """Customer ids as str: 17850.0 -> "17850"; strings are stripped."""
    if pd.api.types.is_numeric_dtype(s):
        values = s.to_numpy(dtype=np.float64)
        if np.isnan(values).any():
            raise SchemaError(f"{where}: CustomerID is missing in {int(np.isnan(values).sum())} "
                              "rows; run clean_events first")
        if np.all(values == np.round(values)):
            return pd.Series(values.astype(np.int64).astype(str), index=s.index)
        return pd.Series(values.astype(str), index=s.index)
    if s.isna().any():
        raise SchemaError(f"{where}: CustomerID is missing in {int(s.isna().sum())} rows; "
                          "run clean_events first")
    return id_keys(s)


def _numeric(s: pd.Series, column: str, where: str) -> pd.Series:
    converted = pd.to_numeric(s, errors="coerce")
    bad = converted.isna().to_numpy() & ~s.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SchemaError(f"{where}: column {column!r}, {row_ref(s.index[i])}: expected a number, "
                          f"got {str(s.iloc[i])[:60]!r} ({int(bad.sum())} such rows)")
    return converted.astype(np.float64)


def _check_columns(df: pd.DataFrame, where: str) -> None:
    missing = [c for c in RAW_COLUMNS if c not in df.columns]
    if missing:
        raise SchemaError(f"{where}: missing column(s) {missing} of the Online Retail layout "
                          f"{RAW_COLUMNS}; the table has {list(df.columns)[:30]}")


def clean_events(raw: pd.DataFrame, hash_ids: bool = False, where: str = "online_retail") -> pd.DataFrame:
    """Drops unusable invoice lines and normalises types.

    Dropped (each reason counted and logged at INFO, in this order): rows
    without CustomerID, rows with a missing Quantity or UnitPrice, rows with
    ``Quantity == 0``, rows with ``UnitPrice < 0`` (bad-debt adjustments).

    Args:
        raw: invoice lines with the columns of :data:`RAW_COLUMNS`.
        hash_ids: replace each CustomerID by :func:`hash_id` of it, so raw
            ids never leave this function.
        where: name of the source, for messages.

    Returns:
        The kept rows (fresh index), same columns: CustomerID, InvoiceNo,
        StockCode, Country as str, Description stripped (missing -> ""),
        InvoiceDate as datetime64, Quantity and UnitPrice as float.

    Raises:
        SchemaError: missing columns, unparseable numbers or timestamps.
    """
    _check_columns(raw, where)
    df = raw[RAW_COLUMNS]
    n_in = len(df)
    cust = df["CustomerID"]
    no_customer = cust.isna().to_numpy()
    if not pd.api.types.is_numeric_dtype(cust):
        no_customer |= cust.astype(str).str.strip().eq("").to_numpy()
    logger.info("%s: dropped %d rows without CustomerID: cannot attribute to a customer",
                where, int(no_customer.sum()))
    df = df[~no_customer]
    quantity = _numeric(df["Quantity"], "Quantity", where)
    price = _numeric(df["UnitPrice"], "UnitPrice", where)
    no_number = (quantity.isna() | price.isna()).to_numpy()
    logger.info("%s: dropped %d rows with a missing Quantity or UnitPrice: no value to count",
                where, int(no_number.sum()))
    zero_qty = ~no_number & (quantity.to_numpy() == 0)
    logger.info("%s: dropped %d rows with Quantity == 0: neither a purchase nor a cancellation",
                where, int(zero_qty.sum()))
    neg_price = ~no_number & ~zero_qty & (price.to_numpy() < 0)
    logger.info("%s: dropped %d rows with UnitPrice < 0: accounting adjustments, not purchases",
                where, int(neg_price.sum()))
    keep = ~(no_number | zero_qty | neg_price)
    df = df[keep]
    out = pd.DataFrame({
        "InvoiceNo": df["InvoiceNo"].astype(str).str.strip(),
        "StockCode": df["StockCode"].astype(str).str.strip(),
        "Description": df["Description"].fillna("").astype(str).str.strip(),
        "Quantity": quantity[keep],
        "InvoiceDate": parse_times(df["InvoiceDate"], "InvoiceDate", where, fmt=_TIME_FORMAT),
        "UnitPrice": price[keep],
        "CustomerID": _customer_ids(df["CustomerID"], where),
        "Country": df["Country"].fillna("").astype(str).str.strip(),
    }).reset_index(drop=True)
    if hash_ids:
        uniques = pd.unique(out["CustomerID"])
        mapping = dict(zip(uniques, (hash_id(u) for u in uniques)))
        out["CustomerID"] = out["CustomerID"].map(mapping)
    logger.info("%s: kept %d of %d rows (%d customers)", where, len(out), n_in,
                out["CustomerID"].nunique())
    return out


@dataclasses.dataclass
class _Events:
    """Invoice lines as arrays, sorted by customer then time (stable)."""

    customers: np.ndarray  # unique customer ids (str), sorted; index = code
    code: np.ndarray  # customer code per line
    t: np.ndarray  # int64 ns
    invoice: np.ndarray  # invoice code per line
    item_code: np.ndarray  # StockCode code per line
    is_purchase: np.ndarray
    is_cancel: np.ndarray
    value: np.ndarray  # Quantity * UnitPrice
    quantity: np.ndarray
    item_id: np.ndarray  # object: StockCode str
    event_type: np.ndarray  # object: "purchase" / "cancel"
    description: np.ndarray  # object: str
    country: np.ndarray  # object: str


def _prepare(events: pd.DataFrame, where: str = "events") -> _Events:
    _check_columns(events, where)
    times = parse_times(events["InvoiceDate"], "InvoiceDate", where, fmt=_TIME_FORMAT)
    cust = _customer_ids(events["CustomerID"], where)
    quantity = _numeric(events["Quantity"], "Quantity", where).to_numpy()
    price = _numeric(events["UnitPrice"], "UnitPrice", where).to_numpy()
    invoice_no = events["InvoiceNo"].astype(str).str.strip()
    # A cancellation is a "C" invoice; a negative quantity is a return as well.
    is_cancel = (invoice_no.str.upper().str.startswith("C").to_numpy(dtype=bool)
                 | (quantity < 0))
    is_purchase = ~is_cancel & (quantity > 0)
    code, customers = pd.factorize(cust, sort=True)
    t = times.to_numpy().astype("datetime64[ns]").astype(np.int64)
    order = np.argsort(t, kind="stable")
    order = order[np.argsort(code[order], kind="stable")]
    stock = events["StockCode"].astype(str).str.strip().to_numpy(dtype=object)
    item_code, _ = pd.factorize(stock)
    description = events["Description"].fillna("").astype(str).str.strip().to_numpy(dtype=object)
    country = events["Country"].fillna("").astype(str).str.strip().to_numpy(dtype=object)
    return _Events(
        customers=np.asarray(customers, dtype=object),
        code=code[order],
        t=t[order],
        invoice=pd.factorize(invoice_no)[0][order],
        item_code=item_code[order],
        is_purchase=is_purchase[order],
        is_cancel=is_cancel[order],
        value=(quantity * price)[order],
        quantity=quantity[order],
        item_id=stock[order],
        event_type=np.where(is_cancel, "cancel", "purchase").astype(object)[order],
        description=description[order],
        country=country[order],
    )


def _build_one(ev: _Events, cutoff: pd.Timestamp, horizon_days: int,
               max_events: int | None) -> pd.DataFrame:
    T = pd.Timestamp(cutoff)
    T_ns = T.as_unit("ns").value
    h_ns = horizon_days * _DAY_NS
    before = ev.t < T_ns  # strictly before T: the only lines any input may use

    lines = pd.DataFrame({"code": ev.code[before], "t": ev.t[before], "invoice": ev.invoice[before],
                          "item": ev.item_code[before], "value": ev.value[before],
                          "qty": ev.quantity[before], "purchase": ev.is_purchase[before],
                          "cancel": ev.is_cancel[before]})
    buys = lines[lines["purchase"]]
    g = buys.groupby("code", sort=True)
    feats = pd.DataFrame({
        "first_t": g["t"].min(),
        "last_t": g["t"].max(),
        "frequency": g["invoice"].nunique().astype(np.float64),
        "monetary": g["value"].sum(),
        "n_unique_items": g["item"].nunique().astype(np.float64),
        "total_quantity": g["qty"].sum(),
    })
    if feats.empty:
        return _empty_frame()
    codes = feats.index.to_numpy()
    for days, count_col, spend_col in ((30, "purchases_last_30d", "spend_last_30d"),
                                       (90, "purchases_last_90d", None)):
        recent = buys[buys["t"] >= T_ns - days * _DAY_NS].groupby("code")
        feats[count_col] = recent["invoice"].nunique().reindex(codes, fill_value=0).astype(np.float64)
        if spend_col:
            feats[spend_col] = recent["value"].sum().reindex(codes, fill_value=0.0)
    all_g = lines.groupby("code", sort=True)
    feats["n_lines"] = all_g.size().reindex(codes).astype(np.float64)
    feats["n_cancellations"] = all_g["cancel"].sum().reindex(codes).astype(np.float64)
    cancels = lines[lines["cancel"]]
    feats["cancelled_value"] = (cancels["value"].abs().groupby(cancels["code"]).sum()
                                .reindex(codes, fill_value=0.0))
    feats["recency_days"] = (T_ns - feats["last_t"]) / _DAY_NS
    feats["tenure_days"] = (T_ns - feats["first_t"]) / _DAY_NS
    feats["avg_basket_value"] = feats["monetary"] / feats["frequency"]
    span_days = (feats["last_t"] - feats["first_t"]) / _DAY_NS
    feats["mean_days_between_purchases"] = np.where(
        feats["frequency"] > 1, span_days / (feats["frequency"] - 1).clip(lower=1), np.nan)

    # Event sequences and the last country: lines before T are already sorted
    # by customer, then time; keep the most recent max_events per customer.
    code_b = ev.code[before]
    bounds = group_boundaries(code_b)
    group_codes = code_b[bounds[:-1]]
    pos = np.searchsorted(group_codes, codes)  # every buyer has lines before T
    last_country = ev.country[before][bounds[1:] - 1][pos]
    keep = keep_last_n(code_b, max_events)
    kept_bounds = group_boundaries(code_b[keep])
    seqs = {name: split_to_lists(values[before][keep], kept_bounds)
            for name, values in (("item_id", ev.item_id), ("event_type", ev.event_type),
                                 ("item_description", ev.description))}

    after = ev.is_purchase & (ev.t > T_ns) & (ev.t <= T_ns + h_ns)
    label = np.isin(codes, np.unique(ev.code[after])).astype(np.int64)

    out = pd.DataFrame({"customer_id": ev.customers[codes], "cutoff": T.strftime("%Y-%m-%d")})
    for name in SCHEMA.event_text + SCHEMA.sequences:
        out[name] = pd.Series([seqs[name][i] for i in pos], dtype=object)
    for name in SCHEMA.numeric:
        out[name] = feats[name].to_numpy(dtype=np.float64)
    out["country"] = last_country
    out[SCHEMA.label] = label
    return out


def _output_columns() -> list[str]:
    return ["customer_id", "cutoff"] + SCHEMA.feature_names + [SCHEMA.label]


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in _output_columns()})


def build_examples(events: pd.DataFrame, cutoffs: list[pd.Timestamp], horizon_days: int,
                   max_events: int | None = DEFAULT_MAX_EVENTS) -> pd.DataFrame:
    """One example per (customer, cut-off) from cleaned invoice lines.

    For each cut-off ``T``, every customer with at least one purchase line
    strictly before ``T`` gives one row. Inputs use only lines with
    ``InvoiceDate < T``; ``label`` is 1 if the customer has a purchase line
    (not a "C" invoice, ``Quantity > 0``) with ``T < InvoiceDate <= T + horizon``.

    Args:
        events: invoice lines with the columns of :data:`RAW_COLUMNS`, as
            returned by :func:`clean_events` (CustomerID may also be the raw
            float; InvoiceDate may be strings).
        cutoffs: the cut-off timestamps ``T`` (normally midnights).
        horizon_days: length of the label window in days.
        max_events: keep only the most recent ``max_events`` lines in the
            sequence columns (None: all). Numeric features use all lines.

    Returns:
        Columns ``customer_id`` (str), ``cutoff`` (``YYYY-MM-DD``), the
        features of :data:`SCHEMA` (sequences as lists, oldest first) and
        ``label`` (0/1); rows ordered by cut-off, then customer id.

    Raises:
        SchemaError: missing columns or CustomerID, bad numbers or timestamps.
    """
    if horizon_days < 1:
        raise ConfigError(f"horizon_days must be >= 1, got {horizon_days}")
    if max_events is not None and max_events < 1:
        raise ConfigError(f"max_events must be >= 1 or None, got {max_events}")
    return _build(_prepare(events), cutoffs, horizon_days, max_events)


def _build(ev: _Events, cutoffs: list[pd.Timestamp], horizon_days: int,
           max_events: int | None) -> pd.DataFrame:
    frames = [_build_one(ev, T, horizon_days, max_events) for T in cutoffs]
    frames = [f for f in frames if len(f)]
    if not frames:
        return _empty_frame()
    return pd.concat(frames, ignore_index=True)[_output_columns()]


def default_cutoffs(horizon_days: int, step_days: int, max_train_cutoffs: int,
                    data_end: pd.Timestamp = DATA_END,
                    data_start: pd.Timestamp = DATA_START) -> dict[str, list[pd.Timestamp]]:
    """Time-split cut-offs whose label windows do not overlap across splits.

    ``test = data_end - horizon``, ``validation = test - horizon`` and
    ``train_k = validation - horizon - k * step`` for ``k < max_train_cutoffs``,
    keeping the train cut-offs with at least :data:`MIN_HISTORY_DAYS` days of
    history after ``data_start``. All dates are midnights.

    Args:
        horizon_days: label window length.
        step_days: spacing of the rolling train cut-offs.
        max_train_cutoffs: most train cut-offs to make.
        data_end: end of the data; the test label window ends here.
        data_start: start of the data.

    Returns:
        ``{"train": [...oldest first], "validation": [T], "test": [T]}``.

    Raises:
        ConfigError: if no train cut-off has enough history.
    """
    if horizon_days < 1 or step_days < 1 or max_train_cutoffs < 1:
        raise ConfigError("horizon_days, step_days and max_train_cutoffs must be >= 1, got "
                          f"{horizon_days}, {step_days}, {max_train_cutoffs}")
    end = pd.Timestamp(data_end).normalize()
    start = pd.Timestamp(data_start).normalize()
    h, step = pd.Timedelta(days=horizon_days), pd.Timedelta(days=step_days)
    test = end - h
    validation = test - h
    earliest = start + pd.Timedelta(days=MIN_HISTORY_DAYS)
    train = [validation - h - k * step for k in range(max_train_cutoffs)]
    train = sorted(T for T in train if T >= earliest)
    if not train:
        raise ConfigError(
            f"No train cut-off: with horizon_days={horizon_days} the validation cut-off is "
            f"{validation.date()} and the latest train cut-off {(validation - h).date()} is before "
            f"{earliest.date()} ({MIN_HISTORY_DAYS} days after the data start {start.date()}); "
            "use a shorter data.horizon_days")
    return {"train": train, "validation": [validation], "test": [test]}


def load_online_retail(cfg: DataConfig, path: str | Path | None = None,
                       max_events: int | None = DEFAULT_MAX_EVENTS) -> dict[str, pd.DataFrame]:
    """Builds the train / validation / test frames of the Online Retail task.

    Reads the invoice lines, cleans them (:func:`clean_events`, hashing the
    customer ids if ``cfg.hash_ids``), derives the cut-offs from the data's
    first and last day (:func:`default_cutoffs` with ``cfg.horizon_days``,
    ``cfg.cutoff_step_days``, ``cfg.max_train_cutoffs``) and builds the
    examples (:func:`build_examples`).

    Args:
        cfg: data configuration.
        path: the CSV(.gz) file; default: the copy shipped in the package.
        max_events: most recent invoice lines kept per example sequence.

    Returns:
        ``{"train": df, "validation": df, "test": df}`` in the layout of
        :func:`build_examples` (not yet validated by ``SCHEMA.validate``).

    Raises:
        SchemaError: unreadable file or bad data.
        ConfigError: cut-off settings leaving no train cut-off.
    """
    start_clock = _time.perf_counter()
    path = Path(path) if path is not None else DATA_FILE
    raw = read_raw(path, string_columns=_STRING_COLUMNS)
    events = clean_events(raw, hash_ids=cfg.hash_ids, where=path.name)
    del raw
    times = events["InvoiceDate"]
    cutoffs = default_cutoffs(cfg.horizon_days, cfg.cutoff_step_days, cfg.max_train_cutoffs,
                              data_end=times.max().normalize(), data_start=times.min().normalize())
    logger.info("Online Retail cut-offs (horizon %d days): train %s, validation %s, test %s",
                cfg.horizon_days, [str(T.date()) for T in cutoffs["train"]],
                cutoffs["validation"][0].date(), cutoffs["test"][0].date())
    ev = _prepare(events, where=path.name)
    frames = {}
    for split in ("train", "validation", "test"):
        frames[split] = _build(ev, cutoffs[split], cfg.horizon_days, max_events)
        if len(frames[split]) == 0:
            raise SchemaError(f"{path}: the {split} split has no customer with a purchase before "
                              f"its cut-off(s) {[str(T.date()) for T in cutoffs[split]]}")
        logger.info("Online Retail %s: %d examples, %.1f %% positive", split, len(frames[split]),
                    100 * frames[split][SCHEMA.label].mean())
    logger.info("Online Retail built in %.1f s (%s)", _time.perf_counter() - start_clock, ATTRIBUTION)
    return frames
