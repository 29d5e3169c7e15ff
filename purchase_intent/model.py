"""The fusion model: text, behaviour-sequence and numeric/categorical branches.

Inputs are the outputs of :class:`purchase_intent.preprocessing.Preprocessor`
(one ``keras.Input`` per key, same name); the output is the purchase
probability ``[batch, 1]``.
"""

from __future__ import annotations

import logging
import math

import keras
import numpy as np
from keras import ops

from purchase_intent.blocks import (AttentionPool, BagLinear, BehaviourCNN, BehaviourLSTM,
                                   BehaviourTransformer, CrossIds, IdDropout, MaskedMeanPool,
                                   SequenceStats)
from purchase_intent.config import ModelConfig
from purchase_intent.preprocessing import Preprocessor

logger = logging.getLogger(__name__)


SMALL_VOCABULARY = 32  # sequences with at most this many ids (event types) also enter as value counts
# The logits, their sum and the output probability: float32 under a mixed-precision policy too
# (train.mixed_precision), so the loss and the export see float32.
HEAD_DTYPE = "float32"


def event_steps(cfg: ModelConfig, preprocessor: Preprocessor, inputs: dict,
                event_text_tables: dict[str, np.ndarray] | None = None):
    """The per-event vectors of the behaviour sequence, ``[batch, events, dim]``.

    Each sequence column's ids go through item-id dropout (training only) and
    an embedding ``<name>_embedding``; each per-event text column looks up its
    frozen text-embedding table and a projection ``<name>_projection``; the
    per-event vectors are concatenated. Shared by the fusion model and the
    behaviour pretraining (:mod:`purchase_intent.pretrain`), so both build the
    same layers under the same names.

    Returns:
        ``(steps, mask)``: the event vectors and the id tensor whose zeros mark padding.
    """
    schema = preprocessor.feature_schema
    steps = []
    for name in schema.sequences:
        ids = inputs[name]
        if cfg.item_dropout > 0:
            ids = IdDropout(cfg.item_dropout, name=f"{name}_id_dropout")(ids)
        steps.append(keras.layers.Embedding(
            preprocessor.vocabulary_size(name), cfg.item_embedding_dim,
            name=f"{name}_embedding")(ids))
    for name in schema.event_text:
        table = (event_text_tables or {}).get(name)
        if table is None:
            raise ValueError(f"Per-event text column {name!r} needs an embedding table")
        if table.shape[0] != preprocessor.vocabulary_size(name):
            raise ValueError(f"Embedding table of {name!r} has {table.shape[0]} rows, "
                             f"the lookup has {preprocessor.vocabulary_size(name)} ids")
        emb = keras.layers.Embedding(table.shape[0], table.shape[1], trainable=False,
                                     embeddings_initializer=keras.initializers.Constant(table),
                                     name=f"{name}_embedding")(inputs[name])
        steps.append(keras.layers.Dense(cfg.text_projection_dim, activation="relu",
                                        name=f"{name}_projection")(emb))
    x = steps[0] if len(steps) == 1 else keras.layers.Concatenate(name="event_concat")(steps)
    return x, inputs[schema.sequence_like[0]]


def sequence_encodings(cfg: ModelConfig, preprocessor: Preprocessor, x, mask) -> list:
    """The encoders of ``cfg.sequence_encoder`` over event vectors ``x``: one pooled vector each.

    Layer names (``behaviour_lstm``, ``behaviour_cnn``, ``behaviour_transformer``)
    are what pretrained weights are matched by.
    """
    out = []
    encoders = cfg.sequence_encoders()
    if "lstm" in encoders:
        out.append(BehaviourLSTM(cfg.lstm_units, name="behaviour_lstm")(x, mask))
    if "cnn" in encoders:
        out.append(BehaviourCNN(cfg.cnn_filters, cfg.cnn_kernel_size, name="behaviour_cnn")(x, mask))
    if "transformer" in encoders:
        out.append(BehaviourTransformer(
            cfg.transformer_units, cfg.transformer_heads, cfg.transformer_layers,
            max_length=preprocessor.max_sequence_length, dropout=cfg.dropout,
            name="behaviour_transformer")(x, mask))
    return out


def model_inputs(preprocessor: Preprocessor) -> dict:
    """One ``keras.Input`` per preprocessor output, same names: the inputs of every model of a run."""
    return {name: keras.Input(shape=shape, dtype=dtype, name=name)
            for name, (shape, dtype) in preprocessor.model_input_specs().items()}


def history_ids(inputs: dict, name: str):
    """The ids the wide part and the event counts read for ``name``: its ``<name>_history`` if any, else its ids."""
    return inputs.get(f"{name}_history", inputs[name])


