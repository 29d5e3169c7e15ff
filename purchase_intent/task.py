"""The fusion model's task: text encoder, preprocessor, model, datasets, fit, predict.

The library behind ``train`` (the command line), ``compare``, ``explain``, the
notebooks and the benchmarks. In the order a run uses it:

* :func:`build` / :func:`build_members`: the text encoder (:func:`load_encoder`),
  the preprocessor adapted on the training split (:func:`adapt_preprocessor`),
  optional behaviour pretraining, and the compiled model(s) (:func:`compile_model`);
* :func:`datasets`: the training and validation ``tf.data`` pipelines;
* :func:`fit`: the wide warm-up, then ``model.fit`` with early stopping on
  validation ROC-AUC (:func:`fit_callbacks`) plus the callbacks the caller
  passes in (checkpoints, a timer, ...);
* :func:`predict` and :func:`calibrate`: probabilities of a split, Platt scaling.

All of it runs under the dtype policy of ``train.mixed_precision``
(:func:`dtype_policy`). Strategies: :mod:`purchase_intent.distribute`.

Example:

>>> from purchase_intent import task  # doctest: +SKIP
>>> pre, model = task.build(cfg, schema, splits)  # doctest: +SKIP
>>> train_ds, val_ds = task.datasets(cfg, schema, pre, splits["train"], splits["validation"])  # doctest: +SKIP
>>> steps = -(-len(splits["train"]) // cfg.data.batch_size)  # doctest: +SKIP
>>> history = task.fit(model, cfg, train_ds, val_ds, steps_per_epoch=steps)  # doctest: +SKIP
>>> p_test = task.predict(model, cfg, schema, pre, splits["test"])  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from purchase_intent.data.source import as_splits

logger = logging.getLogger(__name__)


# -- precision -----------------------------------------------------------
def dtype_policy_name(mixed_precision: str) -> str:
    """The Keras dtype policy of ``train.mixed_precision``.

    Args:
        mixed_precision: str. "auto" (mixed_float16 when a GPU is visible, else
            float32), "off" (float32), "mixed_float16" or "mixed_bfloat16".

    Returns:
        A Keras dtype policy name.
    """
    import tensorflow as tf

    if mixed_precision == "auto":
        return "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    return "float32" if mixed_precision == "off" else mixed_precision


@contextlib.contextmanager
def dtype_policy(mixed_precision: str):
    """The global Keras dtype policy of ``train.mixed_precision`` inside the block; the previous one after.

    Models built inside compute in that policy (variables stay float32); the
    model's logits, output and Platt layer are float32 (``purchase_intent.model.HEAD_DTYPE``),
    so the loss and the export are too. Yields the policy name.
    """
    import keras

    previous = keras.mixed_precision.dtype_policy()
    name = dtype_policy_name(mixed_precision)
    keras.mixed_precision.set_dtype_policy(name)
    try:
        yield name
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


# -- text encoder --------------------------------------------------------
def load_encoder(cfg, schema, train_df):
    """The ``(tokenizer, backbone)`` of ``model.text_encoder``, with ``model.text_trainable_layers`` set.

    With ``model.text_lora_rank > 0`` the backbone is frozen and carries LoRA
    adapters (:func:`purchase_intent.text.enable_lora`), trained with the model.
    The ``tiny`` encoder's vocabulary comes from the training split's texts.
    """
    from purchase_intent.text import enable_lora, load_text_encoder, set_trainable_layers

    texts = [t for n in schema.text for t in train_df[n]]
    texts += [t for n in schema.event_text for seq in train_df[n] for t in seq]
    t0 = time.perf_counter()
    tokenizer, backbone = load_text_encoder(
        cfg.model.text_encoder, texts=texts, tiny_vocab_size=cfg.model.tiny_vocab_size,
        tiny_hidden_dim=cfg.model.tiny_hidden_dim, tiny_num_layers=cfg.model.tiny_num_layers,
        max_sequence_length=max(cfg.data.text_sequence_length, cfg.data.event_text_sequence_length))
    logger.info("Text encoder %r: %d parameters, loaded in %.1f s", cfg.model.text_encoder,
                backbone.count_params(), time.perf_counter() - t0)
    set_trainable_layers(backbone, cfg.model.text_trainable_layers)
    if cfg.model.text_lora_rank > 0:
        adapters = enable_lora(backbone, cfg.model.text_lora_rank, cfg.model.text_lora_alpha)
        logger.info("Text encoder LoRA: rank %d, alpha %g, %d adapter matrices (%d parameters); "
                    "the encoder's own weights frozen", cfg.model.text_lora_rank,
                    cfg.model.text_lora_alpha or cfg.model.text_lora_rank, len(adapters),
                    sum(int(w.numpy().size) for w in backbone.trainable_weights))
    return tokenizer, backbone


def text_cache_dir(cfg, cache_dir=None) -> str:
    """The on-disk text-embedding cache to use: ``cache_dir``, else ``data.text_cache_dir``.

    Empty (no disk cache) for the ``tiny`` encoder: random weights, cheap to
    encode, and test runs stay out of the user's cache.
    """
    if cfg.model.text_encoder == "tiny":
        return ""
    chosen = cfg.data.text_cache_dir if cache_dir is None else cache_dir
    return str(Path(chosen).expanduser()) if chosen else ""


def event_text_tables(cfg, schema, preprocessor, tokenizer, backbone, cache_dir=""):
    """Per per-event text column, the frozen table whose row ``i`` embeds lookup id ``i`` (0, 1: zeros)."""
    import numpy as np

    from purchase_intent.text import cached_text_embeddings

    tables = {}
    for name in schema.event_text:
        vocab = preprocessor.vocabularies[name]
        table = np.zeros((preprocessor.vocabulary_size(name), backbone.hidden_dim), np.float32)
        table[2:] = cached_text_embeddings(tokenizer, backbone, list(vocab),
                                           cfg.data.event_text_sequence_length,
                                           spec=cfg.model.text_encoder, cache_dir=cache_dir,
                                           what=f"{name!r} texts")
        tables[name] = table
    return tables


def cached_scalar_text(cfg, schema, source, preprocessor, tokenizer, backbone, cache_dir=""):
    """A :class:`~purchase_intent.blocks.CachedTextEncoder` standing in for the frozen ``backbone``.

    Holds the encoder's output for each distinct scalar text of every split
    (inputs only, no labels: a frozen encoder is a fixed function of the text),
    keyed by the fingerprint of its token ids as the preprocessor packs them.
    ``source``: the run's :class:`~purchase_intent.data.source.Splits` (a prepared
    directory's shards are streamed for their texts); the same texts give the
    same on-disk cache file either way.
    """
    import numpy as np
    import tensorflow as tf

    from purchase_intent.blocks import CachedTextEncoder, token_fingerprints
    from purchase_intent.text import cached_text_embeddings

    distinct = source.distinct_values(schema.text)
    vectors = cached_text_embeddings(tokenizer, backbone, distinct, cfg.data.text_sequence_length,
                                     spec=cfg.model.text_encoder, cache_dir=cache_dir,
                                     what="scalar texts")
    ids, _ = preprocessor.packer(tokenizer(tf.constant(distinct, dtype=tf.string)))
    keys, first = np.unique(token_fingerprints(ids.numpy()), return_index=True)  # same tokens, one row
    return CachedTextEncoder(keys, vectors[first], name="cached_text_encoder")


def copy_trained_weights(source, target, skip: str = "") -> None:
    """Sets every layer of ``target`` that has weights to those of the same-named layer of ``source``.

    Args:
        source: the fitted model.
        target: the same model built around other text-encoder layers.
        skip: str. The one layer of ``target`` that ``source`` lacks (the backbone).

    Raises:
        ValueError: a layer with weights of either model has no counterpart, or shapes differ.
    """
    weights = {layer.name: layer.get_weights() for layer in source.layers if layer.weights}
    layers = {layer.name: layer for layer in target.layers if layer.weights and layer.name != skip}
    if set(layers) != set(weights):
        raise ValueError(f"Cannot copy the weights of {source.name!r} to {target.name!r}: layers only "
                         f"in the fitted model {sorted(set(weights) - set(layers))}, only in the target "
                         f"{sorted(set(layers) - set(weights))}")
    for name, layer in layers.items():
        layer.set_weights(weights[name])


# -- preprocessor --------------------------------------------------------
def bow_events(cfg) -> int:
    """Events whose texts the bag of words joins (0: no bag of words): the statistics' ``bow_events``."""
    return cfg.data.events_kept() if cfg.model.text_bag_of_words > 0 else 0


