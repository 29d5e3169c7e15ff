"""Prepare a large table for training: ``python -m purchase_intent.prepare``.

Reads a table of examples (CSV in chunks, Parquet by row groups, or many
files by a glob), validates each chunk against the schema with the errors
the in-memory path gives, splits it into train / validation / test, and
writes sharded TFRecord files of raw features plus the streaming statistics
the preprocessor adapts on (:mod:`purchase_intent.data.prepared`,
:mod:`purchase_intent.stats`). Memory is bounded by the chunk size and the
statistics (counters and fixed-size samples), never by the input.

One machine::

    python -m purchase_intent.prepare --input 'sessions/*.parquet' \\
        --schema schema.json --output prepared/

A cluster: run partition ``i`` of ``N`` on each of N machines or tasks (a
Kubernetes indexed job array, one Spark ``mapPartitions`` task, ...) on a
shared output directory, then merge once::

    python -m purchase_intent.prepare --input ... --output prepared/ --partition $i/$N
    python -m purchase_intent.prepare merge --output prepared/

With at least N files, partition ``i`` takes every N-th file; with fewer,
every N-th chunk of each file (CSV chunks, Parquet row groups). A partition
writes its own shards and ``partials/partition-<i>-of-<N>.json`` (its
shards and statistics); ``merge`` checks all N are there, merges the
statistics and writes ``manifest.json`` and ``stats.json``. With one
partition (the default) ``prepare`` merges by itself.

The split: ``data.split_column`` if set (values train / validation / test),
else a seeded hash with the fractions ``data.validation_fraction`` /
``data.test_fraction`` of each row's ``data.group_column`` value when a
column is named (all rows of a customer in one split), else of its file name
and row number: the same for any partitioning, but not the permutation of
the in-memory path. A stream cannot know whether ids repeat before its end,
so ``group_column=auto`` hashes the schema's first id column when there is one
(each customer's rows in one split, as in memory; the shards keep no ids, so
train's leakage check could not see them shared afterwards), else rows;
``data.split_time_column`` needs the whole table sorted and is refused: write a
split column.

An event log (``--set data.format=events`` and the clickstream settings,
:mod:`purchase_intent.data.clickstream`): :func:`prepare_events_partition`
routes the events to on-disk buckets by session, then builds each bucket's
prefix examples with the in-memory path's own function; the same examples,
labels and splits as ``data.format=events`` in memory. A partition keeps
the sessions of its hash (``--partition-by session``, the default) or every
N-th file (``--partition-by file``, each session in one file); ``merge``
runs the whole-log checks. Each shard's CRC-32 goes into the manifest, so
training names a shard corrupted in place.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import logging
import os
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from purchase_intent.data.prepared import FORMAT, MANIFEST, STATS, encode_examples, file_crc32
from purchase_intent import cli
from purchase_intent.data import split_values
from purchase_intent.schema import SPLITS, FeatureSchema, SchemaError

logger = logging.getLogger("purchase_intent.prepare")

PARTIALS = "partials"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["merge"]:
        p = argparse.ArgumentParser(prog="python -m purchase_intent.prepare merge",
                                    description="Merge the partitions of a prepared directory.")
        p.add_argument("--output", required=True, help="the prepared directory")
        cli.add_common_flags(p)
        args = p.parse_args(argv[1:])
        args.command = "merge"
        return args
    p = argparse.ArgumentParser(
        prog="python -m purchase_intent.prepare",
        description="Validate a table and write sharded TFRecord files of raw features, a manifest "
                    "and mergeable statistics (then: python -m purchase_intent.train --data OUTPUT).",
        formatter_class=cli.HelpFormatter)
    p.add_argument("--input", required=True, action="append",
                   help="CSV/Parquet file or glob (quote it); repeatable")
    p.add_argument("--schema", default=None, help="schema file (JSON/YAML); default: data.schema")
    p.add_argument("--output", required=True, help="output directory (shared by all partitions)")
    p.add_argument("--partition", default="0/1", help="i/N: this is partition i of N (0-based)")
    p.add_argument("--preset", default="default", help="config preset whose data section applies")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. data.split_column=split or data.max_history_length=100")
    p.add_argument("--chunk-rows", type=int, default=50_000, help="rows read at a time")
    p.add_argument("--shard-examples", type=int, default=100_000, help="examples per TFRecord file")
    p.add_argument("--sample-size", type=int, default=50_000,
                   help="numeric quantile reservoir per feature (exact below it)")
    p.add_argument("--max-values", type=int, default=0,
                   help=">0: keep the most frequent N values per counted column (bounds memory; counts "
                        "become lower bounds, see purchase_intent/stats.py); 0: exact")
    p.add_argument("--compression", default="", choices=["", "GZIP", "ZLIB"], help="TFRecord compression")
    p.add_argument("--buckets", type=int, default=0,
                   help="event log (data.format=events): on-disk session buckets per partition; "
                        "0: one per ~16 MB of input")
    p.add_argument("--partition-by", default="session", choices=["session", "file"],
                   help="event log: a partition keeps the sessions of its hash (reads all the input) "
                        "or every N-th file (each session must lie in one file)")
    cli.add_config_flags(p)
    cli.add_common_flags(p)
    args = p.parse_args(argv)
    args.command = "prepare"
    return args


def parse_partition(text: str) -> tuple[int, int]:
    """``"i/N"`` -> ``(i, N)``, with ``0 <= i < N``."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise SchemaError(f"--partition {text!r}: expected i/N, e.g. 0/4") from None
    if not 0 <= i < n:
        raise SchemaError(f"--partition {text!r}: need 0 <= i < N")
    return i, n


