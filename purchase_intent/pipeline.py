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

Stage 1 is the data source's (:meth:`purchase_intent.data.source.Splits.raw_blocks`): from a
prepared directory, an ``interleave`` of TFRecord shards (file-level sharding per
input pipeline) and parallel parsing of blocks of records into the same raw
tensors. Every other stage is this module's, whatever the source; stage 4
caches a streamed split (this pipeline's share) only when it has at most
``data.shuffle_buffer`` examples, as many as the shuffle buffer holds anyway:
a larger one is parsed and preprocessed again each epoch.
"""

from __future__ import annotations

import weakref

import numpy as np
import tensorflow as tf

from purchase_intent.config import DataConfig
from purchase_intent.data.source import PreparedSplits, as_splits
from purchase_intent.preprocessing import Preprocessor
from purchase_intent.schema import FeatureSchema

_BLOCK = 512  # examples per vectorised preprocessing call


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


def make_dataset(data, schema: FeatureSchema, preprocessor: Preprocessor, cfg: DataConfig, *,
                 training: bool, seed: int = 0, weights: dict[int, float] | None = None,
                 ctx: tf.distribute.InputContext | None = None, split: str = "train") -> tf.data.Dataset:
    """Builds the batched dataset of one split: the one pipeline of every run, in memory or streamed.

    Args:
        data: a :class:`~purchase_intent.data.source.Splits` (``split`` read), or one frame
            validated by ``schema.validate`` (with the label column).
        schema: the feature schema.
        preprocessor: the adapted ``Preprocessor``.
        cfg: data configuration (batch size is global).
        training: shuffle and reshuffle each epoch.
        seed: shuffle seed.
        weights: optional class weights, added as a third element.
        ctx: input context under ``distribute_datasets_from_function``.
        split: the split of ``data`` to read.

    Returns:
        A dataset of ``(inputs, label)`` or ``(inputs, label, weight)``.
    """
    source = as_splits(data, schema, split)
    reusable = source is data and not training and weights is None and ctx is None
    if reusable and (ds := _built(source, preprocessor, split, cfg)) is not None:
        return ds
    blocks = source.raw_blocks(split, block=_BLOCK, training=training, seed=seed, ctx=ctx)
    ds = preprocess_blocks(blocks.dataset, schema, preprocessor, cfg)
    if training:
        ds = on_service(ds, cfg)
    # A streamed split is cached only when the shuffle buffer would hold it anyway (a small table
    # prepared into shards trains as fast as in memory); a larger one is read again each epoch.
    ds = batch_examples(ds, cfg, training=training, seed=seed, weights=weights, ctx=ctx,
                        examples_here=blocks.examples, smallest_pipeline=blocks.smallest,
                        cache=cfg.cache and (blocks.in_memory or blocks.examples <= cfg.shuffle_buffer),
                        shuffle_limit=blocks.shuffle_limit)
    if reusable:
        _keep(source, preprocessor, split, cfg, ds)
    return ds


def eval_dataset(cfg, schema: FeatureSchema, preprocessor: Preprocessor, data, split: str) -> tf.data.Dataset:
    """The batches of one split to evaluate or predict, in its order: ``(inputs, label)``.

    ``cfg``: the run's config; ``data``: a ``Splits``, frames, or one validated frame (read as ``split``).
    """
    return make_dataset(data, schema, preprocessor, cfg.data, training=False, split=split)


_PREDICT_FUNCTIONS = weakref.WeakKeyDictionary()  # model -> (input spec, its traced inference function)


def predict_batches(model, ds):
    """``model``'s outputs on every batch of ``ds`` (``(inputs, ...)`` elements), concatenated as numpy.

    As ``model.predict``, but traced once per model and input spec: the
    function takes the dataset's batch dimension as unknown, where Keras traces
    its predict step for the full batches and again for the last, shorter one
    (seconds per model on 2 cores; a run scores several models).
    """
    spec = ds.element_spec[0] if isinstance(ds.element_spec, tuple) else ds.element_spec
    kept = _PREDICT_FUNCTIONS.get(model)
    if kept is None or kept[0] != spec:
        ref = weakref.ref(model)  # the function must not keep the model alive
        kept = _PREDICT_FUNCTIONS[model] = (spec, tf.function(
            lambda x: ref()(x, training=False), input_signature=[spec], autograph=False))
    outputs = [kept[1](element[0] if isinstance(element, tuple) else element) for element in ds]
    if not outputs:
        raise ValueError("predict_batches: the dataset holds no batch")
    return tf.nest.map_structure(lambda *parts: np.concatenate([t.numpy() for t in parts]), *outputs)


# Evaluation datasets already built, per data source: {id(source): (preprocessor, {(split, cfg): dataset})}.
# Building one traces the Preprocessor into a tf.data function (seconds per split); a run
# evaluates the same split of the same source several times (validation during the fit, the
# output stage, the metrics), and a dataset can be iterated again. Only the latest
# preprocessor's datasets are kept per source, and a source's entry goes with it.
_EVAL_DATASETS: dict[int, tuple[Preprocessor, dict]] = {}


def _cfg_key(split: str, cfg: DataConfig) -> tuple[str, str]:
    import dataclasses
    import json

    return split, json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str)


def _built(source, preprocessor: Preprocessor, split: str, cfg: DataConfig) -> tf.data.Dataset | None:
    kept = _EVAL_DATASETS.get(id(source))
    if kept is None or kept[0] is not preprocessor:
        return None
    return kept[1].get(_cfg_key(split, cfg))


def _keep(source, preprocessor: Preprocessor, split: str, cfg: DataConfig, ds: tf.data.Dataset) -> None:
    key = id(source)
    kept = _EVAL_DATASETS.get(key)
    if kept is None:
        weakref.finalize(source, _EVAL_DATASETS.pop, key, None)
    if kept is None or kept[0] is not preprocessor:
        kept = _EVAL_DATASETS[key] = (preprocessor, {})
    kept[1][_cfg_key(split, cfg)] = ds


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
    preprocess = traced_preprocessor(preprocessor)
    blocks = blocks.map(lambda raw, y: (preprocess(raw), y), num_parallel_calls=tf.data.AUTOTUNE)
    return blocks.unbatch()


_TRACED_PREPROCESSORS = weakref.WeakKeyDictionary()  # preprocessor -> its call as one tf.function


def traced_preprocessor(preprocessor: Preprocessor):
    """``preprocessor``'s call as a ``tf.function`` kept per preprocessor, so every pipeline of a run
    (training, validation, test, each ensemble member's) reuses one trace of it instead of tracing the
    tokenisation and lookups into each ``map`` again (about 2 s a pipeline on 2 cores)."""
    fn = _TRACED_PREPROCESSORS.get(preprocessor)
    if fn is None:
        ref = weakref.ref(preprocessor)  # the function must not keep the preprocessor alive
        fn = _TRACED_PREPROCESSORS[preprocessor] = tf.function(lambda raw: ref()(raw), reduce_retracing=True,
                                                               autograph=False)
    return fn


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


def make_shard_dataset(prepared, split: str, preprocessor: Preprocessor, cfg: DataConfig, **kwargs):
    """:func:`make_dataset` of one split of a prepared directory (``kwargs``: those of make_dataset)."""
    return make_dataset(PreparedSplits(prepared), prepared.schema, preprocessor, cfg, split=split, **kwargs)


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


def distributed_dataset(strategy: tf.distribute.Strategy, data, schema: FeatureSchema,
                        preprocessor: Preprocessor, cfg: DataConfig, **kwargs):
    """:func:`make_dataset` per input pipeline through ``distribute_datasets_from_function``."""
    def make(**kw):
        return make_dataset(data, schema, preprocessor, cfg, **kw, **kwargs)

    if strategy.num_replicas_in_sync == 1 and not isinstance(
            strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return make()
    return strategy.distribute_datasets_from_function(lambda ctx: make(ctx=ctx))