def adapt_preprocessor(cfg, schema, source, tokenizer=None):
    """The :class:`Preprocessor` of ``cfg``, adapted on the training split's statistics.

    One path for every source (:meth:`purchase_intent.data.source.Splits.stats`:
    exact in memory, mergeable ones written by prepare for shards). The
    per-event text catalogue is the texts of every split (inputs only, no
    labels): each gets a row in the embedding table.
    """
    from purchase_intent.preprocessing import Preprocessor

    stats = source.stats(bow_events(cfg))
    event_vocab = {name: sorted({t for s in stats.values() for t in s.values[name]}) for name in schema.event_text}
    return Preprocessor.adapt_from_stats(
        schema, stats["train"], max_sequence_length=cfg.data.max_sequence_length,
        history_length=cfg.data.max_history_length,
        text_sequence_length=cfg.data.text_sequence_length,
        numeric_transform=cfg.model.numeric_transform, numeric_bins=cfg.model.numeric_bins,
        bag_of_words=cfg.model.text_bag_of_words, max_vocab_size=cfg.model.max_vocab_size,
        min_frequency=cfg.model.min_item_frequency,
        tokenizer=tokenizer, event_text_vocabulary=event_vocab)


# -- model ---------------------------------------------------------------
def build(cfg, schema, splits, strategy=None, **kwargs):
    """Text encoder, adapted preprocessor and compiled model for one run.

    Scalar text runs through BERT inside the model (unless ``text_cache``);
    per-event text uses a frozen table of embeddings in which each distinct
    text (e.g. each product description) is encoded once.

    Args:
        cfg, schema, splits, strategy: as :func:`build_members`.
        **kwargs: ``text_cache``, ``cache_dir``, ``encoder`` of :func:`build_members`.

    Returns:
        ``(preprocessor, model)``.
    """
    preprocessor, models, _ = build_members(cfg, schema, splits, strategy, members=1, **kwargs)
    return preprocessor, models[0]