def input_files(patterns: list[str]) -> list[Path]:
    """The sorted files the patterns name (a pattern without wildcards names one file)."""
    files = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern)))
        if not matches and not any(c in pattern for c in "*?["):
            matches = [pattern]  # read_raw's checks say what is wrong with it
        if not matches:
            raise SchemaError(f"--input {pattern!r}: matches no file")
        files += matches
    return [Path(f) for f in dict.fromkeys(files)]


def hash_split(rows: np.ndarray, key: int, validation_fraction: float, test_fraction: float) -> np.ndarray:
    """Split name of each row number, from a splitmix64 hash of (``key``, row): uniform and stable."""
    with np.errstate(over="ignore"):
        z = rows.astype(np.uint64) + np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.where(u < test_fraction, "test",
                    np.where(u < test_fraction + validation_fraction, "validation", "train"))


def split_of(df, path: Path, cfg, seed: int, id_column: str | None = None) -> np.ndarray:
    """The split of each row of a raw chunk: its ``data.split_column`` value or :func:`hash_split`.

    Hashed by row, or by the value of :func:`group_by` (``data.group_column``; with ``auto``, the
    schema's first id column ``id_column`` when the chunk has it).
    """
    if cfg.split_column:
        if cfg.split_column not in df.columns:
            raise SchemaError(f"{path}: split column {cfg.split_column!r} is missing")
        return split_values(df[cfg.split_column], cfg.split_column, str(path)).to_numpy()
    key = zlib.crc32(path.name.encode()) + seed
    rows = hash_split(df.index.to_numpy(), key, cfg.validation_fraction, cfg.test_fraction)
    column = group_by(cfg, id_column)
    if column is None or (cfg.group_column == "auto" and column not in df.columns):
        return rows
    if column not in df.columns:
        raise SchemaError(f"{path}: group column {column!r} (data.group_column) is missing")
    import pandas as pd

    from purchase_intent.data.readers import id_keys, is_missing_key

    ids = id_keys(df[column])
    hashed = pd.util.hash_pandas_object(ids, index=False).to_numpy(np.uint64)  # the same in every file
    groups = hash_split(hashed, seed, cfg.validation_fraction, cfg.test_fraction)
    return np.where(is_missing_key(df[column]), rows, groups)  # no id: a group of its own


def group_by(cfg, id_column: str | None) -> str | None:
    """The column whose values a stream's split keeps together: ``data.group_column`` when named; with
    ``auto``, the schema's first id column (a stream cannot know whether ids repeat before its end, and
    hashing unique ids splits row by row all the same); None for ``none`` or no id column."""
    if cfg.group_column == "none":
        return None
    return id_column if cfg.group_column == "auto" else cfg.group_column


class ShardWriter:
    """Writes the records of one split into files of at most ``shard_examples`` records."""

    def __init__(self, out_dir: Path, prefix: str, shard_examples: int, compression: str = ""):
        self.out_dir, self.prefix = out_dir, prefix
        self.shard_examples, self.compression = shard_examples, compression
        self.shards: list[dict[str, Any]] = []
        self._writer, self._count = None, 0

    def write(self, records: list[bytes]) -> None:
        import tensorflow as tf

        for record in records:
            if self._writer is None:
                name = f"{self.prefix}-{len(self.shards):05d}.tfrecord" + (".gz" if self.compression == "GZIP" else "")
                self.shards.append({"file": name, "examples": 0, "bytes": 0})
                self._writer = tf.io.TFRecordWriter(str(self.out_dir / name), self.compression or None)
                self._count = 0
            self._writer.write(record)
            self._count += 1
            self.shards[-1]["examples"] += 1
            if self._count >= self.shard_examples:
                self._close_file()

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            path = self.out_dir / self.shards[-1]["file"]
            self.shards[-1]["bytes"] = path.stat().st_size
            self.shards[-1]["crc32"] = file_crc32(path)  # Prepared.check finds a shard changed in place
            self._writer = None

    def close(self) -> list[dict[str, Any]]:
        self._close_file()
        return self.shards


