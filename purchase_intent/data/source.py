"""The examples of a run, through one interface, whether they are in memory or in prepared shards.

Everything a run reads of its data goes through a :class:`Splits`: the
number of examples and positives of each split (Python ints: nothing
wraps), mergeable statistics the preprocessor adapts on, the distinct
scalar texts a frozen encoder embeds once, bounded frames (the baselines,
the tiny encoder's vocabulary, the trees' sample), the labels and ids of
every example in the order a split is read, and the raw feature blocks of
each input pipeline. Two implementations:

* :class:`FrameSplits`: validated frames in memory (statistics exact);
* :class:`PreparedSplits`: a directory written by ``python -m purchase_intent.prepare``,
  streamed from its TFRecord shards (memory holds a few blocks and the bounded frames).

The model, the input pipeline (:func:`purchase_intent.pipeline.make_dataset`)
and the task never ask which one they hold.

Examples:

>>> from purchase_intent.data.synthetic import SCHEMA, make_synthetic
>>> source = FrameSplits({"train": make_synthetic(40, seed=0)}, SCHEMA)
>>> source.examples("train")
40
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from typing import Any

import numpy as np
import pandas as pd

from purchase_intent import contract
from purchase_intent.data.prepared import Prepared, distinct_values, label_counts, read_columns, read_frame
from purchase_intent.schema import SPLITS, FeatureSchema

logger = logging.getLogger(__name__)

PREPARED_TRAIN_SAMPLE = 50_000  # training examples read into a frame from a prepared directory
PREPARED_EVAL_SAMPLE = 200_000  # validation / test examples read into a frame (the baselines score them)


@dataclasses.dataclass
class RawBlocks:
    """One input pipeline's share of a split, as blocks of raw examples.

    Args:
        dataset: ``tf.data`` of ``(raw features, label [block, 1] float32)`` blocks;
            sequences ragged, the rest ``[block]`` tensors (the serving signature's values).
        examples: examples this pipeline reads per epoch.
        smallest: examples of the smallest pipeline (every pipeline takes as many full steps).
        in_memory: the split is in memory anyway (its preprocessed examples may be cached
            whatever its size; a streamed one only when the shuffle buffer would hold it).
        shuffle_limit: the shuffle buffer holds at most this many examples.
    """

    dataset: Any
    examples: int
    smallest: int
    in_memory: bool
    shuffle_limit: int


class Splits(abc.ABC):
    """The train / validation / test examples of one run (see the module)."""

    schema: FeatureSchema

    @abc.abstractmethod
    def examples(self, split: str) -> int:
        """Examples of ``split`` (0 for a split the source lacks)."""

    @abc.abstractmethod
    def label_counts(self, split: str) -> tuple[int, int]:
        """``(positives, examples)`` of ``split`` as Python ints."""

    @abc.abstractmethod
    def stats(self, bow_events: int = 0) -> dict:
        """``{split: purchase_intent.stats.SplitStats}``; ``bow_events``: see ``SplitStats.of_frame``."""

    @abc.abstractmethod
    def frame(self, split: str) -> pd.DataFrame:
        """A validated frame of ``split``: all of it in memory; its first examples when prepared."""

    @abc.abstractmethod
    def columns(self, split: str, ids: bool = True) -> pd.DataFrame:
        """The label and (``ids``) the schema's id columns of every example, in the order of evaluation."""

    @abc.abstractmethod
    def distinct_values(self, columns: list[str]) -> list[str]:
        """The sorted distinct values of scalar string ``columns`` over every split."""

    @abc.abstractmethod
    def raw_blocks(self, split: str, *, block: int, training: bool, seed: int = 0, ctx=None) -> RawBlocks:
        """This input pipeline's (``ctx``) share of ``split`` as raw blocks of ``block`` examples.

        ``training``: the source may read in no fixed order (files shuffled and
        interleaved); otherwise the order of :meth:`columns`.
        """

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in SPLITS if self.examples(s))

    def positive_rate(self, split: str) -> float:
        positives, examples = self.label_counts(split)
        return positives / examples if examples else 0.0

    def frames(self) -> dict[str, pd.DataFrame]:
        """``{split: frame(split)}`` for every split the source has."""
        return {s: self.frame(s) for s in self.splits}

    def sampled(self, split: str) -> bool:
        """True when :meth:`frame` holds fewer examples than the split."""
        return len(self.frame(split)) < self.examples(split)

    def summary(self) -> dict[str, dict[str, float]]:
        """``metrics.json``'s ``splits``: examples and positive rate of each split."""
        return {s: {"examples": self.examples(s), "positive_rate": self.positive_rate(s)} for s in self.splits}