def build_members(cfg, schema, splits, strategy=None, members=None, *, text_cache=False,
                  cache_dir=None, encoder=None):
    """As :func:`build`, with ``members`` (default ``train.ensemble``) models of one preprocessor.

    The members differ in their initial weights (drawn one after the other)
    and share the text encoder and the per-event text tables.

    With ``text_cache``, scalar text and a frozen encoder (``model.text_trainable_layers=0``, no LoRA),
    the members to fit hold a :class:`~purchase_intent.blocks.CachedTextEncoder`
    (the encoder's output for each distinct text of all splits, computed once:
    :func:`cached_scalar_text`) in place of the backbone: neither training nor
    scoring the splits runs BERT. ``exportable`` then builds the same models
    around the real backbone and copies the trained weights over, for export
    (raw strings in, texts never seen in training included).

    Args:
        cfg: the run's :class:`~purchase_intent.config.Config`.
        schema: the features.
        splits: the run's :class:`~purchase_intent.data.source.Splits` (in memory or
            prepared shards), or ``{"train", "validation", "test"}`` frames.
        strategy: a ``tf.distribute`` strategy (default: the current one).
        members: int. Models to build (default ``train.ensemble``).
        text_cache: bool. Fit on cached embeddings of a frozen scalar-text encoder.
        cache_dir: directory of the on-disk text-embedding cache (default
            ``data.text_cache_dir``; never for the random ``tiny`` encoder).
        encoder: ``(tokenizer, backbone)`` already loaded by :func:`load_encoder`
            (reused across runs by ``compare``); default: loaded here.

    Returns:
        ``(preprocessor, [model, ...], exportable)``: ``exportable(models)``
        returns the fitted models with the backbone in place of the cached
        embeddings (the models themselves when there is none).
    """
    members = members or cfg.train.ensemble
    import numpy as np
    import tensorflow as tf

    from purchase_intent.model import build_model

    strategy = strategy or tf.distribute.get_strategy()
    source = as_splits(splits, schema)
    train_df = source.frame("train")  # from a prepared directory: its bounded sample
    tokenizer = backbone = None
    if schema.text or schema.event_text:
        with strategy.scope():
            tokenizer, backbone = encoder or load_encoder(cfg, schema, train_df)
    cache_dir = text_cache_dir(cfg, cache_dir)
    preprocessor = adapt_preprocessor(cfg, schema, source, tokenizer)
    tables = event_text_tables(cfg, schema, preprocessor, tokenizer, backbone, cache_dir)
    cached = None
    if text_cache and schema.text and cfg.model.text_frozen():
        with strategy.scope():  # the texts of every split
            cached = cached_scalar_text(cfg, schema, source, preprocessor, tokenizer, backbone, cache_dir)

    positive_rate = source.positive_rate("train")
    # Outside strategy.scope(): pretraining runs on one device (it refuses a MirroredStrategy scope).
    pretrained = pretrain(cfg, schema, preprocessor, train_df, tables)
    steps = steps_per_epoch(cfg, source)

    def make(text_encoder, name):
        return build_model(cfg.model, preprocessor, backbone=text_encoder if schema.text else None,
                           event_text_tables=tables, positive_rate=positive_rate, name=name)

    models = []
    with strategy.scope():
        for i in range(members):
            model = make(cached or backbone, "purchase_intent" if members == 1 else f"purchase_intent_{i}")
            if pretrained is not None:
                from purchase_intent.pretrain import apply_pretrained

                apply_pretrained(model, pretrained.weights)
            compile_model(model, cfg.train, steps_per_epoch=steps)
            models.append(model)
    logger.info("Model: %d parameters (%d trainable)%s%s", model.count_params(),
                sum(int(np.prod(w.shape)) for w in model.trainable_weights),
                f", {members} ensemble members" if members > 1 else "",
                "; scalar text through cached embeddings of the frozen encoder" if cached else "")

    def exportable(fitted):
        if cached is None:
            return fitted
        with strategy.scope():
            twins = [make(backbone, m.name) for m in fitted]
        for twin, m in zip(twins, fitted):
            copy_trained_weights(m, twin, skip=backbone.name)
        return twins

    return preprocessor, models, exportable


