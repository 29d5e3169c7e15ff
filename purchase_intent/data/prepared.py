"""Prepared data: sharded TFRecord files of raw features, their manifest and statistics.

``python -m purchase_intent.prepare`` writes a directory::

    manifest.json        schema, splits (examples, label rate, shards), statistics file
    stats.json           {split: purchase_intent.stats.SplitStats}
    train-00000-00000.tfrecord, validation-..., test-...

Each record is a ``tf.train.Example`` of one example's *raw* features, by
their schema names and in the types the serving signature takes: text and
categorical values as one bytes value, sequences as a list of bytes (one per
event, oldest first), numbers as one float (NaN when missing), and the label
as one int64; the schema's ``id`` columns, when the table has them, as one
bytes value each. Training reads them back with :func:`parse_block` into the
same raw tensors the in-memory path builds (:mod:`purchase_intent.pipeline`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from purchase_intent.schema import SPLITS, FeatureSchema, SchemaError

MANIFEST = "manifest.json"
STATS = "stats.json"
FORMAT = "purchase_intent.tfrecord/1"


def encode_examples(df: pd.DataFrame, schema: FeatureSchema) -> list[bytes]:
    """Serialised ``tf.train.Example`` of each row of a validated frame (with its label).

    The schema's ``id`` columns the frame has are written too (one bytes value
    each): the model never reads them, the predictions of a streamed split
    carry them (:func:`read_columns`).

    Sequences hold each example's events, raw, without their padding
    (:func:`purchase_intent.contract.frame_events`), as the in-memory pipeline reads them.
    """
    import tensorflow as tf

    from purchase_intent.contract import frame_events

    bytes_cols = {n: [v.encode("utf-8") for v in df[n]] for n in schema.text + schema.categorical}
    seq_cols = {n: [[v.encode("utf-8") for v in seq] for seq in rows]
                for n, rows in frame_events(df, schema.sequence_like).items()}
    num_cols = {n: df[n].to_numpy(np.float32) for n in schema.numeric}
    id_cols = {n: [str(v).encode("utf-8") for v in df[n]] for n in schema.id if n in df.columns}
    labels = df[schema.label].to_numpy(np.int64)
    Feature, BytesList = tf.train.Feature, tf.train.BytesList
    out = []
    for i in range(len(df)):
        feature = {n: Feature(bytes_list=BytesList(value=[c[i]])) for n, c in bytes_cols.items()}
        feature.update({n: Feature(bytes_list=BytesList(value=[c[i]])) for n, c in id_cols.items()})
        feature.update({n: Feature(bytes_list=BytesList(value=c[i])) for n, c in seq_cols.items()})
        feature.update({n: Feature(float_list=tf.train.FloatList(value=[c[i]])) for n, c in num_cols.items()})
        feature[schema.label] = Feature(int64_list=tf.train.Int64List(value=[labels[i]]))
        out.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return out


def file_crc32(path: str | Path, block: int = 1 << 24) -> int:
    """CRC-32 of a file's bytes, read in blocks of ``block`` bytes (about 1 GB/s)."""
    import zlib

    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(block):
            crc = zlib.crc32(chunk, crc)
    return crc


# Shards whose checksum was verified in this process: (path, size, mtime_ns).
_VERIFIED: set[tuple[str, int, int]] = set()


def feature_spec(schema: FeatureSchema) -> dict[str, Any]:
    """``tf.io.parse_example`` features of the records: sequences ragged, the rest scalars."""
    import tensorflow as tf

    spec = {n: tf.io.FixedLenFeature([], tf.string) for n in schema.text + schema.categorical}
    spec.update({n: tf.io.RaggedFeature(tf.string, row_splits_dtype=tf.int64) for n in schema.sequence_like})
    spec.update({n: tf.io.FixedLenFeature([], tf.float32) for n in schema.numeric})
    spec[schema.label] = tf.io.FixedLenFeature([], tf.int64)
    return spec


def parse_block(serialized, schema: FeatureSchema):
    """A batch of serialised records -> ``(raw features, label [batch, 1] float32)``.

    The raw features are those of :func:`purchase_intent.data.source.raw_examples` (:mod:`purchase_intent.data.source`):
    sequences as ``tf.RaggedTensor``, the rest as ``[batch]`` tensors.
    """
    import tensorflow as tf

    parsed = tf.io.parse_example(serialized, feature_spec(schema))
    label = tf.reshape(tf.cast(parsed.pop(schema.label), tf.float32), [-1, 1])
    return parsed, label


