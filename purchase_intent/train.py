"""Train, evaluate and export: ``python -m purchase_intent.train``.

Reads top to bottom: config -> strategy -> data -> text encoder ->
preprocessor -> model -> fit -> evaluation beside baselines -> export.
With no arguments it trains the default model on the built-in Online Retail
task (MiniLM text branch included) and exports it for TF Serving.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path

from purchase_intent import cli, contract

logger = logging.getLogger("purchase_intent.train")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m purchase_intent.train",
        description="Train the purchase-intent fusion model, evaluate it beside two baselines, "
                    "and export a SavedModel for TF Serving.",
        epilog="Every config key, its default and meaning: --help-config. Input errors print one "
               "line 'error: ...' and exit with status 2 (--debug: the traceback).",
        formatter_class=cli.HelpFormatter)
    p.add_argument("--preset", default="default", help="named configuration: default or tiny")
    p.add_argument("--data", default=None,
                   help="online_retail (built in), synthetic, or a CSV/Parquet path "
                        "(then also --set data.schema=SCHEMA.json); default: the preset's")
    p.add_argument("--config", default=None, help="JSON/YAML file of config sections")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set model.lstm_units=32 (repeatable; "
                        "every key: --help-config)")
    p.add_argument("--output-dir", default=None,
                   help="run directory (default runs/<timestamp>); rerunning with the same "
                        "directory resumes from its last backup")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: the preset's)")
    p.add_argument("--strategy", default=None, choices=["auto", "default", "mirrored", "multi_worker"],
                   help="tf.distribute strategy; auto = mirrored when more than one GPU is visible")
    p.add_argument("--cpu-replicas", type=int, default=None,
                   help="split the CPU into N logical devices (exercise MirroredStrategy without GPUs)")
    p.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
    p.add_argument("--hash-ids", action="store_true",
                   help="replace customer ids by a SHA-256 pseudonym at ingestion (data.hash_ids=true)")
    cli.add_config_flags(p)
    cli.add_common_flags(p)
    return p.parse_args(argv)


setup_logging = cli.setup_logging  # benchmarks and notebooks import it from here


def configure_cpu_replicas(n: int) -> None:
    """Splits the first CPU into ``n`` logical devices; must run before TF initialises."""
    import tensorflow as tf

    if n <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)])


def make_strategy(name: str, cpu_replicas: int = 0):
    """Returns the tf.distribute strategy named ``name`` ("auto" picks for the hardware)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 or cpu_replicas > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = None if gpus else [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief() -> bool:
    """True unless ``TF_CONFIG`` names this process a non-chief worker.

    The chief is task ``chief``, or ``worker`` 0 when the cluster has no ``chief``
    task (the convention of ``MultiWorkerMirroredStrategy``).
    """
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = tf_config.get("task") or {}
    task_type, index = task.get("type", "worker"), int(task.get("index", 0))
    if task_type == "chief":
        return True
    return task_type == "worker" and index == 0 and "chief" not in tf_config.get("cluster", {})


def worker_dir(run_dir: Path) -> Path:
    """Where this process writes: ``run_dir`` on the chief, else a temporary directory.

    Every worker runs the same callbacks and export (they may use collectives),
    but only the chief's files are kept; a non-chief's directory is removed at exit.
    """
    if is_chief():
        return run_dir
    import atexit
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="purchase_intent-worker-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return tmp


def weights_digest(model) -> str:
    """SHA-256 of all model weights (the same on every worker after synchronous training)."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def adapt_for_multi_worker(model, strategy, dataset) -> None:
    """Works around two Keras 3.15 gaps with ``MultiWorkerMirroredStrategy`` (>1 worker).

    ``fit``/``evaluate`` build the model by all-reducing the first distributed
    batch, which fails for dict inputs (keras-team/keras#20329): build from one
    local batch instead and skip that step. They also all-reduce the step's
    scalar logs with ``axis=0``, which fails on rank 0: return them as ``[1]``.
    """
    import tensorflow as tf

    with strategy.scope():
        model._symbolic_build(data_batch=next(iter(dataset)))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    for name in ("train_step", "test_step"):
        step = getattr(model, name)
        setattr(model, name, lambda data, step=step: {
            k: tf.reshape(v, [1]) for k, v in step(data).items()})


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


STEP_DELAY_ENV = "PURCHASE_INTENT_TEST_STEP_DELAY_MS"


def _backup_epoch(backup_dir: Path) -> int | None:
    """Epochs completed according to a ``BackupAndRestore`` folder, or None if there is none."""
    meta = backup_dir / "training_metadata.json"
    if not meta.exists():
        return None
    try:
        return int(json.loads(meta.read_text())["epoch"])
    except (ValueError, KeyError, OSError):
        return None


def build(cfg, schema, splits, strategy=None):
    """Text encoder, adapted preprocessor and compiled model for one run.

    Scalar text runs through BERT inside the model; per-event text uses a
    frozen table of embeddings in which each distinct text (e.g. each product
    description) is encoded once.

    Returns:
        ``(preprocessor, model)``.
    """
    preprocessor, models, _ = build_members(cfg, schema, splits, strategy, members=1)
    return preprocessor, models[0]


def build_members(cfg, schema, splits, strategy=None, members=None, *, text_cache=False,
                  cache_dir=None, encoder=None, prepared=None):
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
        splits: ``{"train", "validation", "test"}`` frames.
        strategy: a ``tf.distribute`` strategy (default: the current one).
        members: int. Models to build (default ``train.ensemble``).
        text_cache: bool. Fit on cached embeddings of a frozen scalar-text encoder.
        cache_dir: directory of the on-disk text-embedding cache (default
            ``data.text_cache_dir``; never for the random ``tiny`` encoder).
        encoder: ``(tokenizer, backbone)`` already loaded by :func:`load_encoder`
            (reused across runs by ``compare``); default: loaded here.
        prepared: a :class:`~purchase_intent.data.prepared.Prepared` directory
            whose statistics the preprocessor adapts on (``splits["train"]`` is
            then only a sample of its training split; no text cache).

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
    train_df = splits["train"]
    tokenizer = backbone = None
    if schema.text or schema.event_text:
        with strategy.scope():
            tokenizer, backbone = encoder or load_encoder(cfg, schema, train_df)
    cache_dir = text_cache_dir(cfg, cache_dir)
    preprocessor = adapt_preprocessor(cfg, schema, splits, tokenizer, prepared=prepared)
    tables = event_text_tables(cfg, schema, preprocessor, tokenizer, backbone, cache_dir)
    cached = None
    if text_cache and schema.text and cfg.model.text_frozen() and prepared is None:
        with strategy.scope():
            cached = cached_scalar_text(cfg, schema, splits, preprocessor, tokenizer, backbone, cache_dir)

    positive_rate = (prepared.manifest["splits"]["train"]["label_rate"] if prepared
                     else float(train_df[schema.label].mean()))
    # Outside strategy.scope(): pretraining runs on one device (it refuses a MirroredStrategy scope).
    pretrained = pretrain(cfg, schema, preprocessor, train_df, tables)
    steps = -(-(prepared.examples("train") if prepared else len(train_df)) // cfg.data.batch_size)

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


def cached_scalar_text(cfg, schema, splits, preprocessor, tokenizer, backbone, cache_dir=""):
    """A :class:`~purchase_intent.blocks.CachedTextEncoder` standing in for the frozen ``backbone``.

    Holds the encoder's output for each distinct scalar text of every split
    (inputs only, no labels: a frozen encoder is a fixed function of the text),
    keyed by the fingerprint of its token ids as the preprocessor packs them.
    """
    import numpy as np
    import tensorflow as tf

    from purchase_intent.blocks import CachedTextEncoder, token_fingerprints
    from purchase_intent.text import cached_text_embeddings

    distinct = sorted({str(t) for df in splits.values() for n in schema.text for t in df[n]})
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


def adapt_preprocessor(cfg, schema, splits, tokenizer=None, prepared=None):
    """The :class:`Preprocessor` of ``cfg``, adapted on the training split.

    The per-event text catalogue is the texts of every split (inputs only, no
    labels): each gets a row in the embedding table. With ``prepared``, both
    come from its statistics (:meth:`Preprocessor.adapt_from_stats`).
    """
    from purchase_intent.preprocessing import Preprocessor

    if prepared is not None:
        stats = prepared.stats()  # counts events as the model reads them (stats.SplitStats.of_frame)
        event_vocab = {name: sorted({t for s in stats.values() for t in s.values[name]})
                       for name in schema.event_text}
        adapt, train = Preprocessor.adapt_from_stats, stats["train"]
    else:
        events = ([contract.frame_model_events(df, schema.sequence_like) for df in splits.values()]
                  if schema.event_text else [])
        event_vocab = {name: sorted({t for split in events for seq in split[name] for t in seq})
                       for name in schema.event_text}
        adapt, train = Preprocessor.adapt, splits["train"]
    return adapt(
        schema, train, max_sequence_length=cfg.data.max_sequence_length,
        history_length=cfg.data.max_history_length,
        text_sequence_length=cfg.data.text_sequence_length,
        numeric_transform=cfg.model.numeric_transform, numeric_bins=cfg.model.numeric_bins,
        bag_of_words=cfg.model.text_bag_of_words, max_vocab_size=cfg.model.max_vocab_size,
        min_frequency=cfg.model.min_item_frequency,
        tokenizer=tokenizer, event_text_vocabulary=event_vocab)


PREPARED_TRAIN_SAMPLE = 50_000  # training examples read into a frame from a prepared directory


def prepared_splits(prepared):
    """The frames a run from a prepared directory keeps: validation and test, and a training sample.

    The training split itself is streamed; its first ``PREPARED_TRAIN_SAMPLE``
    examples fit the baselines and the tiny encoder's vocabulary (and the
    behaviour pretraining, when asked for).
    """
    from purchase_intent.data.prepared import read_frame

    splits = {"train": read_frame(prepared, "train", PREPARED_TRAIN_SAMPLE),
              "validation": read_frame(prepared, "validation"), "test": read_frame(prepared, "test")}
    if prepared.examples("train") > len(splits["train"]):
        logger.info("Prepared data %s: training split streamed (%d examples); the baselines are fitted "
                    "on its first %d", prepared.root, prepared.examples("train"), len(splits["train"]))
    return splits


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


def fit_callbacks(train_cfg) -> list:
    """Early stopping on validation ROC-AUC (best epoch restored) and the learning-rate schedule.

    The callbacks every fit of the fusion model uses (``train``, ``compare``).
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


def calibrate(model, train_cfg, y_val, p_val):
    """The model whose output is recalibrated on validation (``train.calibration``), and the fit.

    Returns:
        ``(model, info)``: with ``train.calibration=platt``, ``model`` followed
        by a Platt layer fitted on ``(y_val, p_val)`` and ``info`` =
        ``{"method": "platt", "a": ..., "b": ...}``; otherwise ``model`` unchanged.
        ``apply_calibration(other, info)`` puts the same layer on another model.
    """
    from purchase_intent.calibration import fit_platt

    if train_cfg.calibration != "platt":
        return model, {"method": "none"}
    a, b = fit_platt(y_val, p_val)
    logger.info("Calibration (Platt, fitted on validation): p' = sigmoid(%.3f * logit(p) + %.3f)", a, b)
    info = {"method": "platt", "a": a, "b": b}
    return apply_calibration(model, info), info


def apply_calibration(model, info: dict):
    """``model`` followed by the calibration ``info`` of :func:`calibrate` (unchanged for "none")."""
    from purchase_intent.calibration import calibrated_model

    return calibrated_model(model, info["a"], info["b"]) if info["method"] == "platt" else model


def config_overrides(args) -> list[str]:
    """The ``--set`` overrides plus the shortcut flags a command has (``--data``, ``--epochs``, ...)."""
    overrides = list(args.overrides)
    for flag, key in (("data", "data.name"), ("epochs", "train.epochs"), ("strategy", "train.strategy"),
                      ("cpu_replicas", "train.cpu_replicas")):
        value = getattr(args, flag, None)
        if value is not None and value != "":
            overrides.append(f"{key}={value}")
    return overrides


FAILED_FILE = "FAILED.txt"
MIN_VALIDATION_POSITIVES = 20  # fewer: early stopping and the threshold rest on a handful of buyers


def main(argv: list[str] | None = None) -> dict:
    """Runs one training job; returns the metrics dict written to ``metrics.json``.

    The config and the data are checked before TensorFlow is imported, so
    input errors come back in seconds; a run that fails later marks its
    folder (:func:`mark_failed`).
    """
    args = parse_args(argv)
    setup_logging()
    from purchase_intent.config import get_config

    overrides = config_overrides(args)
    if args.no_export:
        overrides.append("export.enabled=false")
    if args.hash_ids:
        overrides.append("data.hash_ids=true")
    cfg = get_config(args.preset, args.config, overrides)
    from purchase_intent.data import load_splits  # pandas: after the config is known to be valid
    from purchase_intent.data.prepared import Prepared

    # In memory, or streamed from a prepared directory (README "Your data at scale").
    prepared = Prepared.load(cfg.data.name) if Prepared.is_prepared(cfg.data.name) else None
    if prepared:
        schema, splits = prepared.schema, prepared_splits(prepared)
    else:
        schema, splits = load_splits(cfg.data, seed=cfg.train.seed)
    warn_few_positives(splits["validation"][schema.label].to_numpy(), cfg.train)

    run_dir = Path(args.output_dir or Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    if cfg.train.strategy == "multi_worker":
        run_dir = worker_dir(run_dir)  # only the chief writes the run directory
    if run_dir.exists() and not run_dir.is_dir():
        raise cli.UserError(f"--output-dir {run_dir} is a file, not a folder")
    created = not run_dir.exists()
    try:
        configure_cpu_replicas(cfg.train.cpu_replicas)
        with dtype_policy(cfg.train.mixed_precision):
            return run(args, cfg, run_dir, schema, splits, prepared)
    except BaseException as err:
        mark_failed(run_dir, err, created)
        raise


def warn_few_positives(y_val, train_cfg) -> None:
    """Warns when the validation split has too few positives for early stopping to mean much."""
    positives = int(sum(y_val))
    if positives < MIN_VALIDATION_POSITIVES:
        logger.warning("The validation split has only %d positive example(s) (of %d): early stopping "
                       "(patience %d) and the decision threshold rest on them, so the kept epoch is "
                       "largely chance. Give it more (--set data.validation_fraction=0.25, or more rows "
                       "labelled validation in data.split_column).", positives, len(y_val),
                       train_cfg.early_stopping_patience)


def mark_failed(run_dir: Path, err: BaseException, created: bool = True) -> None:
    """Marks the folder of a failed run: removed if it holds only ``config.json``, else ``FAILED.txt``.

    A folder that existed before the run (``created`` False) is never removed.

    ``FAILED.txt`` holds the error; a rerun with the same ``--output-dir``
    resumes from the backup and removes it.
    """
    import shutil
    import traceback

    if not run_dir.is_dir():
        return
    names = {p.name for p in run_dir.iterdir()}
    if created and names <= {"config.json"}:
        shutil.rmtree(run_dir, ignore_errors=True)
        logger.error("Training failed before it wrote anything: removed %s", run_dir)
        return
    what = "interrupted" if isinstance(err, KeyboardInterrupt) else f"{type(err).__name__}: {err}"
    (run_dir / FAILED_FILE).write_text(
        f"This run failed: {what}\n{time.strftime('%Y-%m-%d %H:%M:%S')}\n\n"
        + "".join(traceback.format_exception(err)))
    logger.error("Training failed; the run folder %s is marked with %s", run_dir, FAILED_FILE)


def run(args: argparse.Namespace, cfg, run_dir: Path, schema, splits, prepared=None) -> dict:
    """The training job of :func:`main` for a resolved config and loaded data, under its dtype policy.

    ``prepared``: a :class:`~purchase_intent.data.prepared.Prepared` directory whose training split
    is streamed (``splits["train"]`` is then a sample of it), or None.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from purchase_intent import evaluate
    from purchase_intent.export import export_model, load_serving_fn
    from purchase_intent.model import average_models
    from purchase_intent.pipeline import class_weights, distributed_dataset, make_dataset
    from purchase_intent.preprocessing import raw_batch

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / FAILED_FILE).unlink(missing_ok=True)
    cfg.save(run_dir / "config.json")
    logger.info("Run directory: %s", run_dir.resolve())
    logger.info("Resolved config: %s", json.dumps(cfg.to_dict()))
    keras.utils.set_random_seed(cfg.train.seed)
    strategy = make_strategy(cfg.train.strategy, cfg.train.cpu_replicas)
    logger.info("Strategy %s with %d replica(s); global batch size %d; dtype policy %s",
                type(strategy).__name__, strategy.num_replicas_in_sync, cfg.data.batch_size,
                keras.mixed_precision.dtype_policy().name)

    # Data (loaded and checked by main; in memory before TensorFlow started, or a prepared directory).
    schema.save(run_dir / "schema.json")
    train_df, val_df, test_df = splits["train"], splits["validation"], splits["test"]
    train_data = prepared or train_df
    n_train = prepared.examples("train") if prepared else len(train_df)

    preprocessor, members, exportable = build_members(cfg, schema, splits, strategy, text_cache=True,
                                                      prepared=prepared)
    if prepared:
        positives = prepared.manifest["splits"]["train"]["positives"]
        labels = np.repeat(np.array([1, 0], np.int8), [positives, n_train - positives])
    else:
        labels = train_df[schema.label].to_numpy()

    # Input pipelines.
    weights = class_weights(labels, cfg.train.class_weight)
    if weights:
        logger.info("Class weights (imbalanced labels): %s", weights)
    # Validation batches at the global size; Keras splits each across the replicas,
    # so every replica gets an equal share of the first batch (Keras 3.15 reduces
    # the first batch across replicas to build, which fails on unequal shapes).
    val_ds = make_dataset(val_df, schema, preprocessor, cfg.data, training=False)

    # Fit: each ensemble member with its own shuffle seed and files (member 0 in the run directory).
    timer = EpochTimer.make()
    histories, resumed_from = [], None
    t0 = time.perf_counter()
    for i, member in enumerate(members):
        member_dir = run_dir if i == 0 else run_dir / f"member_{i}"
        train_ds = distributed_dataset(strategy, train_data, schema, preprocessor, cfg.data,
                                       training=True, seed=cfg.train.seed + i, weights=weights)
        callbacks = fit_callbacks(cfg.train) + [
            keras.callbacks.ModelCheckpoint(str(member_dir / "best.weights.h5"), monitor="val_auc",
                                            mode="max", save_best_only=True, save_weights_only=True),
            # double_checkpoint: a kill during a save leaves the previous backup usable.
            keras.callbacks.BackupAndRestore(str(member_dir / "backup"), double_checkpoint=True),
            keras.callbacks.TensorBoard(str(member_dir / "tensorboard"), profile_batch=0),
            timer,
        ]
        backup_epoch = _backup_epoch(member_dir / "backup")
        if backup_epoch is not None:
            resumed_from = backup_epoch if resumed_from is None else resumed_from
            logger.info("Resuming from the backup in %s: %d epoch(s) already done",
                        member_dir / "backup", backup_epoch)
        if os.environ.get(STEP_DELAY_ENV):  # test hook: slow steps so a test can kill mid-epoch
            delay = float(os.environ[STEP_DELAY_ENV]) / 1000
            callbacks.append(keras.callbacks.LambdaCallback(
                on_train_batch_end=lambda batch, logs: time.sleep(delay)))
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            adapt_for_multi_worker(member, strategy, val_ds)
        warm_up_wide(member, cfg.train, train_ds, val_ds, -(-n_train // cfg.data.batch_size), strategy)
        history = member.fit(train_ds, validation_data=val_ds, epochs=cfg.train.epochs,
                             callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 2)
        histories.append({k: [float(v) for v in vs] for k, vs in history.history.items()})
    fit_seconds = time.perf_counter() - t0

    def one_model(ms):
        return ms[0] if len(ms) == 1 else average_models(ms, preprocessor)

    # Scored as fitted (a frozen encoder's texts of every split are in the cache: BERT does not run
    # again here); exported around the real text encoder (raw strings in), checked against the scores.
    scorer = one_model(members)
    served = exportable(members)
    model = scorer if served is members else one_model(served)
    hist = histories[0]
    (run_dir / "history.json").write_text(json.dumps(hist, indent=2))
    logger.info("Train history: %s", histories if len(histories) > 1 else hist)
    weights_sha256 = weights_digest(model)
    logger.info("Final weights sha256: %s", weights_sha256)
    epoch_s = float(np.median(timer.train_seconds)) if timer.train_seconds else float("nan")
    throughput = n_train / epoch_s if timer.train_seconds else float("nan")
    logger.info("Training: %.1f s in fit, median %.2f s per epoch (training part), %.0f examples/s",
                fit_seconds, epoch_s, throughput)

    # Evaluation beside the baselines on the same split.
    def predict(df):
        return scorer.predict(make_dataset(df, schema, preprocessor, cfg.data, training=False),
                              verbose=0).reshape(-1)

    same = model is scorer
    scorer, calibration = calibrate(scorer, cfg.train, val_df[schema.label].to_numpy(), predict(val_df))
    model = scorer if same else apply_calibration(model, calibration)
    p_val = {"purchase_intent": predict(val_df)}
    p_test = {"purchase_intent": predict(test_df)}
    # Fails soft: a baseline that raises is logged and left out, the trained model is kept.
    baseline_probs, skipped_baselines = evaluate.baseline_predictions(splits, schema, seed=cfg.train.seed)
    p_val.update(baseline_probs["validation"])
    p_test.update(baseline_probs["test"])
    y_val = val_df[schema.label].to_numpy()
    y_test = test_df[schema.label].to_numpy()
    results = evaluate.evaluate_all(y_val, p_val, y_test, p_test)
    table = evaluate.format_table(results)
    for plot, file_name in ((evaluate.plot_calibration, "calibration.png"),
                            (evaluate.plot_curves, "curves.png")):
        try:
            plot(y_test, p_test, run_dir / file_name)
        except Exception as err:  # a figure is not worth the trained model
            logger.warning("Figure %s skipped: %s: %s", file_name, type(err).__name__, err)
    metrics = {
        "test": results,
        "skipped_baselines": skipped_baselines,
        "training": {"examples": n_train, "epochs_run": len(hist.get("loss", [])),
                     "resumed_from_epoch": resumed_from,
                     "fit_seconds": fit_seconds, "median_epoch_seconds": epoch_s,
                     "examples_per_second": throughput, "calibration": calibration,
                     "ensemble_members": len(members),
                     "best_epochs": [int(np.argmax(h["val_auc"])) + 1 for h in histories if h.get("val_auc")],
                     "replicas": strategy.num_replicas_in_sync, "weights_sha256": weights_sha256,
                     "dtype_policy": keras.mixed_precision.dtype_policy().name},
        "splits": ({k: {"examples": prepared.examples(k), "positive_rate": v["label_rate"]}
                    for k, v in prepared.manifest["splits"].items()} if prepared else
                   {k: {"examples": len(v), "positive_rate": float(v[schema.label].mean())}
                    for k, v in splits.items()}),
    }
    from purchase_intent import report  # figures + report.md/html, rebuildable without the model

    # Whom to contact: top 5-50 % by probability -> share of buyers reached, precision, lift.
    metrics["targeting"] = report.targeting_summary(y_test, p_test, "purchase_intent",
                                                    results["purchase_intent"]["threshold"])
    metrics["warnings"] = report.split_warnings(metrics["splits"])
    for warning in metrics["warnings"]:
        logger.warning("%s", warning)
    id_columns = [c for c in schema.id if c in test_df.columns]
    # Written before the export: the predictions of a trained model are never lost to a later step.
    report.save_predictions(run_dir / report.PREDICTIONS_FILE, y_test, p_test,
                            ids=test_df[id_columns] if id_columns else None,
                            threshold=results["purchase_intent"]["threshold"], model="purchase_intent")
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    (run_dir / "metrics.txt").write_text(table + "\n")
    print(f"\nTest metrics ({cfg.data.name}, threshold chosen on validation):\n{table}\n", flush=True)

    # Export.
    if cfg.export.enabled:
        threshold = results["purchase_intent"]["threshold"]
        version_dir = export_model(
            model, preprocessor, cfg.export.base_dir or run_dir / "export", cfg.export.model_name,
            cfg.export.version,
            extra_assets={"schema.json": schema.to_dict(), "threshold.json": {"threshold": threshold},
                          "metrics.json": metrics, "config.json": cfg.to_dict()},
            warmup_examples=val_df.head(64))
        sample = test_df.head(64)
        served = load_serving_fn(version_dir)(**raw_batch(sample, schema))["purchase_probability"]
        diff = float(np.max(np.abs(served.numpy() - p_test["purchase_intent"][:len(sample)])))
        logger.info("Export check: max |served - in-memory| = %.2e over %d test examples", diff, len(sample))
        metrics["export"] = {"path": str(version_dir), "max_abs_diff": diff}
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
        print(f"SavedModel: {version_dir}\nRun directory: {run_dir}", flush=True)
    logger.info("Report: %s", report.build_report(run_dir))
    print(report.run_summary(run_dir), flush=True)
    return metrics


if __name__ == "__main__":
    sys.exit(cli.run(main))