def pretrain(cfg, schema, preprocessor, train_df, tables):
    """With ``train.pretrain_epochs > 0``: the behaviour branch pretrained by next-item prediction.

    Only the training split's event sequences are used (no labels; never the
    validation or test inputs or their label windows). Returns the
    :class:`~purchase_intent.pretrain.PretrainResult` (apply it to each model
    with :func:`purchase_intent.pretrain.apply_pretrained`), or None.
    """
    if cfg.train.pretrain_epochs <= 0 or not schema.sequences:
        return None
    from purchase_intent.pretrain import pretrain_behaviour

    result = pretrain_behaviour(cfg.model, preprocessor, train_df, event_text_tables=tables,
                                epochs=cfg.train.pretrain_epochs, seed=cfg.train.seed)
    logger.info("Pretrained the behaviour branch (next item, %d epochs, %.1f s): held-out "
                "recall@10 %.3f (most popular items %.3f), held-out loss per epoch %s",
                cfg.train.pretrain_epochs, result.seconds, result.recall_at_10 or float("nan"),
                result.popularity_recall_at_10 or float("nan"), result.history.get("val_loss"))
    return result


def compile_model(model, train_cfg, steps_per_epoch: int | None = None) -> None:
    """Compiles ``model`` with the optimiser, loss and metrics of ``train_cfg`` (a ``TrainConfig``).

    Adam, or AdamW with ``train.weight_decay > 0``; with ``train.lr_schedule=cosine``
    the learning rate decays to 0 over ``train.epochs`` x ``steps_per_epoch`` steps.
    """
    import keras

    if train_cfg.loss == "focal":
        loss = keras.losses.BinaryFocalCrossentropy(gamma=train_cfg.focal_gamma)
    else:
        loss = keras.losses.BinaryCrossentropy()
    lr = train_cfg.learning_rate
    if train_cfg.lr_schedule == "cosine" and steps_per_epoch:
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=train_cfg.epochs * steps_per_epoch)
    if train_cfg.weight_decay > 0:
        optimizer = keras.optimizers.AdamW(lr, weight_decay=train_cfg.weight_decay)
    else:
        optimizer = keras.optimizers.Adam(lr)
    model.compile(optimizer=optimizer, loss=loss,
                  metrics=[keras.metrics.AUC(name="auc"), keras.metrics.AUC(curve="PR", name="pr_auc")],
                  steps_per_execution=train_cfg.steps_per_execution, jit_compile=train_cfg.jit_compile)
    build_optimizer(model)


def build_optimizer(model) -> None:
    """Creates the optimizer's slot variables of ``model`` now, in the current strategy's scope.

    Keras defers them to the first training step when no strategy was set
    explicitly; created there, they make TensorFlow trace the training step a
    second time (the first trace only lifts the new variables out), which on 2
    CPU cores costs as much as several epochs of a small run.
    """
    model.optimizer.build(model.trainable_variables)


