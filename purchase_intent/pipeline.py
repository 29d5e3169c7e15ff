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
    rate = float(labels.mean()) if len(labels) else 0.5
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
    batch_size = ctx.get_per_replica_batch_size(cfg.batch_size) if ctx else cfg.batch_size
    labels = df[schema.label].to_numpy(np.float32).reshape(-1, 1)
    ds = tf.data.Dataset.from_tensor_slices((raw_examples(df, schema), labels))
    pipelines = ctx.num_input_pipelines if ctx else 1
    examples_here = len(df)
    if pipelines > 1:
        # One pipeline per worker: each holds its own shard (every pipelines-th example).
        ds = ds.shard(pipelines, ctx.input_pipeline_id)
        examples_here = len(range(ctx.input_pipeline_id, len(df), pipelines))
    max_len = cfg.events_kept()
    seq_names = schema.sequence_like

    def recent(raw, y):  # a block of ragged rows -> the most recent events, padded with ""
        raw = dict(raw)
        for name in seq_names:
            raw[name] = raw[name][:, -max_len:].to_tensor(default_value="")
        return raw, y

    ds = ds.batch(_BLOCK)
    if seq_names:
        ds = ds.map(recent, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda raw, y: (preprocessor(raw), y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.unbatch()
    ds = ds.apply(tf.data.experimental.assert_cardinality(examples_here))  # Keras then knows the steps
    if weights is not None:
        w0, w1 = float(weights[0]), float(weights[1])
        ds = ds.map(lambda x, y: (x, y, tf.where(y > 0.5, w1, w0)[0]))
    if cfg.cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(min(cfg.shuffle_buffer, max(len(df), 1)), seed=seed,
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
        per_pipeline = len(df) // pipelines
        step = batch_size * replicas_here
        ds = ds.take(max(per_pipeline // step, 1) * step)
        return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    ds = ds.batch(batch_size)
    return ds.prefetch(tf.data.AUTOTUNE)


def distributed_dataset(strategy: tf.distribute.Strategy, df: pd.DataFrame, schema: FeatureSchema,
                        preprocessor: Preprocessor, cfg: DataConfig, **kwargs):
    """``make_dataset`` per input pipeline through ``distribute_datasets_from_function``."""
    if strategy.num_replicas_in_sync == 1 and not isinstance(
            strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return make_dataset(df, schema, preprocessor, cfg, **kwargs)
    return strategy.distribute_datasets_from_function(
        lambda ctx: make_dataset(df, schema, preprocessor, cfg, ctx=ctx, **kwargs))