def write_splits(valid, splits: np.ndarray, schema: FeatureSchema, cfg, writers: dict[str, "ShardWriter"],
                 parts: dict[str, Any], *, sample_size: int, seed: int, max_values: int) -> None:
    """Writes the rows of a validated frame to their split's shards and adds them to its statistics.

    Args:
        valid: a frame validated by ``schema.validate``.
        splits: the split name of each row.
        writers: ``{split: ShardWriter}``.
        parts: ``{split: SplitStats}``, updated in place.
        seed: seed of this frame's reservoir samples.
        max_values: >0: prune a split's counters to this many values once one holds twice as many.
    """
    from purchase_intent import stats as st

    for split in SPLITS:
        part = valid[splits == split].reset_index(drop=True)
        if not len(part):
            continue
        writers[split].write(encode_examples(part, schema))
        chunk_stats = st.SplitStats.of_frame(part, schema, bow_events=cfg.events_kept(),
                                             capacity=sample_size, seed=seed)
        parts[split] = parts.get(split, st.SplitStats()).merge(chunk_stats)
        if max_values and max(map(len, [parts[split].bow_terms, *parts[split].values.values()])) > 2 * max_values:
            parts[split] = parts[split].prune(max_values)


def prepare_partition(inputs: list[str], schema: FeatureSchema, out_dir: str | Path, cfg, *,
                      partition: tuple[int, int] = (0, 1), seed: int = 0, chunk_rows: int = 50_000,
                      shard_examples: int = 100_000, sample_size: int = 50_000,
                      compression: str = "", max_values: int = 0) -> dict[str, Any]:
    """Prepares partition ``partition = (i, N)`` of the inputs; writes its shards and partial manifest.

    Args:
        inputs: files or globs.
        schema: the table's features.
        out_dir: the prepared directory (created).
        cfg: a :class:`~purchase_intent.config.DataConfig` (split column or fractions; the
            bag of words' ``events_kept()``).
        seed: seed of the hashed split and of the reservoir samples.
        max_values: >0: counters pruned to this many values (``SplitStats.prune``)
            whenever one holds twice as many, and at the end.

    Returns:
        The partial manifest (also written to ``partials/``).

    Raises:
        SchemaError: unreadable input or invalid rows, naming the file and row.
    """
    from purchase_intent import stats as st
    from purchase_intent.data.readers import iter_table

    index, count = partition
    out_dir = Path(out_dir)
    (out_dir / PARTIALS).mkdir(parents=True, exist_ok=True)
    files = input_files(inputs)
    by_file = len(files) >= count
    writers = {s: ShardWriter(out_dir, f"{s}-{index:05d}", shard_examples, compression) for s in SPLITS}
    parts: dict[str, st.SplitStats] = {}
    rows, t0 = 0, time.perf_counter()
    id_column = schema.id[0] if schema.id else None
    if not cfg.split_column:
        by = group_by(cfg, id_column)
        logger.info("Split: a seeded hash of %s (data.group_column=%s)", f"{by!r} (each value's rows in one split)"
                    if by else "each row's file and number", cfg.group_column)
    for f, path in enumerate(files):
        if by_file and f % count != index:
            continue
        chunks = None if by_file else (lambda number: number % count == index)
        for number, raw in iter_table(path, schema, chunk_rows, chunks=chunks):
            splits = split_of(raw, path, cfg, seed, id_column)
            valid = schema.validate(raw, where=str(path))
            write_splits(valid, splits, schema, cfg, writers, parts, sample_size=sample_size,
                         seed=seed + 7919 * f + number, max_values=max_values)
            rows += len(raw)
            logger.info("%s chunk %d: %d rows (%d in this partition, %.0f rows/s)", path, number, len(raw),
                        rows, rows / max(time.perf_counter() - t0, 1e-9))
    if max_values:
        parts = {k: v.prune(max_values) for k, v in parts.items()}
    name = f"partition-{index:05d}-of-{count:05d}"
    st.save(parts, out_dir / PARTIALS / f"stats-{name}.json")
    partial = {"format": FORMAT, "schema": schema.to_dict(), "partition": [index, count],
               "inputs": [str(p) for p in files], "compression": compression,
               "bow_events": cfg.events_kept(), "rows": rows,
               "shards": {s: w.close() for s, w in writers.items()},
               "stats": f"{PARTIALS}/stats-{name}.json"}
    (out_dir / PARTIALS / f"{name}.json").write_text(json.dumps(partial, indent=2))
    logger.info("Partition %d/%d: %d rows in %.1f s -> %s", index, count, rows, time.perf_counter() - t0,
                {s: sum(x["examples"] for x in w.shards) for s, w in writers.items()})
    return partial


