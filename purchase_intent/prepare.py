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
else a seeded hash of each row's file name and row number with the
fractions ``data.validation_fraction`` / ``data.test_fraction``: the same
for any partitioning, but not the permutation of the in-memory path.
"""

from __future__ import annotations

import argparse
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

from purchase_intent.data.prepared import FORMAT, MANIFEST, STATS, encode_examples
from purchase_intent import cli
from purchase_intent.data import split_values
from purchase_intent.schema import FeatureSchema, SchemaError

logger = logging.getLogger("purchase_intent.prepare")

SPLITS = ("train", "validation", "test")
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


def split_of(df, path: Path, cfg, seed: int) -> np.ndarray:
    """The split of each row of a raw chunk: its ``data.split_column`` value or :func:`hash_split`."""
    if cfg.split_column:
        if cfg.split_column not in df.columns:
            raise SchemaError(f"{path}: split column {cfg.split_column!r} is missing")
        return split_values(df[cfg.split_column], cfg.split_column, str(path)).to_numpy()
    key = zlib.crc32(path.name.encode()) + seed
    return hash_split(df.index.to_numpy(), key, cfg.validation_fraction, cfg.test_fraction)


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
            self.shards[-1]["bytes"] = (self.out_dir / self.shards[-1]["file"]).stat().st_size
            self._writer = None

    def close(self) -> list[dict[str, Any]]:
        self._close_file()
        return self.shards


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
    for f, path in enumerate(files):
        if by_file and f % count != index:
            continue
        chunks = None if by_file else (lambda number: number % count == index)
        for number, raw in iter_table(path, schema, chunk_rows, chunks=chunks):
            splits = split_of(raw, path, cfg, seed)
            valid = schema.validate(raw, where=str(path))
            for split in SPLITS:
                part = valid[splits == split].reset_index(drop=True)
                if not len(part):
                    continue
                writers[split].write(encode_examples(part, schema))
                chunk_stats = st.SplitStats.of_frame(part, schema, bow_events=cfg.events_kept(),
                                                     capacity=sample_size, seed=seed + 7919 * f + number)
                parts[split] = parts.get(split, st.SplitStats()).merge(chunk_stats)
                if max_values and max(map(len, [parts[split].bow_terms, *parts[split].values.values()])) > 2 * max_values:
                    parts[split] = parts[split].prune(max_values)
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
    first = partials[0]
    for p in partials[1:]:
        for key in ("schema", "bow_events", "compression"):
            if p[key] != first[key]:
                raise SchemaError(f"{out_dir}: partitions {first['partition']} and {p['partition']} "
                                  f"differ in {key}: prepare all partitions with the same options")
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
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
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
    partial = prepare_partition(args.input, FeatureSchema.load(schema_file), args.output, cfg.data,
                                partition=(index, count), seed=cfg.train.seed, chunk_rows=args.chunk_rows,
                                shard_examples=args.shard_examples, sample_size=args.sample_size,
                                compression=args.compression, max_values=args.max_values)
    return merge(args.output) if count == 1 else partial


if __name__ == "__main__":
    sys.exit(cli.run(main))
