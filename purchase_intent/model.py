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

from purchase_intent.blocks import (AttentionPool, BehaviourCNN, BehaviourLSTM, BehaviourTransformer,
                                   MaskedMeanPool)
from purchase_intent.config import ModelConfig
from purchase_intent.preprocessing import Preprocessor

logger = logging.getLogger(__name__)


class HasEvents(keras.layers.Layer):
    """1.0 where the example has at least one event, else 0.0."""

    def call(self, ids):
        return ops.cast(ops.any(ids != 0, axis=1, keepdims=True), "float32")


def build_model(cfg: ModelConfig, preprocessor: Preprocessor, *, backbone=None,
                event_text_tables: dict[str, np.ndarray] | None = None,
                positive_rate: float = 0.5) -> keras.Model:
    """Builds the functional fusion model.

    Args:
        cfg: model configuration.
        preprocessor: the adapted preprocessor (gives input shapes and vocabulary sizes).
        backbone: keras-hub ``BertBackbone`` for scalar text (needed if the schema has any).
        event_text_tables: per event-text column, the frozen embedding table
            ``[vocabulary_size, hidden]`` whose row ``i`` embeds lookup id ``i``.
        positive_rate: training share of positives; sets the output bias.

    Returns:
        A ``keras.Model`` named ``purchase_intent``.
    """
    schema = preprocessor.feature_schema
    inputs = {name: keras.Input(shape=shape, dtype=dtype, name=name)
              for name, (shape, dtype) in preprocessor.model_input_specs().items()}
    parts = []

    # Scalar text: BERT -> masked mean over tokens -> projection.
    for name in schema.text:
        if backbone is None:
            raise ValueError(f"Scalar text column {name!r} needs a text encoder backbone")
        ids, mask = inputs[f"{name}_token_ids"], inputs[f"{name}_padding_mask"]
        seq = backbone({"token_ids": ids, "segment_ids": ops.zeros_like(ids), "padding_mask": mask})
        pooled = MaskedMeanPool(name=f"{name}_pool")(seq["sequence_output"], mask)
        parts.append(keras.layers.Dense(cfg.text_projection_dim, activation="relu",
                                        name=f"{name}_projection")(pooled))

    # Behaviour sequence: per-event embeddings of every sequence-like column, concatenated.
    if schema.sequence_like:
        steps = []
        for name in schema.sequences:
            steps.append(keras.layers.Embedding(
                preprocessor.vocabulary_size(name), cfg.item_embedding_dim,
                name=f"{name}_embedding")(inputs[name]))
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
        mask = inputs[schema.sequence_like[0]]
        encoders = cfg.sequence_encoders()
        if "lstm" in encoders:
            parts.append(BehaviourLSTM(cfg.lstm_units, name="behaviour_lstm")(x, mask))
        if "cnn" in encoders:
            parts.append(BehaviourCNN(cfg.cnn_filters, cfg.cnn_kernel_size,
                                      name="behaviour_cnn")(x, mask))
        if "transformer" in encoders:
            parts.append(BehaviourTransformer(
                cfg.transformer_units, cfg.transformer_heads, cfg.transformer_layers,
                max_length=preprocessor.max_sequence_length, dropout=cfg.dropout,
                name="behaviour_transformer")(x, mask))
        parts.append(HasEvents(name="has_events")(mask))

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
            query = parts[-1]  # has_events: the query becomes a learned vector
        parts.append(AttentionPool(cfg.attention_units, name="attention_pool")(x, query, mask))

    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="fusion_concat")(parts)
    for i, units in enumerate(cfg.hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"fusion_dense_{i}")(x)
        x = keras.layers.Dropout(cfg.dropout, name=f"fusion_dropout_{i}")(x)
    p = min(max(positive_rate, 1e-4), 1 - 1e-4)
    prior = keras.initializers.Constant(math.log(p / (1 - p)))
    if "text_bow" not in inputs:
        out = keras.layers.Dense(1, activation="sigmoid", name="purchase_probability",
                                 bias_initializer=prior)(x)
        return keras.Model(inputs, out, name="purchase_intent")
    # Wide & deep: a linear term over the TF-IDF bag of words joins the deep logit.
    deep = keras.layers.Dense(1, name="deep_logit", bias_initializer=prior)(x)
    bow = keras.layers.Rescaling(cfg.text_bag_of_words_scale, name="text_bow_scale")(inputs["text_bow"])
    wide = keras.layers.Dense(1, use_bias=False, name="text_bow_logit",
                              kernel_regularizer=keras.regularizers.L2(cfg.text_bag_of_words_l2))(bow)
    logit = keras.layers.Add(name="wide_deep_logit")([deep, wide])
    out = keras.layers.Activation("sigmoid", name="purchase_probability")(logit)
    return keras.Model(inputs, out, name="purchase_intent")