# -- event logs (data.format=events) ---------------------------------------------------------
SESSION_SAMPLE = 1e-3  # --partition-by file: share of session ids each partition records for merge's check
BUCKET_BYTES = 16 << 20  # input bytes per bucket when --buckets is 0 (Parquet counted 4x: compressed)
MAX_BUCKETS = 512  # open bucket files at once


def _event_chunk(raw, schema: FeatureSchema, cfg, where: str) -> tuple[Any, int]:
    """Checks a raw chunk of an event log as the in-memory path checks the whole log.

    Returns:
        ``(events, dropped)``: the used columns of the rows that have a session
        id, the time as ``datetime64[ns]`` (wall clock) and the numbers as
        float64 (NaN for missing and inf); ``dropped``: rows without a session id.

    Raises:
        SchemaError: the errors of :func:`clickstream.build_prefixes`, naming
            the file, the column and the spreadsheet row.
    """
    import pandas as pd

    from purchase_intent.data import clickstream as cs
    from purchase_intent.data.readers import id_keys, is_missing_key
    from purchase_intent.schema import _as_float_column

    cs._check_columns(raw, schema, cfg, where)
    cs.check_label_column(raw, schema, cfg, where)
    no_key = is_missing_key(raw[cfg.session_column])
    events = raw[~no_key] if no_key.any() else raw
    columns = list(dict.fromkeys([cfg.session_column, cfg.time_column, cfg.event_type_column]
                                 + schema.feature_names + ([cfg.price_column] if cfg.price_column else [])))
    if not len(events):
        return raw[columns].iloc[:0], int(no_key.sum())
    out = events[columns].copy()
    out[cfg.session_column] = id_keys(events[cfg.session_column])  # as clickstream reads it in memory
    out[cfg.time_column] = cs.event_times(events[cfg.time_column], cfg.time_column, where,
                                          cfg.time_format).view("datetime64[ns]")
    for name in schema.numeric + ([cfg.price_column] if cfg.price_column else []):
        _as_float_column(events[name], name, where)  # a non-number: error naming its spreadsheet row
        values = pd.to_numeric(events[name], errors="coerce").to_numpy(np.float64, na_value=np.nan, copy=True)
        values[~np.isfinite(values)] = np.nan
        out[name] = values
    return out.reset_index(drop=True), int(no_key.sum())


