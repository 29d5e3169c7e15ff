"""Datasets: the built-in Online Retail task, synthetic sessions, user tables and clickstreams."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd

from purchase_intent.config import DataConfig
from purchase_intent.data.builtin import (DATA_ENV, DATA_FILES, default_data_root,  # noqa: F401 (re-exported)
                                          resolve_data_file, stratified_split, stratified_split_frames)
from purchase_intent.schema import (SPLITS, FeatureSchema, SchemaError, check_delimiters,  # noqa: F401
                                    label_mapping, near_names, row_ref)

logger = logging.getLogger(__name__)



def load_splits(cfg: DataConfig, seed: int = 0) -> tuple[FeatureSchema, dict[str, pd.DataFrame]]:
    """Loads and validates the train / validation / test frames named by ``cfg.name``.

    Args:
        cfg: data configuration. ``cfg.name`` is "online_retail",
            "online_shoppers", "womens_reviews", "synthetic",
            "synthetic_clickstream" or the path of a CSV / Parquet table
            described by ``cfg.schema``; with ``cfg.format="events"`` the file
            is a raw event log, turned into in-session prefix examples and
            split by session (:mod:`purchase_intent.data.clickstream`).
        seed: seed of the random split of a user table without a split
            column, of the synthetic data, and of the
            ``data.max_prefixes_per_session`` sample of an event log.

    Returns:
        ``(schema, {"train": df, "validation": df, "test": df})``, each frame
        in the canonical form of ``FeatureSchema.validate``.

    Raises:
        SchemaError: unreadable or invalid data, with the column and row at fault.
    """
    if cfg.name == "online_retail":
        from purchase_intent.data.online_retail import SCHEMA, load_online_retail

        path = resolve_data_file("online_retail", cfg.path) if cfg.path else None
        schema = dataclasses.replace(SCHEMA, description=f"buys within {cfg.horizon_days} days of the "
                                                         "cut-off date")
        frames = load_online_retail(cfg, path=path)
    elif cfg.name == "online_shoppers":
        from purchase_intent.data.online_shoppers import SCHEMA, load_online_shoppers

        schema, frames = SCHEMA, load_online_shoppers(cfg)
    elif cfg.name == "womens_reviews":
        from purchase_intent.data.womens_reviews import SCHEMA, load_womens_reviews

        schema, frames = SCHEMA, load_womens_reviews(cfg)
    elif cfg.name == "synthetic":
        from purchase_intent.data.synthetic import SCHEMA, make_synthetic

        schema = SCHEMA
        frames = random_split(make_synthetic(cfg.synthetic_examples, seed=seed), cfg, seed, SCHEMA.label)
    elif cfg.name == "synthetic_clickstream" or cfg.format == "events":
        from purchase_intent.data.clickstream import load_clickstream

        schema, frames = load_clickstream(cfg, seed=seed)
    else:
        from purchase_intent.data.readers import read_table

        if not cfg.schema:
            raise SchemaError(f"data.name={cfg.name!r} is a table: give its schema file with "
                              "--set data.schema=PATH (JSON or YAML)")
        schema = FeatureSchema.load(cfg.schema)
        table = read_table(cfg.name, schema)
        check_table(table, schema, cfg)
        schema.require_ids(table.columns, where=cfg.name)
        if cfg.split_column:
            if cfg.split_time_column:
                logger.warning("%s: data.split_time_column=%r is not used: data.split_column=%r gives the "
                               "split", cfg.name, cfg.split_time_column, cfg.split_column)
            values = split_values(table[cfg.split_column], cfg.split_column, cfg.name)
            frames = {s: table[values == s] for s in SPLITS}
            logger.info("%s: split by the column %r (data.split_column)", cfg.name, cfg.split_column)
        elif cfg.split_time_column:
            frames = time_split(table, cfg)
        else:
            frames = random_split(table, cfg, seed, schema.label, group=group_column(table, schema, cfg))
    if cfg.max_examples:
        frames = subsample(frames, cfg.max_examples, seed=0)
    out = {name: schema.validate(frames[name], where=f"{cfg.name} [{name}]") for name in SPLITS}
    report_duplicates(out, schema, cfg.name)
    labels = out["train"][schema.label]
    if labels.nunique() < 2:
        raise SchemaError(f"{cfg.name}: the training split has only label {int(labels.iloc[0])}; "
                          "a classifier needs both 0 and 1")
    for name in SPLITS:
        logger.info("%s split: %d examples, %.1f %% positive", name, len(out[name]),
                    100 * out[name][schema.label].mean())
    return schema, out


# Accepted spellings of the split column's values (any case, spaces trimmed) -> split.
SPLIT_ALIASES = {
    "train": "train", "training": "train", "trn": "train",
    "validation": "validation", "val": "validation", "valid": "validation", "validate": "validation",
    "dev": "validation", "eval": "validation", "evaluation": "validation",
    "test": "test", "tst": "test", "testing": "test", "holdout": "test",
}


def split_values(values: pd.Series, column: str, where: str) -> pd.Series:
    """The split column read as "train" / "validation" / "test" (see :data:`SPLIT_ALIASES`).

    Raises:
        SchemaError: a value is none of the accepted spellings (the row and the accepted values named).
    """
    mapped = values.astype(str).str.strip().str.lower().map(SPLIT_ALIASES)
    bad = mapped.isna().to_numpy()
    if bad.any():
        accepted = {s: [a for a, t in SPLIT_ALIASES.items() if t == s] for s in SPLITS}
        raise SchemaError(
            f"{where}: split column {column!r}, {row_ref(values.index[bad][0])}: unknown split "
            f"{values[bad].iloc[0]!r} ({int(bad.sum())} such rows); accepted, in any case: "
            + "; ".join(f"{s}: {', '.join(a)}" for s, a in accepted.items()))
    return mapped


def check_table(table: pd.DataFrame, schema: FeatureSchema, cfg: DataConfig) -> None:
    """Checks a user table against the schema and config before anything is converted.

    Names the missing columns (features, label, split column) at once, logs
    how the label values are read (e.g. yes -> 1), and warns about sequence
    columns that seem separated by another delimiter than the schema's.

    Raises:
        SchemaError: columns missing, naming the file and the columns.
    """
    roles = {c: f"the {what} column, data.{key}" for c, what, key in (
        (cfg.group_column, "group", "group_column"), (cfg.split_time_column, "date", "split_time_column"),
        (cfg.split_column, "split", "split_column")) if c and c not in ("auto", "none")}
    needed = schema.feature_names + [schema.label] + list(roles)
    missing = list(dict.fromkeys(c for c in needed if c not in table.columns))
    if missing:
        what = {c: (roles[c] if c in roles else
                    "the label" if c == schema.label else "a feature of the schema") for c in missing}
        raise SchemaError(f"{cfg.name}: missing column(s) "
                          + ", ".join(f"{c!r} ({w})" for c, w in what.items())
                          + f"; the file has {list(table.columns)[:30]} (the schema is {cfg.schema})"
                          + near_names(missing, table.columns))
    mapping = label_mapping(table[schema.label])
    logger.info("%s: label column %r read as %s (1 = purchase)", cfg.name, schema.label,
                ", ".join(f"{k!r} -> {v}" for k, v in mapping.items()) or "nothing")
    check_delimiters(table, schema, cfg.name)


def random_split(df: pd.DataFrame, cfg: DataConfig, seed: int, label: str,
                 group: str | None = None) -> dict[str, pd.DataFrame]:
    """A seeded random split with the fractions of ``cfg`` (row order kept within each split).

    With ``group`` (a column), all rows of a value of it go to one split
    (:func:`group_split`); row by row otherwise.
    """
    if len(df) < 10:
        raise SchemaError(f"{cfg.name}: {len(df)} rows are too few to split into train/validation/test")
    if group is not None:
        return group_split(df, cfg, seed, group)
    logger.info("%s: seeded random split, row by row", cfg.name)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(df))
    n_val = max(1, int(round(cfg.validation_fraction * len(df))))
    n_test = max(1, int(round(cfg.test_fraction * len(df))))
    test, val, train = idx[:n_test], idx[n_test:n_test + n_val], idx[n_test + n_val:]
    return {"train": df.iloc[np.sort(train)], "validation": df.iloc[np.sort(val)],
            "test": df.iloc[np.sort(test)]}


def group_column(table: pd.DataFrame, schema: FeatureSchema, cfg: DataConfig) -> str | None:
    """The column whose values the random split keeps together (``data.group_column``), or None.

    "auto": the schema's first id column when some id is in more than one
    row (one customer's monthly snapshots), "none": None, else the column named.
    """
    if cfg.group_column == "none":
        return None
    if cfg.group_column != "auto":
        return cfg.group_column
    if not schema.id or schema.id[0] not in table.columns:
        return None
    from purchase_intent.data.readers import id_keys

    ids = table[schema.id[0]]
    repeats = int(id_keys(ids[~_missing(ids)]).duplicated().sum())
    if not repeats:
        return None
    logger.info("%s: the id column %r repeats (%d rows share an id with an earlier row): the split keeps "
                "each id's rows together (data.group_column=auto; none: row by row)", cfg.name,
                schema.id[0], repeats)
    return schema.id[0]


def _missing(values: pd.Series) -> np.ndarray:
    """Missing or blank values (a row without a group id is a group of its own)."""
    from purchase_intent.data.readers import is_missing_key

    return is_missing_key(values)


def group_split(df: pd.DataFrame, cfg: DataConfig, seed: int, column: str) -> dict[str, pd.DataFrame]:
    """A seeded random split of the groups of ``column``: all rows of a group go to one split.

    Groups are drawn in a seeded random order; test takes them until it holds
    about ``test_fraction`` of the rows, validation the next ones until about
    ``validation_fraction``, train the rest (row order kept within each split).
    A row whose group id is missing is a group of its own.

    Raises:
        SchemaError: fewer than 3 groups, or a split left empty.
    """
    from purchase_intent.data.readers import id_keys

    values = df[column]
    alone = _missing(values)
    codes = np.zeros(len(df), dtype=np.int64)
    codes[~alone] = pd.factorize(id_keys(values[~alone]), sort=True)[0]
    codes[alone] = (codes[~alone].max() + 1 if (~alone).any() else 0) + np.arange(int(alone.sum()))
    n_groups = int(codes.max()) + 1
    if n_groups < 3:
        raise SchemaError(f"{cfg.name}: the group column {column!r} has {n_groups} distinct value(s): too few "
                          "to split into train/validation/test (--set data.group_column=none splits row by row)")
    sizes = np.bincount(codes, minlength=n_groups)
    order = np.random.default_rng(seed).permutation(n_groups)
    start = np.cumsum(sizes[order]) - sizes[order]  # rows before each group, in the drawn order
    n_test = max(1.0, cfg.test_fraction * len(df))
    n_val = max(1.0, cfg.validation_fraction * len(df))
    part = np.zeros(n_groups, dtype=np.int64)
    part[order] = np.where(start < n_test, 2, np.where(start < n_test + n_val, 1, 0))
    row_part = part[codes]
    frames = {name: df[row_part == k] for k, name in enumerate(SPLITS)}
    for k, name in enumerate(SPLITS):
        if not (part == k).any():
            raise SchemaError(f"{cfg.name}: grouping by {column!r} left no group for the {name} split "
                              f"({n_groups} groups); use larger data.*_fraction or data.group_column=none")
    logger.info("%s: seeded random split of the %d groups of %r (each group's rows in one split): %s",
                cfg.name, n_groups, column,
                ", ".join(f"{name} {int((part == k).sum())} groups, {len(frames[name])} rows"
                          for k, name in enumerate(SPLITS)))
    return frames


def time_split(df: pd.DataFrame, cfg: DataConfig) -> dict[str, pd.DataFrame]:
    """The rows sorted by ``cfg.split_time_column``: the latest ``test_fraction`` of them test, the
    ``validation_fraction`` before them validation, the earlier ones train; each cut moves back to
    the first row of its time, so the rows of one time (a month's snapshots) stay in one split and
    the fractions are approximate.

    Dates are read by :func:`readers.parse_times` (``data.time_format`` if set; d/m/y never
    guessed); a numeric column (a year, ``202403``, epoch seconds) is sorted as numbers.

    Raises:
        SchemaError: a missing or unreadable date (column and row named), fewer than 10 rows, a
            split left empty (too few distinct times).
    """
    from purchase_intent.data.readers import parse_times

    column = cfg.split_time_column
    if len(df) < 10:
        raise SchemaError(f"{cfg.name}: {len(df)} rows are too few to split into train/validation/test")
    values = df[column]
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        bad = ~np.isfinite(values.to_numpy(np.float64, na_value=np.nan))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise SchemaError(f"{cfg.name}: column {column!r} (data.split_time_column), "
                              f"{row_ref(df.index[i])}: missing date ({int(bad.sum())} such rows)")
        times = values
    else:
        times = parse_times(values, column, cfg.name, fmt=cfg.time_format or None, exact=bool(cfg.time_format))
    order = np.argsort(times.to_numpy(), kind="stable")
    ordered = times.to_numpy()[order]
    n = len(df)
    n_test = max(1, int(round(cfg.test_fraction * n)))
    n_val = max(1, int(round(cfg.validation_fraction * n)))
    # Each cut moves back to the first row of its time: rows of one time never straddle two splits.
    test_start = int(np.searchsorted(ordered, ordered[n - n_test], side="left"))
    val_start = int(np.searchsorted(ordered, ordered[max(test_start - n_val, 0)], side="left"))
    idx = {"train": order[:val_start], "validation": order[val_start:test_start], "test": order[test_start:]}
    for name, i in idx.items():
        if not len(i):
            raise SchemaError(f"{cfg.name}: the time split by {column!r} (data.split_time_column) leaves the "
                              f"{name} split empty: the column has {len(np.unique(ordered))} distinct time(s), "
                              "and the rows of one time stay in one split; use larger data.*_fraction")
    frames = {name: df.iloc[np.sort(i)] for name, i in idx.items()}
    first = {name: times.iloc[order[[0, val_start, test_start][k]]] for k, name in enumerate(SPLITS)}
    logger.info("%s: time split by %r: train %d rows (from %s), validation %d (from %s), test %d (from %s)",
                cfg.name, column, *[x for name in SPLITS for x in (len(idx[name]), first[name])])
    return frames


def subsample(frames: dict[str, pd.DataFrame], n: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    """A seeded random sample of about ``n`` examples in all, each split shrunk by the same factor."""
    total = sum(len(f) for f in frames.values())
    if n >= total:
        return frames
    out = {}
    for i, (name, df) in enumerate(frames.items()):
        k = max(10, int(round(len(df) * n / total)))
        idx = np.sort(np.random.default_rng(seed + i).choice(len(df), size=min(k, len(df)), replace=False))
        out[name] = df.iloc[idx]
    logger.info("Subsampled %d of %d examples (seed %d): %s", sum(len(f) for f in out.values()),
                total, seed, {k: len(v) for k, v in out.items()})
    return out


def report_duplicates(frames: dict[str, pd.DataFrame], schema: FeatureSchema, where: str) -> int:
    """Counts rows whose features and label repeat an earlier row; logs a warning. Rows are kept.

    Exact duplicates are common in shop exports (the UCI Online Shoppers file has 125); they
    are kept because they may be genuine repeat sessions, but the count is reported.

    Returns:
        The number of duplicate rows over all splits.
    """
    columns = schema.feature_names + [schema.label]
    allframe = pd.concat([f[columns] for f in frames.values()], ignore_index=True)
    keys = allframe.map(lambda v: "\x1f".join(v) if isinstance(v, list) else v)
    n = int(keys.duplicated().sum())
    if n:
        logger.warning("%s: %d row(s) repeat an earlier row exactly (features and label); kept", where, n)
    return n