def sequence_counts(preprocessor: Preprocessor, inputs: dict, name: str = "sequence_stats", log: bool = True):
    """The event counts of the history (:class:`SequenceStats`): events, distinct ids, value counts."""
    schema = preprocessor.feature_schema
    id_inputs = [history_ids(inputs, n) for n in schema.sequence_like]
    small = [preprocessor.vocabulary_size(n) if n in schema.sequences
             and preprocessor.vocabulary_size(n) <= SMALL_VOCABULARY else 0 for n in schema.sequence_like]
    return SequenceStats(small, log=log, name=name)(id_inputs)


def tree_features(preprocessor: Preprocessor, inputs: dict):
    """The features the boosted-tree branch reads (:mod:`purchase_intent.trees`), ``[batch, n]`` float32.

    The numbers as sent (``numeric_exact``: missing ones imputed) and their
    missing flags, the categorical ids (ordinal: numbered by training
    frequency) and the event counts of the history (exact integers): what a
    gradient-boosting peer sees of a table. None if the schema has none of them.

    Every value is computed **exactly**: copies, selects, integer counts, no
    floating-point arithmetic. A tree compares a value with a threshold, so a
    value one ULP off takes the other branch where it sits on a threshold; TF
    Serving runs the export through Grappler, whose constant folding rewrites
    ``(x - mean) / std`` into ``x * (1 / std)`` (one ULP away). Trees do not
    care for monotone transforms, so they read the values before any; a rewrite
    cannot move what has no arithmetic (checked through TF Serving's own
    loader in ``tests/serving_session_test.py``).
    """
    schema = preprocessor.feature_schema
    parts = []
    if schema.numeric:
        parts += [inputs["numeric_exact"], inputs["numeric_missing"]]
    parts += [ops.reshape(inputs[n], (-1, 1)) for n in schema.categorical]
    if schema.sequence_like:
        parts.append(sequence_counts(preprocessor, inputs, name="tree_sequence_stats", log=False))
    if not parts:
        return None
    parts = [ops.cast(p, "float32") for p in parts]  # the categorical ids are int32
    return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)


def wide_logits(cfg: ModelConfig, preprocessor: Preprocessor, inputs: dict, counts=None) -> list:
    """The wide (linear) terms: one logit each, summed with the deep logit.

    * ``text_bow``: the TF-IDF bag of words of all text (``model.text_bag_of_words``);
    * per sequence column (``model.wide_sequences``): the bag of its ids
      (items, categories, event types), :class:`BagLinear`, TF-IDF weighted
      with ``model.wide_idf`` and L2-normalised with ``model.wide_normalize``;
    * with ``model.wide_crosses``: the bag of (first sequence column x each
      other sequence column) pairs, e.g. item x event type.

    The bags count the history (``data.max_history_length`` events, see
    :func:`history_ids`), which may be longer than what the encoders read.
    With ``model.wide_tabular`` also the numeric, categorical and event-count
    terms of :func:`tabular_wide_logits` (``counts``: the :class:`SequenceStats`
    output). All share ``model.wide_scale`` and ``model.wide_l2``; with every
    wide term on and no deep part, the model is a logistic regression on these
    inputs: the peers' linear models are special cases of it.
    """
    schema = preprocessor.feature_schema
    out = []
    if "text_bow" in inputs:
        bow = keras.layers.Rescaling(cfg.wide_scale, name="text_bow_scale")(inputs["text_bow"])
        out.append(keras.layers.Dense(1, use_bias=False, name="text_bow_logit", dtype=HEAD_DTYPE,
                                      kernel_regularizer=keras.regularizers.L2(cfg.wide_l2))(bow))
    if cfg.wide_tabular:
        out += tabular_wide_logits(cfg, preprocessor, inputs, counts)
    if not cfg.wide_sequences:
        return out
    for name in schema.sequences:
        idf = preprocessor.sequence_idf.get(name) if cfg.wide_idf else None
        out.append(BagLinear(preprocessor.vocabulary_size(name), cfg.wide_scale, cfg.wide_l2,
                             cfg.wide_normalize, idf=idf, name=f"{name}_wide",
                             dtype=HEAD_DTYPE)(history_ids(inputs, name)))
    if cfg.wide_crosses and len(schema.sequences) > 1:
        first = schema.sequences[0]
        for other in schema.sequences[1:]:
            size_b = preprocessor.vocabulary_size(other)
            buckets = min(preprocessor.vocabulary_size(first) * size_b + 1, cfg.wide_cross_buckets)
            ids = CrossIds(size_b, buckets, name=f"{first}_x_{other}_ids")(
                [history_ids(inputs, first), history_ids(inputs, other)])
            out.append(BagLinear(buckets, cfg.wide_scale, cfg.wide_l2, cfg.wide_normalize,
                                 name=f"{first}_x_{other}_wide", dtype=HEAD_DTYPE)(ids))
    return out