def _bucket_count(files: list[Path], index: int, count: int, by_file: bool) -> int:
    """Buckets of one partition: about :data:`BUCKET_BYTES` of its share of the input each."""
    size = sum((4 if p.name.lower().endswith((".parquet", ".pq")) else 1) * p.stat().st_size
               for i, p in enumerate(files) if p.is_file() and (not by_file or i % count == index))
    share = size if by_file else size / count
    return int(min(MAX_BUCKETS, max(1, -(-share // BUCKET_BYTES))))


def prepare_events_partition(inputs: list[str], schema: FeatureSchema, out_dir: str | Path, cfg, *,
                             partition: tuple[int, int] = (0, 1), partition_by: str = "session",
                             buckets: int = 0, seed: int = 0, chunk_rows: int = 50_000,
                             shard_examples: int = 100_000, sample_size: int = 50_000,
                             compression: str = "", max_values: int = 0) -> dict[str, Any]:
    """Prepares partition ``(i, N)`` of an event log: in-session prefix examples, as ``data.format=events``.

    Memory is bounded by a bucket, never the log:

    1. The partition's input is read in chunks (CSV chunks, Parquet batches);
       each chunk is checked as the in-memory path checks the log (same
       errors: file, column, spreadsheet row) and its events are appended to
       one of ``buckets`` files on disk by a stable hash of the session id
       (:func:`clickstream.session_bucket`), so every session lands whole in
       one bucket, in input order (equal timestamps keep their file order).
    2. Each bucket is loaded and turned into prefixes by
       :func:`clickstream.prefixes_of_part`, the function of the in-memory
       path, then split, validated and written to shards with statistics.

    Partitions: ``partition_by="session"`` (default): partition ``i`` reads
    the whole input and keeps the sessions whose hash falls in it (input read
    N times, processed once; no condition on the files). ``"file"``: every
    N-th file, read once; each session must then lie in one file (a log
    written partitioned by session id).

    Split: ``data.split_by=session`` is the in-memory hash of the session id,
    bucket by bucket. ``data.split_by=time`` needs every session's first
    event time: in one partition, the prefixes of each bucket are kept on
    disk, the cut between train / validation / test is computed from all
    sessions' (start, id) pairs (memory O(sessions)), then the buckets are
    written. Over N partitions: a first run of each partition records its
    sessions' (start, id) pairs (``partials/starts-*.pkl``, no shards),
    ``merge`` computes the cut (``partials/time-cut.json``: the (start, id)
    where validation and where test begin), a second run of each partition
    writes its shards with that cut, and a last ``merge`` the manifest.

    Returns:
        The partial manifest (also written to ``partials/``), with the
        :class:`clickstream.LogSummary` that ``merge`` checks (a purchase
        event, non-buying sessions, a cut point, 10 sessions).

    Raises:
        SchemaError: unreadable input, invalid rows (naming the file and row),
            too few files for ``partition_by="file"``, a time cut computed
            with other settings.
    """
    import pickle
    import shutil

    import pandas as pd

    from purchase_intent.data import clickstream as cs
    from purchase_intent.data.readers import iter_table

    index, count = partition
    if partition_by not in ("session", "file"):
        raise SchemaError(f"--partition-by {partition_by!r}: expected session or file")
    out_dir = Path(out_dir)
    # split_by=time over N partitions: a first run of each partition records its sessions' first event
    # times (``starts_only``), merge computes the cut (TIME_CUT), a second run writes the shards.
    cut = _load_time_cut(out_dir, cfg) if cfg.split_by == "time" and count > 1 else None
    starts_only = cfg.split_by == "time" and count > 1 and cut is None
    (out_dir / PARTIALS).mkdir(parents=True, exist_ok=True)
    files = input_files(inputs)
    by_file = partition_by == "file"
    if by_file and len(files) < count:
        raise SchemaError(f"--partition-by file: {len(files)} input file(s) for {count} partitions; "
                          "use --partition-by session")
    buckets = buckets or _bucket_count(files, index, count, by_file)
    pschema = cs.prefix_schema(schema, cfg)
    name = f"partition-{index:05d}-of-{count:05d}"
    tmp = out_dir / PARTIALS / f"buckets-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    t0 = time.perf_counter()
    rows = kept = dropped = 0
    sample: set[str] = set()
    try:
        # 1. Route every event of this partition to its session's bucket.
        handles = [open(tmp / f"events-{b:05d}.pkl", "wb") for b in range(buckets)]
        try:
            strings = [cfg.session_column, cfg.event_type_column]
            for f, path in enumerate(files):
                if by_file and f % count != index:
                    continue
                for number, raw in iter_table(path, schema, chunk_rows, string_columns=strings):
                    events, lost = _event_chunk(raw, schema, cfg, str(path))
                    rows += len(raw)
                    dropped += lost
                    code = cs.session_bucket(events[cfg.session_column], buckets * count)
                    if by_file and count > 1:  # a hashed sample of ids: merge finds a session in 2 partitions
                        ids = events[cfg.session_column]
                        sample.update(ids[cs.session_hash_unit(ids) < SESSION_SAMPLE].astype(str).tolist())
                    if not by_file:
                        mine = code % count == index
                        events, code = events[mine], code[mine]
                    bucket = code // count if not by_file else code % buckets
                    order = np.argsort(bucket, kind="stable")
                    bounds = np.searchsorted(bucket[order], np.arange(buckets + 1))
                    for b in np.flatnonzero(np.diff(bounds)):
                        pickle.dump(events.iloc[order[bounds[b]:bounds[b + 1]]], handles[b],
                                    protocol=pickle.HIGHEST_PROTOCOL)
                    kept += len(events)
                    logger.info("%s chunk %d: %d events (%d read, %d in this partition, %.0f events/s)",
                                path, number, len(raw), rows, kept, rows / max(time.perf_counter() - t0, 1e-9))
        finally:
            for h in handles:
                h.close()
        if rows and dropped == rows:
            raise SchemaError(f"{', '.join(map(str, files))[:200]}: every event has a missing "
                              f"{cfg.session_column!r}")
        if dropped:
            logger.warning("%s: dropped %d of %d events with a missing %r: cannot attribute them to a "
                           "session", ", ".join(map(str, files))[:200], dropped, rows, cfg.session_column)

        # 2. Prefixes bucket by bucket.
        def load(file: Path):
            frames = []
            with open(file, "rb") as h:
                while True:
                    try:
                        frames.append(pickle.load(h))
                    except EOFError:
                        break
            return pd.concat(frames, ignore_index=True) if frames else None

        summary = cs.LogSummary()
        writers = {s: ShardWriter(out_dir, f"{s}-{index:05d}", shard_examples, compression) for s in SPLITS}
        parts: dict[str, Any] = {}
        starts: list[Any] = []

        def write(prefixes, split_of_row, b):
            for lo in range(0, len(prefixes), chunk_rows):
                block = prefixes.iloc[lo:lo + chunk_rows]
                valid = pschema.validate(block, where=f"{out_dir} [bucket {b}]")
                write_splits(valid, split_of_row[lo:lo + chunk_rows], pschema, cfg, writers, parts,
                             sample_size=sample_size, seed=seed + 7919 * b + lo, max_values=max_values)

        for b in range(buckets):
            events = load(tmp / f"events-{b:05d}.pkl")
            (tmp / f"events-{b:05d}.pkl").unlink()
            if events is None:
                continue
            prefixes, part_summary = cs.prefixes_of_part(events, schema, cfg, seed, where=f"bucket {b}")
            del events
            summary = summary.merge(part_summary)
            if not len(prefixes):
                continue
            if cut is not None:
                write(prefixes, _time_cut_split(prefixes, cut, cfg), b)
            elif cfg.split_by == "time":
                first = prefixes.drop_duplicates(cfg.session_column)
                starts.append(first[[cfg.session_column, cs.SESSION_START]])
                if not starts_only:
                    prefixes.to_pickle(tmp / f"prefixes-{b:05d}.pkl")
            else:
                split_names = np.asarray(SPLITS)[cs.hash_split_parts(prefixes[cfg.session_column], cfg)]
                write(prefixes, split_names, b)
            logger.info("bucket %d/%d: %d prefixes (%d sessions)", b + 1, buckets, len(prefixes),
                        part_summary.sessions_with_prefixes)
        if starts_only:
            first = (pd.concat(starts, ignore_index=True) if starts else
                     pd.DataFrame({cfg.session_column: [], cs.SESSION_START: []}))
            first.to_pickle(out_dir / PARTIALS / f"starts-{name}.pkl")
        elif cfg.split_by == "time" and cut is None and starts:
            first = pd.concat(starts, ignore_index=True)
            del starts
            cs.check_session_count(len(first), ", ".join(map(str, files))[:200])
            part = cs.time_split_parts(first[cs.SESSION_START].to_numpy(),
                                       first[cfg.session_column].to_numpy(), cfg)
            split_by_session = pd.Series(np.asarray(SPLITS)[part], index=first[cfg.session_column].to_numpy())
            del first
            for b in range(buckets):
                file = tmp / f"prefixes-{b:05d}.pkl"
                if file.exists():
                    prefixes = pd.read_pickle(file)
                    file.unlink()
                    write(prefixes, split_by_session.loc[prefixes[cfg.session_column].to_numpy()].to_numpy(), b)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if max_values:
        parts = {k: v.prune(max_values) for k, v in parts.items()}
    from purchase_intent import stats as st

    st.save(parts, out_dir / PARTIALS / f"stats-{name}.json")
    partial = {"format": FORMAT, "schema": pschema.to_dict(), "partition": [index, count],
               "inputs": [str(p) for p in files], "compression": compression,
               "bow_events": cfg.events_kept(), "rows": rows,
               "events": {"summary": dataclasses.asdict(summary), "dropped": dropped,
                          "partition_by": partition_by, "buckets": buckets, "session_sample": sorted(sample),
                          "config": {k: getattr(cfg, k) for k in _EVENT_KEYS}},
               "shards": {s: w.close() for s, w in writers.items()},
               "stats": f"{PARTIALS}/stats-{name}.json"}
    if starts_only:
        partial["pending"] = "time cut"
        partial["starts"] = f"{PARTIALS}/starts-{name}.pkl"
        logger.info("Partition %d/%d: data.split_by=time: recorded the first event time of its sessions; "
                    "when all %d partitions have, run merge (it computes the time cut), then every "
                    "partition again (it writes the shards), then merge", index, count, count)
    (out_dir / PARTIALS / f"{name}.json").write_text(json.dumps(partial, indent=2))
    logger.info("Partition %d/%d: %d events (%d kept) in %d buckets in %.1f s -> %s", index, count, rows, kept,
                buckets, time.perf_counter() - t0,
                {s: sum(x["examples"] for x in w.shards) for s, w in writers.items()})
    return partial


# The data settings an event log's prefixes depend on: all partitions must share them.
_EVENT_KEYS = ("session_column", "time_column", "event_type_column", "purchase_value", "price_column",
               "prefix_every", "prefix_at", "max_prefixes_per_session", "split_by", "validation_fraction",
               "test_fraction")


TIME_CUT = "time-cut.json"


def _load_time_cut(out_dir: Path, cfg) -> dict[str, Any] | None:
    """The cut of a ``split_by=time`` fan-out computed by ``merge``, or None if there is none yet."""
    file = out_dir / PARTIALS / TIME_CUT
    if not file.is_file():
        return None
    cut = json.loads(file.read_text())
    if cut["config"] != {k: getattr(cfg, k) for k in _EVENT_KEYS}:
        raise SchemaError(f"{file}: computed with other data.* settings; delete it and run every "
                          "partition again")
    return cut


def _time_cut_split(prefixes, cut: dict[str, Any], cfg) -> np.ndarray:
    """Split names of prefix rows from the (first event time, session id) where validation and test begin."""
    from purchase_intent.data import clickstream as cs

    start = prefixes[cs.SESSION_START].to_numpy().astype("datetime64[ns]").view(np.int64)
    ids = prefixes[cfg.session_column].to_numpy().astype(str)

    def at_or_after(key):
        return (start > key[0]) | ((start == key[0]) & (ids >= key[1]))

    return np.where(at_or_after(cut["test"]), "test", np.where(at_or_after(cut["validation"]), "validation", "train"))


def _compute_time_cut(partials: list[dict[str, Any]], out_dir: Path) -> dict[str, Any]:
    """Merge step of a ``split_by=time`` fan-out: the cut from every partition's session starts."""
    import pandas as pd

    from purchase_intent.config import DataConfig
    from purchase_intent.data import clickstream as cs

    if not all(p.get("pending") for p in partials):
        raise SchemaError(f"{out_dir}: some partitions wrote shards and some wait for the time cut; "
                          "clear the directory and prepare again")
    _check_events(partials, out_dir)
    cfg = DataConfig(**partials[0]["events"]["config"])
    first = pd.concat([pd.read_pickle(out_dir / p["starts"]) for p in partials], ignore_index=True)
    start = first[cs.SESSION_START].to_numpy().astype("datetime64[ns]").view(np.int64)
    ids = first[cfg.session_column].to_numpy().astype(str)
    part = cs.time_split_parts(start, ids, cfg)  # the in-memory rule on all sessions

    def lowest(k):
        i = np.flatnonzero(part == k)
        j = i[np.lexsort((ids[i], start[i]))[0]]
        return [int(start[j]), str(ids[j])]

    cut = {"validation": lowest(1), "test": lowest(2), "sessions": len(ids),
           "config": partials[0]["events"]["config"]}
    (out_dir / PARTIALS / TIME_CUT).write_text(json.dumps(cut, indent=2))
    for p in partials:
        (out_dir / p["starts"]).unlink(missing_ok=True)
    logger.info("Time cut of %d sessions: validation from %s, test from %s (first event time, session id); "
                "now run every partition again, then merge", len(ids),
                cut["validation"], cut["test"])
    return {"time_cut": cut}


def _check_events(partials: list[dict[str, Any]], out_dir: Path) -> None:
    """The whole-log checks of an event log on the merged summaries of its partitions."""
    from purchase_intent.config import DataConfig
    from purchase_intent.data import clickstream as cs

    kinds = {"events" in p for p in partials}
    if len(kinds) > 1:
        raise SchemaError(f"{out_dir}: some partitions are of an event log and some of a table; "
                          "prepare all partitions with the same options")
    if not kinds.pop():
        return
    first = partials[0]["events"]["config"]
    for p in partials[1:]:
        if p["events"]["config"] != first:
            raise SchemaError(f"{out_dir}: partitions {partials[0]['partition']} and {p['partition']} differ "
                              "in their data.* settings: prepare all partitions with the same options")
    cfg = DataConfig(**first)
    seen: dict[str, int] = {}
    for p in partials:  # --partition-by file: each partition's hashed sample of its session ids
        for sid in p["events"].get("session_sample", []):
            if seen.setdefault(sid, p["partition"][0]) != p["partition"][0]:
                raise SchemaError(
                    f"{out_dir}: session {sid!r} has events in partitions {seen[sid]} and {p['partition'][0]}: "
                    "with --partition-by file every session must lie in the files of one partition; "
                    "prepare again with --partition-by session")
    summary = cs.LogSummary()
    for p in partials:
        summary = summary.merge(cs.LogSummary(**p["events"]["summary"]))
    where = str(out_dir)
    cs.check_labels(summary, cfg, where)
    cs.check_cuts(summary, cfg, where)
    cs.check_session_count(summary.sessions_with_prefixes, where)
    cs.log_summary(summary, where)


def merge(out_dir: str | Path) -> dict[str, Any]:
    """Merges the partial manifests and statistics of all partitions into ``manifest.json``.

    Raises:
        SchemaError: no partition, missing partitions, partitions of different
            runs, an empty split, or a training split with one label only.
    """
    from purchase_intent import stats as st

    out_dir = Path(out_dir)
    partials = [json.loads(p.read_text()) for p in sorted((out_dir / PARTIALS).glob("partition-*-of-*.json"))]
    if not partials:
        raise SchemaError(f"{out_dir}: no {PARTIALS}/partition-*.json: run prepare first")
    counts = {p["partition"][1] for p in partials}
    if len(counts) != 1:
        raise SchemaError(f"{out_dir}: partitions of different runs (N = {sorted(counts)}); "
                          "clear the directory and prepare again")
    count = counts.pop()
    missing = sorted(set(range(count)) - {p["partition"][0] for p in partials})
    if missing:
        raise SchemaError(f"{out_dir}: partition(s) {missing} of {count} not prepared yet")
    if any(p.get("pending") for p in partials):
        return _compute_time_cut(partials, out_dir)
    first = partials[0]
    for p in partials[1:]:
        for key in ("schema", "bow_events", "compression"):
            if p[key] != first[key]:
                raise SchemaError(f"{out_dir}: partitions {first['partition']} and {p['partition']} "
                                  f"differ in {key}: prepare all partitions with the same options")
    _check_events(partials, out_dir)
    events = first.get("events")
    merged = st.merge_splits(st.load(out_dir / p["stats"]) for p in partials)
    schema = FeatureSchema.from_dict(first["schema"])
    splits = {}
    for split in SPLITS:
        s = merged.get(split, st.SplitStats())
        if not s.examples:
            raise SchemaError(f"{out_dir}: the {split} split has no examples")
        splits[split] = {"examples": s.examples, "positives": s.positives,
                         "label_rate": s.positives / s.examples,
                         "shards": [x for p in partials for x in p["shards"][split]]}
    if splits["train"]["positives"] in (0, splits["train"]["examples"]):
        raise SchemaError(f"{out_dir}: the training split has only label "
                          f"{int(splits['train']['positives'] > 0)}; a classifier needs both 0 and 1")
    st.save(merged, out_dir / STATS)
    manifest = {"format": FORMAT, "schema": schema.to_dict(), "partitions": count,
                "inputs": sorted({i for p in partials for i in p["inputs"]}),
                "compression": first["compression"], "bow_events": first["bow_events"],
                "splits": splits, "stats": STATS}
    if events:  # the data.* settings of an event log, which training applies (Prepared.data_settings)
        manifest["data"] = {"format": "events", **events["config"]}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    (out_dir / PARTIALS / TIME_CUT).unlink(missing_ok=True)  # used: a new prepare here starts afresh
    logger.info("Merged %d partition(s) into %s: %s", count, out_dir / MANIFEST,
                {k: (v["examples"], round(v["label_rate"], 4), len(v["shards"])) for k, v in splits.items()})
    return manifest


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs ``prepare`` or ``merge``; returns the partial manifest, or the manifest when merged."""
    args = parse_args(argv)
    cli.setup_logging()
    if args.command == "merge":
        return merge(args.output)
    from purchase_intent.config import get_config

    cfg = get_config(args.preset, None, args.overrides)
    schema_file = args.schema or cfg.data.schema
    if not schema_file:
        raise SchemaError("give the table's schema with --schema SCHEMA.json (or data.schema)")
    index, count = parse_partition(args.partition)
    if cfg.data.split_time_column and not cfg.data.split_column and cfg.data.format != "events":
        raise SchemaError(f"prepare cannot split by data.split_time_column={cfg.data.split_time_column!r}: a time "
                          "split needs the whole table sorted; write a split column (train / validation / "
                          "test, e.g. from the date) and give it as data.split_column")
    if cfg.data.format == "events":
        from purchase_intent.data.clickstream import resolve_config

        partial = prepare_events_partition(
            args.input, FeatureSchema.load(schema_file), args.output, resolve_config(cfg.data),
            partition=(index, count), partition_by=args.partition_by, buckets=args.buckets,
            seed=cfg.train.seed, chunk_rows=args.chunk_rows, shard_examples=args.shard_examples,
            sample_size=args.sample_size, compression=args.compression, max_values=args.max_values)
        return merge(args.output) if count == 1 else partial
    partial = prepare_partition(args.input, FeatureSchema.load(schema_file), args.output, cfg.data,
                                partition=(index, count), seed=cfg.train.seed, chunk_rows=args.chunk_rows,
                                shard_examples=args.shard_examples, sample_size=args.sample_size,
                                compression=args.compression, max_values=args.max_values)
    return merge(args.output) if count == 1 else partial


if __name__ == "__main__":
    sys.exit(cli.run(main))