@dataclasses.dataclass
class Prepared:
    """A prepared directory (or a glob of some of its shards) and its manifest.

    Args:
        root: the directory holding ``manifest.json``.
        manifest: its content.
        pattern: optional glob of file names restricting the training shards used
            (validation and test: all of the manifest's).
    """

    root: Path
    manifest: dict[str, Any]
    pattern: str = ""

    @classmethod
    def load(cls, path: str | Path) -> "Prepared":
        """Reads ``path``: a prepared directory, or a glob of training shard files inside one.

        Raises:
            SchemaError: no manifest, a manifest of another format, or a glob matching no shard.
        """
        path = Path(path).expanduser()
        pattern = ""
        if not path.is_dir():
            path, pattern = path.parent, path.name
        manifest_file = path / MANIFEST
        if not manifest_file.is_file():
            raise SchemaError(f"{path}: no {MANIFEST}; is it a directory written by "
                              "`python -m purchase_intent.prepare` (after its merge step)?")
        manifest = json.loads(manifest_file.read_text())
        if manifest.get("format") != FORMAT:
            raise SchemaError(f"{manifest_file}: format {manifest.get('format')!r}, expected {FORMAT!r}")
        out = cls(path, manifest, pattern)
        if pattern and not out.shards("train"):
            raise SchemaError(f"{path / pattern}: matches no training shard of {manifest_file}")
        return out

    @staticmethod
    def is_prepared(path: str | Path) -> bool:
        """True if ``path`` is a prepared directory or a glob of shards inside one."""
        path = Path(str(path)).expanduser()
        return (path / MANIFEST).is_file() or (not path.is_dir() and (path.parent / MANIFEST).is_file()
                                               and any(c in path.name for c in "*?["))

    @property
    def schema(self) -> FeatureSchema:
        return FeatureSchema.from_dict(self.manifest["schema"])

    @property
    def compression(self) -> str:
        return self.manifest.get("compression", "")

    def shards(self, split: str) -> list[dict[str, Any]]:
        """The shards of ``split`` (``{"file", "examples", "bytes"}``), in manifest order."""
        shards = self.manifest["splits"].get(split, {}).get("shards", [])
        if split != "train" or not self.pattern:
            return shards
        return [s for s in shards if fnmatch.fnmatch(s["file"], self.pattern)]

    def examples(self, split: str) -> int:
        return sum(s["examples"] for s in self.shards(split))

    def data_settings(self) -> dict[str, Any]:
        """The ``data.*`` settings the examples were prepared with (an event log's), {} for a table."""
        return dict(self.manifest.get("data", {}))

    def apply_data_settings(self, data_cfg, given: set[str]) -> None:
        """Sets ``data_cfg`` to :meth:`data_settings`, so a run keeps how its examples were made.

        Args:
            data_cfg: the run's ``DataConfig`` (changed in place).
            given: the ``data.*`` keys the user set (``--set``/config file); each must
                equal the prepared value.

        Raises:
            SchemaError: a given key differs from the value the directory was prepared with.
        """
        for key, value in self.data_settings().items():
            if f"data.{key}" in given and getattr(data_cfg, key) != value:
                raise SchemaError(f"{self.root} was prepared with data.{key}={value!r}, the run sets "
                                  f"{getattr(data_cfg, key)!r}: drop that setting or prepare again")
            setattr(data_cfg, key, value)

    def stats(self):
        """The ``{split: SplitStats}`` of the manifest's statistics file."""
        from purchase_intent import stats

        return stats.load(self.root / self.manifest["stats"])

    def check(self, split: str) -> list[str]:
        """The paths of ``split``'s shards, after checking each has the size and checksum the manifest gives.

        The checksum (CRC-32 of the file, written by prepare) finds a shard
        changed in place, e.g. flipped bytes, which TensorFlow would only
        report mid-training as "corrupted record at <offset>" without naming
        the file. Checking reads every shard once per process (about 1 GB/s);
        a manifest without checksums (older prepare) gets the size check only.

        Raises:
            SchemaError: naming the first shard that is missing, truncated or changed.
        """
        paths = []
        for shard in self.shards(split):
            path = self.root / shard["file"]
            if not path.is_file():
                raise SchemaError(f"{path}: shard listed in {self.root / MANIFEST} is missing")
            size = path.stat().st_size
            if size != shard["bytes"]:
                raise SchemaError(f"{path}: {size} bytes, but {self.root / MANIFEST} says {shard['bytes']}: "
                                  f"the shard is truncated or was changed after prepare; prepare it again")
            if "crc32" in shard:
                key = (str(path), size, path.stat().st_mtime_ns)
                if key not in _VERIFIED:
                    crc = file_crc32(path)
                    if crc != shard["crc32"]:
                        raise SchemaError(f"{path}: corrupted: its checksum (CRC-32 {crc:08x}) is not the "
                                          f"{shard['crc32']:08x} of {self.root / MANIFEST}: the shard was "
                                          "changed after prepare (disk or copy error?); prepare it again")
                    _VERIFIED.add(key)
            paths.append(str(path))
        return paths