class FrameSplits(Splits):
    """Validated frames in memory (``{"train": df, ...}``, in the form of ``FeatureSchema.validate``)."""

    def __init__(self, frames: dict[str, pd.DataFrame], schema: FeatureSchema):
        self._frames = dict(frames)
        self.schema = schema
        self._stats: dict[int, dict] = {}

    def examples(self, split):
        return len(self._frames[split]) if split in self._frames else 0

    def label_counts(self, split):
        return label_counts(self._frames, split, self.schema.label)

    def stats(self, bow_events=0):
        """Exact statistics: every finite value kept for the quantiles; the bag of words of ``train``."""
        from purchase_intent.stats import DEFAULT_CAPACITY, SplitStats

        if bow_events not in self._stats:  # computed once per run
            self._stats[bow_events] = {
                split: SplitStats.of_frame(df, self.schema, bow_events=bow_events if split == "train" else 0,
                                           capacity=max(len(df), DEFAULT_CAPACITY))
                for split, df in self._frames.items()}
        return self._stats[bow_events]

    def frame(self, split):
        return self._frames[split]

    def columns(self, split, ids=True):
        names = [c for c in self.schema.id if c in self._frames[split].columns] if ids else []
        return self._frames[split][names + [self.schema.label]]

    def distinct_values(self, columns):
        return distinct_values(self._frames, columns)

    def raw_blocks(self, split, *, block, training, seed=0, ctx=None):
        import tensorflow as tf

        df = self._frames[split]
        labels = df[self.schema.label].to_numpy(np.float32).reshape(-1, 1)
        ds = tf.data.Dataset.from_tensor_slices((raw_examples(df, self.schema), labels))
        pipelines = ctx.num_input_pipelines if ctx else 1
        examples = len(df)
        if pipelines > 1:  # one pipeline per worker: each holds every pipelines-th example
            ds = ds.shard(pipelines, ctx.input_pipeline_id)
            examples = len(range(ctx.input_pipeline_id, len(df), pipelines))
        return RawBlocks(ds.batch(block), examples, len(df) // pipelines, in_memory=True, shuffle_limit=len(df))


class PreparedSplits(Splits):
    """A prepared directory (:class:`~purchase_intent.data.prepared.Prepared`), streamed from its shards.

    The frames are bounded samples: the first ``PREPARED_TRAIN_SAMPLE``
    training and ``PREPARED_EVAL_SAMPLE`` validation / test examples (whole
    splits when they are no larger), read once.
    """

    def __init__(self, prepared: Prepared):
        self.prepared = prepared
        self.schema = prepared.schema
        self._frames: dict[str, pd.DataFrame] = {}
        self._stats: dict | None = None

    def examples(self, split):
        return self.prepared.examples(split)

    def label_counts(self, split):
        return label_counts(self.prepared, split, self.schema.label)

    def stats(self, bow_events=0):
        if self._stats is None:  # written by prepare; adapt checks their bag-of-words events
            self._stats = self.prepared.stats()
        return self._stats

    def frame(self, split):
        if split not in self._frames:
            limit = PREPARED_TRAIN_SAMPLE if split == "train" else PREPARED_EVAL_SAMPLE
            self._frames[split] = read_frame(self.prepared, split, limit)
            if self.examples(split) > len(self._frames[split]):
                logger.info("Prepared data %s: %s split streamed (%d examples); a frame holds its first %d",
                            self.prepared.root, split, self.examples(split), len(self._frames[split]))
        return self._frames[split]

    def columns(self, split, ids=True):
        return read_columns(self.prepared, split, ids=ids)

    def distinct_values(self, columns):
        return distinct_values(self.prepared, columns)

    def raw_blocks(self, split, *, block, training, seed=0, ctx=None):
        import tensorflow as tf

        from purchase_intent.data.prepared import parse_block

        prepared, schema = self.prepared, self.schema
        paths = prepared.check(split)
        counts = [s["examples"] for s in prepared.shards(split)]
        files, data_level, examples, smallest = pipeline_files(paths, counts, ctx)
        compression = prepared.compression
        names = tf.data.Dataset.from_tensor_slices(files)  # already listed (list_files would glob again)
        if training and not data_level:  # several files at once, reshuffled, in no fixed order
            names = names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
            ds = names.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
                                  cycle_length=min(len(files), 8), num_parallel_calls=tf.data.AUTOTUNE,
                                  deterministic=False)
        else:  # the files' order: evaluation matches the manifest, workers agree on every n-th record
            ds = tf.data.TFRecordDataset(names, compression_type=compression)
        if data_level:
            ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
        ds = ds.batch(block).map(lambda b: parse_block(b, schema), num_parallel_calls=tf.data.AUTOTUNE)
        return RawBlocks(ds, examples, smallest, in_memory=False, shuffle_limit=examples)