def tabular_wide_logits(cfg: ModelConfig, preprocessor: Preprocessor, inputs: dict, counts=None) -> list:
    """``model.wide_tabular``: a linear term over the numeric inputs and event counts, one weight per category.

    The numeric inputs are the deep part's (``numeric``, ``numeric_missing`` and
    ``numeric_bins`` if any) and the event counts ``counts`` (the
    :class:`SequenceStats` output: events, distinct ids, per-type counts, log1p),
    scaled by ``model.wide_scale`` like every wide input; each categorical
    column gets a one-dimensional embedding (its one-hot weights).
    """
    schema = preprocessor.feature_schema
    reg = keras.regularizers.L2(cfg.wide_l2)
    out = []
    parts = [inputs[n] for n in ("numeric", "numeric_missing", "numeric_bins") if n in inputs]
    parts += [] if counts is None else [counts]
    if parts:
        x = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="numeric_wide_concat")(parts)
        x = keras.layers.Rescaling(cfg.wide_scale, name="numeric_wide_scale")(x)
        out.append(keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros", kernel_regularizer=reg,
                                      name="numeric_wide", dtype=HEAD_DTYPE)(x))
    for name in schema.categorical:
        w = keras.layers.Embedding(preprocessor.vocabulary_size(name), 1, embeddings_initializer="zeros",
                                   embeddings_regularizer=reg, name=f"{name}_wide",
                                   dtype=HEAD_DTYPE)(inputs[name])
        out.append(keras.layers.Rescaling(cfg.wide_scale, name=f"{name}_wide_scale", dtype=HEAD_DTYPE)(w))
    return out


def build_model(cfg: ModelConfig, preprocessor: Preprocessor, *, backbone=None,
                event_text_tables: dict[str, np.ndarray] | None = None,
                positive_rate: float = 0.5, name: str = "purchase_intent") -> keras.Model:
    """Builds the functional fusion model.

    Args:
        cfg: model configuration.
        preprocessor: the adapted preprocessor (gives input shapes and vocabulary sizes).
        backbone: keras-hub ``BertBackbone`` for scalar text (needed if the schema has any).
        event_text_tables: per event-text column, the frozen embedding table
            ``[vocabulary_size, hidden]`` whose row ``i`` embeds lookup id ``i``.
        positive_rate: training share of positives; sets the output bias.
        name: the model's name (ensemble members need distinct names).

    Returns:
        A ``keras.Model``.
    """
    schema = preprocessor.feature_schema
    inputs = model_inputs(preprocessor)
    parts = []
    counts = None

    # Scalar text: BERT -> masked mean over tokens -> projection.
    for name in schema.text:
        if backbone is None:
            raise ValueError(f"Scalar text column {name!r} needs a text encoder backbone")
        ids, mask = inputs[f"{name}_token_ids"], inputs[f"{name}_padding_mask"]
        seq = backbone({"token_ids": ids, "segment_ids": ops.zeros_like(ids), "padding_mask": mask})
        pooled = MaskedMeanPool(name=f"{name}_pool")(seq["sequence_output"], mask)
        parts.append(keras.layers.Dense(cfg.text_projection_dim, activation="relu",
                                        name=f"{name}_projection")(pooled))

    # Behaviour sequence: per-event vectors -> encoders, plus the event counts (of the history).
    if schema.sequence_like:
        x, mask = event_steps(cfg, preprocessor, inputs, event_text_tables)
        parts += sequence_encodings(cfg, preprocessor, x, mask)
        counts = sequence_counts(preprocessor, inputs)
        parts.append(counts)

    # Numeric and categorical features.
    context = []
    if schema.numeric:
        context += [inputs["numeric"], inputs["numeric_missing"]]
        if "numeric_bins" in inputs:
            context.append(inputs["numeric_bins"])
    for name in schema.categorical:
        emb = keras.layers.Embedding(preprocessor.vocabulary_size(name), cfg.categorical_embedding_dim,
                                     name=f"{name}_embedding")(inputs[name])
        context.append(emb)
    parts += context

    # DIN-style attention over the events, queried by the customer/session context.
    if schema.sequence_like and cfg.attention_pooling:
        if context:
            query = context[0] if len(context) == 1 else keras.layers.Concatenate(
                name="attention_query_concat")(context)
        else:
            query = parts[-1]  # the sequence counts
        parts.append(AttentionPool(cfg.attention_units, name="attention_pool")(x, query, mask))

    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="fusion_concat")(parts)
    for i, units in enumerate(cfg.hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"fusion_dense_{i}")(x)
        x = keras.layers.Dropout(cfg.dropout, name=f"fusion_dropout_{i}")(x)
    p = min(max(positive_rate, 1e-4), 1 - 1e-4)
    prior = keras.initializers.Constant(math.log(p / (1 - p)))
    wide = wide_logits(cfg, preprocessor, inputs, counts)
    if not wide:
        out = keras.layers.Dense(1, activation="sigmoid", name="purchase_probability",
                                 bias_initializer=prior, dtype=HEAD_DTYPE)(x)
        return keras.Model(inputs, out, name=name)
    # Wide & deep: the linear terms join the deep logit.
    deep = keras.layers.Dense(1, name="deep_logit", bias_initializer=prior, dtype=HEAD_DTYPE)(x)
    logit = keras.layers.Add(name="wide_deep_logit", dtype=HEAD_DTYPE)([deep, *wide])
    out = keras.layers.Activation("sigmoid", name="purchase_probability", dtype=HEAD_DTYPE)(logit)
    return keras.Model(inputs, out, name=name)