# -- fit -----------------------------------------------------------------
def fit_callbacks(train_cfg) -> list:
    """Early stopping on validation ROC-AUC (best epoch restored) and the learning-rate schedule.

    The callbacks every fit of the fusion model uses (:func:`fit`).
    """
    import keras

    callbacks = [keras.callbacks.EarlyStopping(monitor="val_auc", mode="max",
                                               patience=train_cfg.early_stopping_patience,
                                               restore_best_weights=True)]
    if train_cfg.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_auc", mode="max", factor=0.3,
                                                           patience=1, min_lr=1e-5, verbose=0))
    return callbacks


def warm_up_wide(model, train_cfg, train_ds, val_ds, steps_per_epoch: int, strategy=None) -> list[float]:
    """Fits the wide part of ``model`` alone before the whole model (``train.wide_warmup_epochs``).

    The wide terms as a logistic regression (:func:`purchase_intent.model.wide_part`,
    sharing ``model``'s wide layers and their L2 penalty), Adam at
    ``train.wide_warmup_learning_rate``, early-stopped on validation ROC-AUC
    (best epoch restored). With ``train.wide_warmup_freeze`` the wide layers
    are then frozen and ``model`` is compiled again, so the deep part fits
    what the linear model leaves.

    Returns:
        The warm-up's validation ROC-AUC per epoch (empty when there is none).
    """
    import contextlib

    import keras
    import numpy as np

    from purchase_intent.model import wide_layers, wide_part

    if train_cfg.wide_warmup_epochs <= 0:
        return []
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        wide = wide_part(model)
        if wide is None:
            logger.warning("train.wide_warmup_epochs is ignored: the model has no wide part")
            return []
        wide.compile(optimizer=keras.optimizers.Adam(train_cfg.wide_warmup_learning_rate),
                     loss=keras.losses.BinaryCrossentropy(), metrics=[keras.metrics.AUC(name="auc")])
        build_optimizer(wide)
    history = wide.fit(train_ds, validation_data=val_ds, epochs=train_cfg.wide_warmup_epochs, verbose=0,
                       callbacks=[keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=2,
                                                                restore_best_weights=True)])
    val_auc = [float(v) for v in history.history.get("val_auc", [])]
    logger.info("Wide part alone: best validation ROC-AUC %.4f at epoch %d of %d", max(val_auc),
                int(np.argmax(val_auc)) + 1, len(val_auc))
    if train_cfg.wide_warmup_freeze:
        with scope:
            for layer in wide_layers(model):
                layer.trainable = False
            compile_model(model, train_cfg, steps_per_epoch=steps_per_epoch)
    return val_auc


