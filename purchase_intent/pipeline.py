"""tf.data input pipeline: validated frame -> (model inputs, label[, weight]) batches.

Order of stages, and why:

1. ``from_tensor_slices`` over ragged sequences (no Python generator);
2. ``batch`` in large blocks, then per block (parallel ``map``, vectorised):
   truncation of the ragged sequences to the most recent ``data.events_kept()``
   events and padding with ``""`` (2-4x faster than a per-example ``map`` and
   ``padded_batch``, see ``benchmarks/pipeline.py``);
3. the ``Preprocessor`` (tokenisation, lookups, normalisation) per block;
4. ``unbatch`` + ``cache``: preprocessing is deterministic, so it runs once;
5. ``shuffle`` (training only, reshuffled each epoch) and batching at the
   per-replica batch size from the ``tf.distribute.InputContext``;
6. ``prefetch``.

From a prepared directory (:func:`make_shard_dataset`), stage 1 is
``list_files`` + ``interleave`` of TFRecord shards (file-level sharding per
input pipeline) and parallel parsing of blocks of records into the same raw
tensors; stages 2-3 and 5-6 are the same code (:func:`preprocess_blocks`,
:func:`batch_examples`); stage 4 caches only a split (this pipeline's share)
of at most ``data.shuffle_buffer`` examples, as many as the shuffle buffer
holds anyway: a larger one is parsed and preprocessed again each epoch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf

from purchase_intent import contract
from purchase_intent.config import DataConfig
from purchase_intent.preprocessing import Preprocessor
from purchase_intent.schema import FeatureSchema

_BLOCK = 512  # examples per vectorised preprocessing call


def raw_examples(df: pd.DataFrame, schema: FeatureSchema) -> dict[str, tf.Tensor]:
    """Column tensors of a validated frame; sequence columns as ``tf.RaggedTensor``.

    Sequence rows hold the example's events only (:func:`contract.frame_events`:
    the padding dropped), so keeping the most recent events keeps what the
    serving graph keeps.
    """
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


def class_weights(labels: np.ndarray, mode: str) -> dict[int, float] | None:
    """Per-class weights: "balanced" (n / (2 * n_c)), "none", or "auto" (balanced if < 20 % minority)."""
    labels = np.asarray(labels)
    return count_class_weights(int(np.count_nonzero(labels > 0.5)), len(labels), mode)


def count_class_weights(positives: int, examples: int, mode: str) -> dict[int, float] | None:
    """:func:`class_weights` of a split with ``positives`` of ``examples`` labelled 1 (no label array)."""
    rate = positives / examples if examples else 0.5
    if mode == "none" or (mode == "auto" and 0.2 <= rate <= 0.8) or rate in (0.0, 1.0):
        return None
    return {0: 0.5 / (1 - rate), 1: 0.5 / rate}


def make_dataset(df: pd.DataFrame, schema: FeatureSchema, preprocessor: Preprocessor,
                 cfg: DataConfig, *, training: bool, seed: int = 0,
                 weights: dict[int, float] | None = None,
                 ctx: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """Builds the batched dataset for one split.

    Args:
        df: a frame validated by ``schema.validate`` (with the label column).
        schema: the feature schema.
        preprocessor: the adapted ``Preprocessor``.
        cfg: data configuration (batch size is global).
        training: shuffle and reshuffle each epoch.
        seed: shuffle seed.
        weights: optional class weights, added as a third element.
        ctx: input context under ``distribute_datasets_from_function``.

    Returns:
        A dataset of ``(inputs, label)`` or ``(inputs, label, weight)``.
    """
    labels = df[schema.label].to_numpy(np.float32).reshape(-1, 1)
    ds = tf.data.Dataset.from_tensor_slices((raw_examples(df, schema), labels))
    pipelines = ctx.num_input_pipelines if ctx else 1
    examples_here = len(df)
    if pipelines > 1:
        # One pipeline per worker: each holds its own shard (every pipelines-th example).
        ds = ds.shard(pipelines, ctx.input_pipeline_id)
        examples_here = len(range(ctx.input_pipeline_id, len(df), pipelines))
    ds = preprocess_blocks(ds.batch(_BLOCK), schema, preprocessor, cfg)
    if training:
        ds = on_service(ds, cfg)
    return batch_examples(ds, cfg, training=training, seed=seed, weights=weights, ctx=ctx,
                          examples_here=examples_here, smallest_pipeline=len(df) // pipelines,
                          cache=cfg.cache, shuffle_limit=len(df))


def preprocess_blocks(blocks: tf.data.Dataset, schema: FeatureSchema, preprocessor: Preprocessor,
                      cfg: DataConfig) -> tf.data.Dataset:
    """Blocks of raw examples (sequences ragged) and labels -> preprocessed examples, one by one.

    The stages both paths share, in memory and from shards: per block, the
    most recent ``data.events_kept()`` events padded with ``""``, then the
    ``Preprocessor``; then ``unbatch``.
    """
    max_len = cfg.events_kept()
    seq_names = schema.sequence_like

    def recent(raw, y):  # a block of ragged rows -> the most recent events, padded with ""
        raw = dict(raw)
        for name in seq_names:
            raw[name] = raw[name][:, -max_len:].to_tensor(default_value="")
        return raw, y

    if seq_names:
        blocks = blocks.map(recent, num_parallel_calls=tf.data.AUTOTUNE)
    blocks = blocks.map(lambda raw, y: (preprocessor(raw), y), num_parallel_calls=tf.data.AUTOTUNE)
    return blocks.unbatch()


def batch_examples(ds: tf.data.Dataset, cfg: DataConfig, *, training: bool, seed: int,
                   weights: dict[int, float] | None, ctx: tf.distribute.InputContext | None,
                   examples_here: int, smallest_pipeline: int, cache: bool,
                   shuffle_limit: int | None = None) -> tf.data.Dataset:
    """Preprocessed examples -> batches: weights, cache, shuffle, per-replica batching, prefetch.

    Args:
        examples_here: examples this input pipeline holds (Keras then knows the steps).
        smallest_pipeline: examples of the smallest input pipeline (every
            pipeline takes its number of full steps in multi-replica training).
        cache: keep the preprocessed examples in memory after the first epoch.
        shuffle_limit: the shuffle buffer holds at most ``data.shuffle_buffer``
            and this many examples (default ``examples_here``).
    """
    batch_size = ctx.get_per_replica_batch_size(cfg.batch_size) if ctx else cfg.batch_size
    pipelines = ctx.num_input_pipelines if ctx else 1
    ds = ds.apply(tf.data.experimental.assert_cardinality(examples_here))
    if weights is not None:
        w0, w1 = float(weights[0]), float(weights[1])
        ds = ds.map(lambda x, y: (x, y, tf.where(y > 0.5, w1, w0)[0]))
    if cache:
        ds = ds.cache()
    if training:
        limit = examples_here if shuffle_limit is None else shuffle_limit
        ds = ds.shuffle(min(cfg.shuffle_buffer, max(limit, 1)), seed=seed,
                        reshuffle_each_iteration=True)
    replicas_here = (ctx.num_replicas_in_sync // pipelines) if ctx else 1
    if training and ctx and ctx.num_replicas_in_sync > 1:
        # Every replica must get a full batch at every step: with a short last
        # step, the sparse embedding gradients of the replicas have different
        # shapes and their all-reduce fails (AddN); across workers, every
        # pipeline must also take the same number of steps or the collectives
        # hang. So each pipeline takes as many full steps as the smallest shard
        # holds; the reshuffled remainder (< one global batch per pipeline) sits
        # out that epoch, a different one each epoch.
        step = batch_size * replicas_here
        ds = ds.take(max(smallest_pipeline // step, 1) * step)
        return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    ds = ds.batch(batch_size)
    return ds.prefetch(tf.data.AUTOTUNE)


def pipeline_files(paths: list[str], counts: list[int], ctx: tf.distribute.InputContext | None):
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


def make_shard_dataset(prepared, split: str, preprocessor: Preprocessor, cfg: DataConfig, *,
                       training: bool, seed: int = 0, weights: dict[int, float] | None = None,
                       ctx: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """As :func:`make_dataset`, streaming one split of a prepared directory.

    The listed files (reshuffled each epoch in training), ``interleave`` of the
    TFRecord files, parallel parsing of blocks of records into the raw
    tensors of :func:`raw_examples`, then the same stages as the in-memory
    path. Memory holds the shuffle buffer, not the split: the preprocessed examples are
    cached (``data.cache``) only when this pipeline's share of the split is no larger
    than ``data.shuffle_buffer``, the examples the shuffle buffer holds anyway (a small
    table prepared into shards then trains as fast as in memory); a larger split is
    read, parsed and preprocessed again each epoch.

    Args:
        prepared: a :class:`purchase_intent.data.prepared.Prepared`.
        split: "train", "validation" or "test".

    Raises:
        SchemaError: a shard is missing or truncated (naming it).
    """
    from purchase_intent.data.prepared import parse_block

    schema = prepared.schema
    paths = prepared.check(split)
    counts = [s["examples"] for s in prepared.shards(split)]
    files, data_level, examples_here, smallest = pipeline_files(paths, counts, ctx)
    compression = prepared.compression
    names = tf.data.Dataset.from_tensor_slices(files)  # already listed (list_files would glob again)
    if training and not data_level:
        names = names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if training and not data_level:  # several files at once, in no fixed order
        ds = names.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
                              cycle_length=min(len(files), 8), num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=False)
    else:  # the files' order: evaluation matches the manifest, workers agree on every n-th record
        ds = tf.data.TFRecordDataset(names, compression_type=compression)
    if data_level:
        ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
    ds = ds.batch(_BLOCK).map(lambda b: parse_block(b, schema), num_parallel_calls=tf.data.AUTOTUNE)
    ds = preprocess_blocks(ds, schema, preprocessor, cfg)
    if training:
        ds = on_service(ds, cfg)
    return batch_examples(ds, cfg, training=training, seed=seed, weights=weights, ctx=ctx,
                          examples_here=examples_here, smallest_pipeline=smallest,
                          cache=cfg.cache and examples_here <= cfg.shuffle_buffer)


def on_service(ds: tf.data.Dataset, cfg: DataConfig) -> tf.data.Dataset:
    """``ds`` produced by the tf.data service at ``data.service`` (unchanged when it is empty).

    The service's workers run everything before this point (reading,
    parsing, preprocessing), each example once per epoch
    (``distributed_epoch``, in no fixed order); the trainer keeps shuffling
    and batching. Each iteration of each input pipeline is its own
    (anonymous) job, so pipelines keep the examples their sharding gave them.
    """
    if not cfg.service:
        return ds
    return ds.apply(tf.data.experimental.service.distribute(
        processing_mode="distributed_epoch", service=cfg.service))


def distributed_dataset(strategy: tf.distribute.Strategy, df, schema: FeatureSchema,
                        preprocessor: Preprocessor, cfg: DataConfig, **kwargs):
    """``make_dataset`` per input pipeline through ``distribute_datasets_from_function``.

    ``df`` is a validated frame, or a ``Prepared`` directory whose training
    split is streamed (:func:`make_shard_dataset`).
    """
    if isinstance(df, pd.DataFrame):
        make = lambda **kw: make_dataset(df, schema, preprocessor, cfg, **kw)  # noqa: E731
    else:
        make = lambda **kw: make_shard_dataset(df, "train", preprocessor, cfg, **kw)  # noqa: E731
    if strategy.num_replicas_in_sync == 1 and not isinstance(
            strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return make(**kwargs)
    return strategy.distribute_datasets_from_function(lambda ctx: make(ctx=ctx, **kwargs))