def read_frame(prepared: Prepared, split: str, limit: int | None = None) -> pd.DataFrame:
    """The first ``limit`` (default: all) examples of a split as a validated frame.

    For what needs a frame: bounded samples of the splits (the baselines, the
    tiny encoder's vocabulary). A run streams the splits themselves
    (:func:`purchase_intent.pipeline.make_shard_dataset`, :func:`read_columns`).
    """
    import tensorflow as tf

    schema = prepared.schema
    ds = tf.data.TFRecordDataset(prepared.check(split), compression_type=prepared.compression)
    if limit is not None:
        ds = ds.take(limit)
    columns: dict[str, list] = {n: [] for n in schema.feature_names + [schema.label]}
    for serialized in ds.batch(4096):
        raw, label = parse_block(serialized, schema)
        for name in schema.text + schema.categorical:
            columns[name] += [v.decode("utf-8") for v in raw[name].numpy()]
        for name in schema.sequence_like:
            columns[name] += [[v.decode("utf-8") for v in row] for row in raw[name].to_list()]
        for name in schema.numeric:
            columns[name] += raw[name].numpy().tolist()
        columns[schema.label] += label.numpy().reshape(-1).astype(np.int64).tolist()
    out = pd.DataFrame(columns)
    for name in schema.numeric:
        out[name] = out[name].astype(np.float32)
    return out




def distinct_values(source, columns: list[str], splits=SPLITS, block: int = 4096) -> list[str]:
    """The sorted distinct values of the scalar string ``columns`` over ``splits``, for either source.

    Args:
        source: a :class:`Prepared` directory (its shards streamed, only
            ``columns`` parsed: memory holds a block of records and the
            distinct values, not the splits), or a mapping of split name to
            validated frame (the in-memory path).
        columns: scalar text or categorical columns of the schema.
        splits: the splits to read (those a source lacks are skipped).
        block: records parsed at once from the shards.

    Returns:
        The distinct values as str, sorted (both sources give the same list
        for the same table).
    """
    seen: set[str] = set()
    if not columns:
        return []
    if not isinstance(source, Prepared):  # frames: split -> DataFrame
        for split in splits:
            if split in source:
                for name in columns:
                    seen.update(str(v) for v in source[split][name])
        return sorted(seen)
    import tensorflow as tf

    spec = {n: tf.io.FixedLenFeature([], tf.string) for n in columns}
    for split in splits:
        paths = source.check(split)
        if not paths:
            continue
        ds = tf.data.TFRecordDataset(paths, compression_type=source.compression).batch(block)
        ds = ds.map(lambda b: tf.io.parse_example(b, spec), num_parallel_calls=tf.data.AUTOTUNE)
        for parsed in ds:
            for name in columns:
                seen.update(v.decode("utf-8") for v in set(parsed[name].numpy().tolist()))
    return sorted(seen)


def label_counts(source, split: str, label: str) -> tuple[int, int]:
    """``(positives, examples)`` of one split as Python ints (no fixed width: nothing wraps).

    Args:
        source: a :class:`Prepared` directory (the counts of its manifest, no
            record read; a training glob of some shards gets the manifest's
            label rate times its examples), or a mapping of split name to
            validated frame.
        split: "train", "validation" or "test".
        label: the label column (0/1).
    """
    if not isinstance(source, Prepared):
        y = np.asarray(source[split][label])
        return int(np.count_nonzero(y > 0.5)), int(len(y))
    entry = source.manifest["splits"][split]
    examples = source.examples(split)
    positives = (int(entry["positives"]) if examples == entry["examples"]
                 else int(round(float(entry["label_rate"]) * examples)))
    return positives, int(examples)


def record_ids(prepared: Prepared, split: str) -> list[str]:
    """The schema's ``id`` columns the records of ``split`` hold (those of its first record).

    Shards written before ids were kept, or from a table without them, hold none.
    """
    import tensorflow as tf

    paths = prepared.check(split)
    if not paths or not prepared.schema.id:
        return []
    for serialized in tf.data.TFRecordDataset(paths[:1], compression_type=prepared.compression).take(1):
        keys = tf.train.Example.FromString(serialized.numpy()).features.feature.keys()
        return [n for n in prepared.schema.id if n in keys]
    return []


def read_columns(prepared: Prepared, split: str, ids: bool = True) -> pd.DataFrame:
    """The label and (``ids``) the ``id`` columns of every example of a split, in file order.

    Only those columns are parsed (a few bytes per example, not the
    features): the labels and ids of a split streamed through the model, in
    the order of its predictions (:func:`purchase_intent.pipeline.make_shard_dataset`
    without training reads the files in manifest order too).
    """
    import tensorflow as tf

    schema = prepared.schema
    id_names = record_ids(prepared, split) if ids else []
    spec = {n: tf.io.FixedLenFeature([], tf.string) for n in id_names}
    spec[schema.label] = tf.io.FixedLenFeature([], tf.int64)
    ds = tf.data.TFRecordDataset(prepared.check(split), compression_type=prepared.compression)
    ds = ds.batch(4096).map(lambda b: tf.io.parse_example(b, spec), num_parallel_calls=tf.data.AUTOTUNE)
    columns: dict[str, list] = {n: [] for n in spec}
    for parsed in ds:
        for name in spec:
            columns[name].append(parsed[name].numpy())
    out = pd.DataFrame({n: np.concatenate(v) if v else np.zeros(0, spec[n].dtype.as_numpy_dtype)
                        for n, v in columns.items()})
    for name in id_names:
        out[name] = [v.decode("utf-8") for v in out[name]]
    return out[id_names + [schema.label]]