def pipeline_files(paths: list[str], counts: list[int], ctx):
    """The files this input pipeline reads, and how examples are divided among pipelines.

    File-level sharding (pipeline ``i`` reads files ``i, i + n, ...``) when
    there are at least as many files as pipelines; otherwise every pipeline
    reads every file and keeps every n-th example (data-level sharding).

    Returns:
        ``(files, data_level, examples_here, smallest_pipeline)``.
    """
    pipelines = ctx.num_input_pipelines if ctx else 1
    i = ctx.input_pipeline_id if ctx else 0
    total = sum(counts)
    if pipelines == 1:
        return list(paths), False, total, total
    if len(paths) >= pipelines:
        per = [sum(counts[j::pipelines]) for j in range(pipelines)]
        return list(paths[i::pipelines]), False, per[i], min(per)
    return list(paths), True, len(range(i, total, pipelines)), total // pipelines


def raw_examples(df: pd.DataFrame, schema: FeatureSchema) -> dict:
    """Column tensors of a validated frame; sequence columns as ``tf.RaggedTensor``.

    Sequence rows hold the example's events only (:func:`contract.frame_events`:
    the padding dropped), so keeping the most recent events keeps what the
    serving graph keeps.
    """
    import tensorflow as tf

    out = {}
    for name in schema.text + schema.categorical:
        out[name] = tf.constant(df[name].to_numpy(dtype=object).astype(str).astype(object))
    sequences = contract.frame_events(df, schema.sequence_like)
    for name in schema.sequence_like:
        seqs = sequences[name]
        lengths = np.fromiter((len(v) for v in seqs), dtype=np.int64, count=len(seqs))
        flat = [x for v in seqs for x in v]
        values = tf.constant(np.asarray(flat, dtype=object) if flat else np.zeros(0, dtype=object),
                             dtype=tf.string)
        out[name] = tf.RaggedTensor.from_row_lengths(values, lengths)
    for name in schema.numeric:
        out[name] = tf.constant(df[name].to_numpy(np.float32))
    return out


def as_splits(data, schema: FeatureSchema | None = None, split: str = "train") -> Splits:
    """``data`` as a :class:`Splits`: itself, ``{split: frame}`` frames, a ``Prepared`` or one frame (as ``split``)."""
    if isinstance(data, Splits):
        return data
    if isinstance(data, Prepared):
        return PreparedSplits(data)
    if isinstance(data, pd.DataFrame):
        return FrameSplits({split: data}, schema)
    return FrameSplits(data, schema)


def open_splits(data_cfg, seed: int, given: set[str] = frozenset()) -> Splits:
    """The run's data named by ``data.name``: a prepared directory (streamed), or a table loaded in memory.

    Args:
        data_cfg: the run's ``DataConfig``; a prepared event log's ``data.*`` settings are set in it
            (how live sessions become examples), and the config validated again.
        seed: seed of the random split, of synthetic data and of prefix sampling (``load_splits``).
        given: the ``data.*`` keys the user set; each must equal the prepared value.

    Raises:
        SchemaError: unreadable or invalid data, or a given setting the directory was not prepared with.
    """
    if Prepared.is_prepared(data_cfg.name):
        prepared = Prepared.load(data_cfg.name)
        prepared.apply_data_settings(data_cfg, given)
        return PreparedSplits(prepared)
    from purchase_intent.data import load_splits

    schema, frames = load_splits(data_cfg, seed=seed)
    return FrameSplits(frames, schema)