def wide_part(model: keras.Model) -> keras.Model | None:
    """The wide terms of a wide & deep ``model`` alone: a logistic regression on its bags, or None.

    Same inputs as ``model``; output ``sigmoid(a * sum of the wide logits + b)``
    with ``b`` starting at the deep logit's bias (the prior). The wide layers
    are ``model``'s own, so fitting this model fits them in ``model``.
    """
    try:
        add = model.get_layer("wide_deep_logit")
    except ValueError:
        return None
    wide = list(add.input[1:])
    logit = wide[0] if len(wide) == 1 else keras.layers.Add(name="wide_only_sum", dtype=HEAD_DTYPE)(wide)
    prior = model.get_layer("deep_logit").bias.numpy()
    logit = keras.layers.Dense(1, kernel_initializer="ones", name="wide_only_logit", dtype=HEAD_DTYPE,
                               bias_initializer=keras.initializers.Constant(prior))(logit)
    out = keras.layers.Activation("sigmoid", name="wide_only_probability", dtype=HEAD_DTYPE)(logit)
    return keras.Model(model.input, out, name=f"{model.name}_wide")


def wide_layers(model: keras.Model) -> list:
    """The layers with weights that feed only ``model``'s wide logits (not the deep logit)."""
    sub = wide_part(model)
    if sub is None:
        return []
    own = {id(l) for l in model.layers}
    return [l for l in sub.layers if id(l) in own and l.weights]


def average_models(models: list[keras.Model], preprocessor: Preprocessor) -> keras.Model:
    """One model whose output is the mean probability of ``models`` (a seed ensemble), same inputs."""
    inputs = model_inputs(preprocessor)
    out = EnsembleMean(models, name="ensemble_mean", dtype=HEAD_DTYPE)(inputs)
    return keras.Model(inputs, out, name="purchase_intent")


@keras.saving.register_keras_serializable(package="purchase_intent")
class EnsembleMean(keras.layers.Layer):
    """Mean of the outputs of several models called on the same inputs.

    A layer rather than nested functional models: the members' input layers
    share the raw feature names, which one functional graph cannot hold twice.

    The config holds each member's serialised architecture (``models``, without
    its compile settings: the layer only predicts) and which layers members
    share (``shared_layers``: per member, layer name -> ``[earlier member,
    its layer name]``; the members of one run share the text encoder), so
    :meth:`from_config` rebuilds the same sharing and a ``.keras`` file's
    weights (each shared layer saved once) load back into it.
    """

    def __init__(self, models, **kwargs):
        super().__init__(**kwargs)
        self.members = list(models)

    def call(self, inputs, training=None):
        return ops.mean(ops.stack([m(inputs, training=training) for m in self.members]), axis=0)

    def compute_output_spec(self, inputs, training=None):
        return self.members[0].compute_output_spec(inputs)

    def get_config(self):
        config = super().get_config()
        models, shared, first = [], [], {}  # first: id(layer) -> [member, name] where it first appears
        for i, member in enumerate(self.members):
            serialized = keras.saving.serialize_keras_object(member)
            serialized.pop("compile_config", None)
            models.append(serialized)
            links = {}
            for layer in member.layers:
                if isinstance(layer, keras.layers.InputLayer):
                    continue
                if id(layer) in first:
                    links[layer.name] = first[id(layer)]
                else:
                    first[id(layer)] = [i, layer.name]
            shared.append(links)
        config.update({"models": models, "shared_layers": shared})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        shared = config.pop("shared_layers", None) or []
        members = [keras.saving.deserialize_keras_object(m) for m in config.pop("models")]
        for i, links in enumerate(shared):
            if links:  # the layers of earlier members in place of this member's copies

                def reuse(layer, links=links):
                    if layer.name not in links:
                        return layer
                    member, name = links[layer.name]
                    return members[member].get_layer(name)

                members[i] = keras.models.clone_model(members[i], clone_function=reuse)
        return cls(members, **config)