def steps_per_epoch(cfg, data) -> int:
    """Training steps per epoch of ``data`` (a ``Splits``): its training examples / the global batch."""
    return -(-data.examples("train") // cfg.data.batch_size)


def datasets(cfg, schema, preprocessor, data, *, seed: int | None = None, weights=None, strategy=None):
    """The training and validation pipelines of one fit.

    Args:
        cfg: the run's :class:`~purchase_intent.config.Config`.
        schema: the features.
        preprocessor: the adapted preprocessor.
        data: the run's :class:`~purchase_intent.data.source.Splits`, or
            ``{"train", "validation"}`` frames.
        seed: int. Shuffle seed of the training batches (default ``train.seed``).
        weights: per-class weights (:func:`purchase_intent.pipeline.class_weights`) or None.
        strategy: a ``tf.distribute`` strategy; the training batches are spread over its
            replicas (default: the current strategy).

    Returns:
        ``(train_ds, val_ds)``.
    """
    import tensorflow as tf

    from purchase_intent.pipeline import distributed_dataset, eval_dataset

    data = as_splits(data, schema)
    strategy = strategy or tf.distribute.get_strategy()
    train_ds = distributed_dataset(strategy, data, schema, preprocessor, cfg.data, training=True,
                                   seed=cfg.train.seed if seed is None else seed, weights=weights)
    # Validation batches at the global size; Keras splits each across the replicas,
    # so every replica gets an equal share of the first batch (Keras 3.15 reduces
    # the first batch across replicas to build, which fails on unequal shapes).
    val_ds = eval_dataset(cfg, schema, preprocessor, data, "validation")
    return train_ds, val_ds


def fit(model, cfg, train_ds, val_ds, *, steps_per_epoch: int, callbacks=(), strategy=None,
        epochs: int | None = None, verbose: int | str = 0) -> dict[str, list[float]]:
    """Fits ``model`` as every run of the fusion model does.

    Under ``MultiWorkerMirroredStrategy`` the model is first patched
    (:func:`purchase_intent.distribute.adapt_for_multi_worker`); then the wide
    part is warmed up (:func:`warm_up_wide`, ``train.wide_warmup_epochs``); then
    ``model.fit`` runs with early stopping on validation ROC-AUC, best epoch
    restored (:func:`fit_callbacks`), followed by ``callbacks``.

    Args:
        model: a compiled model of :func:`build_members`.
        cfg: the run's config.
        train_ds, val_ds: the pipelines of :func:`datasets`.
        steps_per_epoch: int. Training steps per epoch (the learning-rate schedule after the warm-up).
        callbacks: more Keras callbacks (checkpoints, a timer, ...), run after the early stopping.
        strategy: the strategy the model was built under (default: none given).
        epochs: int. Maximum epochs (default ``train.epochs``).
        verbose: the ``verbose`` of ``model.fit``.

    Returns:
        The history: metric name -> one float per epoch run.
    """
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        from purchase_intent.distribute import adapt_for_multi_worker

        adapt_for_multi_worker(model, strategy, val_ds)
    warm_up_wide(model, cfg.train, train_ds, val_ds, steps_per_epoch, strategy)
    history = model.fit(train_ds, validation_data=val_ds, epochs=epochs or cfg.train.epochs,
                        callbacks=fit_callbacks(cfg.train) + list(callbacks), verbose=verbose)
    return {k: [float(v) for v in vs] for k, vs in history.history.items()}


class EpochTimer:
    """Keras callback factory timing the training part of each epoch (validation excluded)."""

    @staticmethod
    def make():
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.train_seconds = []
                self._t0 = None

            def on_epoch_begin(self, epoch, logs=None):
                self._t0 = time.perf_counter()

            def on_test_begin(self, logs=None):
                if self._t0 is not None:
                    self.train_seconds.append(time.perf_counter() - self._t0)
                    self._t0 = None

            def on_epoch_end(self, epoch, logs=None):
                if self._t0 is not None:  # no validation this epoch
                    self.train_seconds.append(time.perf_counter() - self._t0)
                    self._t0 = None

        return _Timer()


# -- predict -------------------------------------------------------------
def predict(model, cfg, schema, preprocessor, df, split: str = "test"):
    """The model's probabilities of ``split`` of ``df``, one float per example, in its order.

    ``df``: a ``Splits`` (in the order of its ``columns(split)``), frames, or one
    validated frame (its rows).
    """
    from purchase_intent.pipeline import eval_dataset, predict_batches

    return predict_batches(model, eval_dataset(cfg, schema, preprocessor, df, split)).reshape(-1)


def weights_digest(model) -> str:
    """SHA-256 of all model weights (the same on every worker after synchronous training)."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


# -- the task object -----------------------------------------------------
class PurchaseIntentTask:
    """One fusion model and its data, from build to the exportable model (as Model Garden's ``RankingTask``).

    Holds the data source (:class:`~purchase_intent.data.source.Splits`: frames in
    memory or prepared shards, the same code either way), the adapted
    preprocessor, the ``train.ensemble`` networks, their fit and the output stage
    (:mod:`purchase_intent.output_stage`). ``train``, ``compare``, ``explain`` and
    the benchmarks all run it, so the product, its ablations and its
    explanations are the same model.

    Args:
        cfg: the run's :class:`~purchase_intent.config.Config`.
        data: a ``Splits``, or ``{"train", "validation", "test"}`` frames (then also ``schema``).
        schema: the features of frames.
        strategy: a ``tf.distribute`` strategy (default: the current one).
        members: networks to fit (default ``train.ensemble``).
        text_cache, cache_dir, encoder: those of :func:`build_members`.

    Example:

    >>> t = PurchaseIntentTask(cfg, splits, schema)  # doctest: +SKIP
    >>> t.fit()  # doctest: +SKIP
    >>> t.fit_output()  # doctest: +SKIP
    >>> p_test = t.predict("test")  # doctest: +SKIP
    >>> export_model(t.exportable_model(), t.preprocessor, ...)  # doctest: +SKIP
    """

    def __init__(self, cfg, data, schema=None, *, strategy=None, members=None, text_cache=True,
                 cache_dir=None, encoder=None):
        import tensorflow as tf

        from purchase_intent.pipeline import count_class_weights

        self.cfg = cfg
        self.data = as_splits(data, schema)
        self.schema = self.data.schema
        self.strategy = strategy or tf.distribute.get_strategy()
        self.preprocessor, self.members, self._exportable = build_members(
            cfg, self.schema, self.data, self.strategy, members, text_cache=text_cache, cache_dir=cache_dir,
            encoder=encoder)
        self.class_weights = count_class_weights(*self.data.label_counts("train"), cfg.train.class_weight)
        if self.class_weights:
            logger.info("Class weights (imbalanced labels): %s", self.class_weights)
        self.train_stats = self.data.stats(bow_events(cfg))["train"]  # what the preprocessor adapted on
        self.histories: list[dict] = []
        self.calibration: dict | None = None  # the output stage's description, once fitted
        self.trees = None
        self.scorer = None  # the fitted network(s) followed by the output stage

    def fit(self, callbacks=lambda member: [], *, epochs: int | None = None, verbose: int | str = 0) -> list[dict]:
        """Fits every member (shuffle seed ``train.seed + i``); ``callbacks(i)``: member ``i``'s extra callbacks."""
        steps = steps_per_epoch(self.cfg, self.data)
        for i, member in enumerate(self.members):
            train_ds, val_ds = datasets(self.cfg, self.schema, self.preprocessor, self.data,
                                        seed=self.cfg.train.seed + i, weights=self.class_weights,
                                        strategy=self.strategy)
            self.histories.append(fit(member, self.cfg, train_ds, val_ds, steps_per_epoch=steps,
                                      callbacks=callbacks(i), strategy=self.strategy, epochs=epochs,
                                      verbose=verbose))
        return self.histories

    def network(self, members=None):
        """The members' mean probability as one model (the member itself when there is one)."""
        from purchase_intent.model import average_models

        members = members or self.members
        return members[0] if len(members) == 1 else average_models(members, self.preprocessor)

    def labels(self, split: str):
        """The labels of every example of ``split``, in the order of :meth:`predict`."""
        return self.data.columns(split, ids=False)[self.schema.label].to_numpy()

    def fit_output(self) -> dict:
        """Fits the output stage (trees and stacking, or Platt) on the fitted network; returns its description."""
        from purchase_intent.output_stage import fit_output

        network = self.network()
        p_val = predict(network, self.cfg, self.schema, self.preprocessor, self.data, "validation")
        self.scorer, self.calibration, self.trees = fit_output(
            network, self.cfg, self.schema, self.preprocessor, self.data, self.labels("validation"), p_val)
        return self.calibration

    def predict(self, split: str = "test", data=None, model=None):
        """Probabilities of ``split`` of ``data`` (default: the task's) by ``model`` (default: the final one)."""
        model = model or self.scorer or self.network()
        return predict(model, self.cfg, self.schema, self.preprocessor,
                       self.data if data is None else data, split)

    def describe(self) -> list[str]:
        """Two lines: the adapted preprocessor and the model's size; the fit's strategy, batch and dtype policy."""
        import keras
        import numpy as np

        net, cfg, strategy = self.members[0], self.cfg, self.strategy
        trainable = sum(int(np.prod(w.shape)) for w in net.trainable_weights)
        members = f", {len(self.members)} ensemble members" if len(self.members) > 1 else ""
        return [f"Preprocessor adapted on {self.data.examples('train'):,} training examples; model: "
                f"{net.count_params():,} parameters ({trainable:,} trainable){members}",
                f"Training: up to {cfg.train.epochs} epochs; {type(strategy).__name__.lstrip('_')} with "
                f"{strategy.num_replicas_in_sync} replica(s); global batch size {cfg.data.batch_size}; "
                f"dtype policy {keras.mixed_precision.dtype_policy().name}"]

    def exportable_model(self):
        """The final model around the real text encoder (raw strings in), for export.

        The fitted weights copied onto models built around the backbone when
        training ran on cached text embeddings; the same output stage.
        """
        from purchase_intent.output_stage import apply_calibration

        served = self._exportable(self.members)
        if served is self.members:
            return self.scorer or self.network()
        network = self.network(served)
        if self.calibration is None:
            return network
        return apply_calibration(network, self.calibration, self.trees, self.preprocessor)
