"""One preprocessing object for training (inside tf.data) and serving (inside the SavedModel).

``Preprocessor`` maps a dict of raw features (strings, string sequences,
floats) to the numeric tensors the model takes:

* scalar text -> ``<name>_token_ids`` / ``<name>_padding_mask`` (int32,
  WordPiece in the graph, ``[CLS] ... [SEP]``).
* sequences -> int32 ids ``[batch, max_sequence_length]``: each value
  trimmed of surrounding ASCII whitespace first (:func:`trim_sequences`: ``"A | B"``
  is ``"A|B"``), the most recent events are kept, ``""`` is padding (id 0), unseen values map to the OOV
  id 1, known values to 2, 3, ...; with ``history_length >
  max_sequence_length`` also ``<name>_history``, the ids of the most recent
  ``history_length`` events (what the model's wide bags and event counts read).
* per-event text -> int32 ids into the precomputed text-embedding table,
  with the same truncation and ids (0 padding, 1 unseen text).
* numeric -> ``numeric`` (signed log1p, standardised with training
  statistics, NaN/inf imputed with the training mean i.e. 0) and
  ``numeric_missing`` (1.0 where the raw value was NaN/inf), and
  ``numeric_exact``: the values as sent, NaN/inf replaced by the raw value of
  the training mean, with no arithmetic at all (what the boosted trees
  compare with their thresholds: a select cannot be rewritten, so TF
  Serving's Grappler and ``tf.saved_model.load`` see the same bits; see
  :func:`purchase_intent.model.tree_features`); with
  ``numeric_bins > 0`` also ``numeric_bins``: a piecewise-linear encoding
  (Gorishniy et al. 2022, "On Embeddings for Numerical Features in Tabular
  Deep Learning") of each feature over its training quantiles, ``[batch,
  features * bins]``, each entry in [0, 1].
* categorical -> int32 ids (0 for unseen values, 1, 2, ... for known ones).
* with a bag-of-words vocabulary (``model.text_bag_of_words > 0``):
  ``text_bow``, the TF-IDF vector of word unigrams and bigrams over all text
  (scalar text columns and the history's event texts, joined), with sublinear
  term frequency and L2 normalisation as scikit-learn's ``TfidfVectorizer``
  does; ``[batch, vocabulary size]``.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from purchase_intent import contract
from purchase_intent.features import (bow_vectorizer, event_lengths, joined_text, recent_events,  # noqa: F401
                                      raw_batch, transform)  # raw_batch: re-exported, every caller's
from purchase_intent.schema import FeatureSchema

logger = logging.getLogger(__name__)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402


def _top_values(counts, max_size: int, min_count: int = 1) -> list[str]:
    """The ``max_size`` most frequent non-empty values of ``counts`` (value -> count) seen at least
    ``min_count`` times; ties by value."""
    ranked = sorted(((v, c) for v, c in counts.items() if c >= min_count and v != ""),
                    key=lambda kv: (-kv[1], kv[0]))
    return [v for v, _ in ranked[:max_size]]


def _standardisation(mean: float, std: float, count: int) -> tuple[float, float]:
    """Mean and standard deviation used to standardise a feature of ``count`` finite values.

    No finite value: mean 0; fewer than two, or a constant feature: std 1.
    """
    mean = float(mean) if count else 0.0
    std = float(std) if count > 1 else 1.0
    return mean, (std if std > 1e-6 else 1.0)


def signed_log1p(x):
    return tf.sign(x) * tf.math.log1p(tf.abs(x))


def raw_numeric_values(numeric_mean, numeric_transform: str) -> list[float]:
    """The raw value of each transformed mean (the inverse of signed log1p), as float32 numbers."""
    m = np.asarray(numeric_mean, np.float64)
    if numeric_transform == "log1p":
        m = np.sign(m) * np.expm1(np.minimum(np.abs(m), 88.0))  # 88: expm1 stays within float32
    return [float(v) for v in m.astype(np.float32)]


def quantile_boundaries(x: np.ndarray, bins: int) -> list[float]:
    """``bins + 1`` bin edges at the quantiles of the finite values of ``x``.

    Repeated quantiles (a feature that is mostly 0, say) are merged, and the
    list is padded by repeating the last edge; a bin of zero width encodes as 0.
    """
    finite = x[np.isfinite(x)]
    if len(finite) == 0:
        return [0.0] * (bins + 1)
    edges = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)))
    edges = np.concatenate([edges, np.full(bins + 1 - len(edges), edges[-1])])
    return [float(e) for e in edges]


def piecewise_linear(x, edges):
    """``x`` ``[batch, features]``, ``edges`` ``[features, bins + 1]`` -> ``[batch, features * bins]``.

    Entry ``(f, t)`` is 0 below bin ``t`` of feature ``f``, 1 above it and
    the position inside it in between, so the encoding is monotone in ``x``.
    """
    lo, hi = edges[None, :, :-1], edges[None, :, 1:]
    width = hi - lo
    pos = tf.clip_by_value((x[:, :, None] - lo) / tf.where(width > 0, width, tf.ones_like(width)), 0.0, 1.0)
    pos = tf.where(width > 0, pos, tf.zeros_like(pos))
    return tf.reshape(pos, [-1, edges.shape[0] * (edges.shape[1] - 1)])


def trim_sequences(raw, names):
    """``raw`` with the sequence inputs ``names`` trimmed of surrounding ASCII whitespace
    (``tf.strings.strip``; :func:`contract.trim` is its mirror), before the padding rule reads them:
    a whitespace-only value is ``""``."""
    return {**raw, **{n: tf.strings.strip(tf.convert_to_tensor(raw[n], tf.string)) for n in names}}


def categorical_values(x):
    """Raw categorical strings -> the values looked up: trimmed, ``"3.0"`` -> ``"3"``, ``"-0"`` -> ``"0"``
    (:func:`contract.category`)."""
    x = tf.strings.strip(tf.convert_to_tensor(x, tf.string))
    x = tf.strings.regex_replace(x, f"^{contract.INTEGER_DECIMAL}$", r"\1")
    return tf.strings.regex_replace(x, f"^{contract.NEGATIVE_ZERO}$", "0")


@keras.saving.register_keras_serializable(package="purchase_intent")
class Preprocessor(keras.layers.Layer):
    """Raw feature dict -> model input dict, in TensorFlow ops only.

    Args:
        schema: dict. ``FeatureSchema.to_dict()``.
        vocabularies: dict of str to list of str. Vocabulary per sequence and
            categorical feature, and per event-text feature.
        numeric_mean: list of float. Mean of each transformed numeric feature.
        numeric_std: list of float. Standard deviation of each transformed numeric feature.
        max_sequence_length: int. Events kept per example (most recent).
        history_length: int. If more than ``max_sequence_length``, the
            ``<name>_history`` ids of the most recent ``history_length``
            events of each sequence column are output too.
        text_sequence_length: int. Tokens per scalar text, with [CLS] and [SEP].
        numeric_transform: str. "log1p" (signed) or "none".
        numeric_edges: list of list of float. Per numeric feature, the bin
            edges of the piecewise-linear encoding (in the transformed scale);
            empty: no ``numeric_bins`` output.
        bow_vocabulary: list of str. Terms of the TF-IDF bag of words; empty: no ``text_bow``.
        bow_idf: list of float. Inverse document frequency of each term.
        sequence_idf: dict of str to list of float. Per sequence column, the
            smoothed inverse document frequency of each lookup id (padding
            and unseen ids: 0 and the largest value), for the model's wide bags.
        tokenizer: a keras-hub tokenizer, needed when the schema has scalar text.

    Examples:

    >>> from purchase_intent.data.synthetic import make_synthetic, SCHEMA
    >>> df = SCHEMA.validate(make_synthetic(50))
    >>> pre = Preprocessor.adapt(SCHEMA.subset(["numeric"]), df, max_sequence_length=8)
    >>> sorted(pre(raw_batch(df.head(4), SCHEMA.subset(["numeric"]))))
    ['country', 'device', 'numeric', 'numeric_missing']
    """

    def __init__(self, schema, vocabularies, numeric_mean, numeric_std, max_sequence_length=50,
                 text_sequence_length=32, numeric_transform="log1p", tokenizer=None, numeric_edges=None,
                 bow_vocabulary=None, bow_idf=None, sequence_idf=None, history_length=0, **kwargs):
        super().__init__(**kwargs)
        self.schema = schema
        self.vocabularies = vocabularies
        self.numeric_mean = list(numeric_mean)
        self.numeric_std = list(numeric_std)
        self.max_sequence_length = max_sequence_length
        self.history_length = history_length
        self.text_sequence_length = text_sequence_length
        self.numeric_transform = numeric_transform
        self.numeric_edges = [list(e) for e in (numeric_edges or [])]
        self.bow_vocabulary = list(bow_vocabulary or [])
        self.bow_idf = [float(v) for v in (bow_idf or [])]
        self.sequence_idf = {k: [float(x) for x in v] for k, v in (sequence_idf or {}).items()}
        self.tokenizer = tokenizer
        self._schema = FeatureSchema.from_dict(schema)
        s = self._schema
        self.lookups = {}
        for name in s.sequence_like:
            self.lookups[name] = keras.layers.StringLookup(
                vocabulary=vocabularies[name], mask_token="", num_oov_indices=1,
                output_mode="int", name=f"{name}_lookup")
        for name in s.categorical:
            self.lookups[name] = keras.layers.StringLookup(
                vocabulary=vocabularies[name], num_oov_indices=1,
                output_mode="int", name=f"{name}_lookup")
        self.packer = None
        if s.text:
            if tokenizer is None:
                raise ValueError("The schema has scalar text columns but no tokenizer was given")
            from purchase_intent.text import make_packer

            self.packer = make_packer(tokenizer, text_sequence_length)
        if s.numeric:
            self._mean = tf.constant(self.numeric_mean, tf.float32)
            self._std = tf.constant(self.numeric_std, tf.float32)
            self._raw_mean = tf.constant(raw_numeric_values(self.numeric_mean, numeric_transform), tf.float32)
        if self.numeric_edges:
            if len(self.numeric_edges) != len(s.numeric):
                raise ValueError(f"numeric_edges has {len(self.numeric_edges)} rows for "
                                 f"{len(s.numeric)} numeric features")
            self._edges = tf.constant(self.numeric_edges, tf.float32)
        self.bow = None
        if self.bow_vocabulary:
            if len(self.bow_idf) != len(self.bow_vocabulary):
                raise ValueError(f"bow_idf has {len(self.bow_idf)} values for "
                                 f"{len(self.bow_vocabulary)} bag-of-words terms")
            self.bow = bow_vectorizer(self.bow_vocabulary)
            self._idf = tf.constant(self.bow_idf, tf.float32)

    def build(self, input_shape=None):
        # Lookup tables and constants are created in __init__; nothing depends on shapes.
        self.built = True

    @classmethod
    def adapt(cls, schema: FeatureSchema, train: pd.DataFrame, *, max_sequence_length: int = 50,
              text_sequence_length: int = 32, numeric_transform: str = "log1p",
              max_vocab_size: int = 20_000, tokenizer=None,
              event_text_vocabulary: dict[str, list[str]] | None = None,
              numeric_bins: int = 0, bag_of_words: int = 0, min_frequency: int = 1,
              history_length: int = 0) -> "Preprocessor":
        """Builds a preprocessor from a validated training frame: :meth:`adapt_from_stats` of its exact statistics.

        Args:
            numeric_bins: >0: also output the piecewise-linear encoding of each
                numeric feature over this many training-quantile bins.
            bag_of_words: >0: also output the TF-IDF vector over the this many
                most frequent training unigrams and bigrams of all text.
            event_text_vocabulary: per event-text column, the texts of the
                embedding table (default: the distinct training texts).
            min_frequency: sequence values (items, event types) seen fewer
                times in training share the out-of-vocabulary id.
            history_length: events of the ``<name>_history`` outputs (see the class).
        """
        from purchase_intent.stats import DEFAULT_CAPACITY, SplitStats

        events = max(max_sequence_length, history_length)
        bow_events = events if bag_of_words > 0 and (schema.text or schema.event_text) else 0
        # Exact statistics of the frame (every finite value kept for the quantiles): one algorithm.
        stats = SplitStats.of_frame(train, schema, bow_events=bow_events, capacity=max(len(train), DEFAULT_CAPACITY))
        return cls.adapt_from_stats(
            schema, stats, max_sequence_length=max_sequence_length, text_sequence_length=text_sequence_length,
            numeric_transform=numeric_transform, max_vocab_size=max_vocab_size, tokenizer=tokenizer,
            event_text_vocabulary=event_text_vocabulary, numeric_bins=numeric_bins, bag_of_words=bag_of_words,
            min_frequency=min_frequency, history_length=history_length)

    @classmethod
    def adapt_from_stats(cls, schema: FeatureSchema, stats, *, max_sequence_length: int = 50,
                         text_sequence_length: int = 32, numeric_transform: str = "log1p",
                         max_vocab_size: int = 20_000, tokenizer=None,
                         event_text_vocabulary: dict[str, list[str]] | None = None,
                         numeric_bins: int = 0, bag_of_words: int = 0, min_frequency: int = 1,
                         history_length: int = 0) -> "Preprocessor":
        """As :meth:`adapt`, from the training split's :class:`purchase_intent.stats.SplitStats`.

        Gives the same preprocessor as :meth:`adapt` on the frame the
        statistics were computed on (the numeric bin edges too while the
        split has at most the reservoir's capacity of finite values per
        feature; beyond that they are estimates, see :mod:`purchase_intent.stats`).

        Raises:
            ValueError: a bag of words is asked for but the statistics joined
                the text of another number of events than ``max(max_sequence_length,
                history_length)``, or counted no terms.
        """
        vocabularies = {}
        for name in schema.sequences:
            vocabularies[name] = _top_values(stats.values[name], max_vocab_size, min_frequency)
        for name in schema.event_text:
            if event_text_vocabulary and name in event_text_vocabulary:
                vocabularies[name] = list(event_text_vocabulary[name])
            else:
                vocabularies[name] = _top_values(stats.values[name], 10**9)
        for name in schema.categorical:
            vocabularies[name] = _top_values(stats.values[name], max_vocab_size)
        vocabularies = {k: (v or ["[NONE]"]) for k, v in vocabularies.items()}
        sequence_idf = {name: _idf_from_counts(stats.documents[name], stats.examples, vocabularies[name])
                        for name in schema.sequences}
        mean, std, edges = [], [], []
        for name in schema.numeric:
            moments = stats.moments[name][numeric_transform]
            m, sd = _standardisation(moments.mean, moments.std, moments.count)
            mean.append(m)
            std.append(sd)
            if numeric_bins > 0:
                edges.append(quantile_boundaries(transform(stats.samples[name].values, numeric_transform),
                                                 numeric_bins))
        bow_vocabulary, bow_idf = [], []
        if bag_of_words > 0 and not (schema.text or schema.event_text):
            logger.warning("model.text_bag_of_words=%d is ignored: the schema has no text columns",
                           bag_of_words)
        elif bag_of_words > 0:
            events = max(max_sequence_length, history_length)
            if stats.bow_events != events:
                raise ValueError(
                    f"model.text_bag_of_words needs the terms of the text of the last {events} events, "
                    f"but the statistics counted those of {stats.bow_events or 'no'} events: prepare the "
                    f"data again with the same data.max_sequence_length / data.max_history_length")
            bow_vocabulary = [t for t, _ in sorted(stats.bow_terms.items(), key=lambda kv: (kv[1], kv[0]),
                                                   reverse=True)[:bag_of_words]]  # TextVectorization's order
            idf = np.log((1.0 + stats.examples)
                         / (1.0 + np.array([stats.bow_documents[t] for t in bow_vocabulary], np.float64))) + 1.0
            bow_idf = [float(v) for v in idf]
            if not bow_vocabulary:
                logger.warning("model.text_bag_of_words: the training text has no words; no bag of words")
        return cls(schema.to_dict(), vocabularies, mean, std, max_sequence_length=max_sequence_length,
                   text_sequence_length=text_sequence_length, numeric_transform=numeric_transform,
                   tokenizer=tokenizer, numeric_edges=edges, bow_vocabulary=bow_vocabulary,
                   bow_idf=bow_idf, sequence_idf=sequence_idf, history_length=history_length)

    @property
    def feature_schema(self) -> FeatureSchema:
        return self._schema

    @property
    def history_names(self) -> list[str]:
        """Sequence columns with a ``<name>_history`` output (a history longer than the encoders' events)."""
        return list(self._schema.sequences) if self.history_length > self.max_sequence_length else []

    @property
    def wide_length(self) -> int:
        """Events the wide part reads per sequence: the history or the encoders' events, whichever is more."""
        return max(self.max_sequence_length, self.history_length)

    def vocabulary_size(self, name: str) -> int:
        """Number of ids the lookup of ``name`` can output (padding/OOV included)."""
        return self.lookups[name].vocabulary_size()

    def call(self, raw):
        s = self._schema
        raw = trim_sequences(raw, s.sequence_like)  # the contract's first value rule, for every caller
        out = {}
        if self.bow is not None:
            counts = tf.cast(self.bow(joined_text(raw, s, self.wide_length))[:, 1:], tf.float32)  # column 0: unknown terms
            tf_weight = tf.where(counts > 0, 1.0 + tf.math.log(tf.maximum(counts, 1.0)), 0.0)
            w = tf_weight * self._idf  # sublinear tf (1 + log count) times idf
            out["text_bow"] = tf.math.l2_normalize(w, axis=1)
        for name in s.text:
            ids, mask = self.packer(self.tokenizer(tf.convert_to_tensor(raw[name], tf.string)))
            out[f"{name}_token_ids"] = tf.cast(ids, tf.int32)
            out[f"{name}_padding_mask"] = tf.cast(mask, tf.int32)  # bool breaks AddN under MirroredStrategy
        lengths = event_lengths(raw, s.sequence_like) if s.sequence_like else None
        for name in s.sequence_like:
            out[name] = tf.cast(self.lookups[name](
                recent_events(raw[name], self.max_sequence_length, lengths)), tf.int32)
        for name in self.history_names:
            out[f"{name}_history"] = tf.cast(
                self.lookups[name](recent_events(raw[name], self.history_length, lengths)), tf.int32)
        for name in s.categorical:
            out[name] = tf.cast(self.lookups[name](categorical_values(raw[name])), tf.int32)
        if s.numeric:
            x = tf.stack([tf.cast(tf.reshape(raw[n], [-1]), tf.float32) for n in s.numeric], axis=1)
            missing = tf.logical_not(tf.math.is_finite(x))
            out["numeric_exact"] = tf.where(missing, tf.broadcast_to(self._raw_mean, tf.shape(x)), x)
            x = tf.where(missing, tf.zeros_like(x), x)
            if self.numeric_transform == "log1p":
                x = signed_log1p(x)
            if self.numeric_edges:
                bins = piecewise_linear(x, self._edges)
                n_bins = len(self.numeric_edges[0]) - 1
                out["numeric_bins"] = tf.where(tf.repeat(missing, n_bins, axis=1), tf.zeros_like(bins), bins)
            x = (x - self._mean) / self._std
            x = tf.where(missing, tf.zeros_like(x), tf.clip_by_value(x, -10.0, 10.0))
            out["numeric"] = x
            out["numeric_missing"] = tf.cast(missing, tf.float32)
        return out

    def model_input_specs(self) -> dict[str, tuple[tuple, str]]:
        """Shape (without batch) and dtype of each output, for ``keras.Input``."""
        s = self._schema
        specs = {}
        for name in s.text:
            specs[f"{name}_token_ids"] = ((self.text_sequence_length,), "int32")
            specs[f"{name}_padding_mask"] = ((self.text_sequence_length,), "int32")
        for name in s.sequence_like:
            specs[name] = ((self.max_sequence_length,), "int32")
        for name in self.history_names:
            specs[f"{name}_history"] = ((self.history_length,), "int32")
        for name in s.categorical:
            specs[name] = ((), "int32")
        if s.numeric:
            specs["numeric"] = ((len(s.numeric),), "float32")
            specs["numeric_missing"] = ((len(s.numeric),), "float32")
            specs["numeric_exact"] = ((len(s.numeric),), "float32")
            if self.numeric_edges:
                specs["numeric_bins"] = ((len(s.numeric) * (len(self.numeric_edges[0]) - 1),), "float32")
        if self.bow is not None:
            specs["text_bow"] = ((len(self.bow_vocabulary),), "float32")
        return specs

    def get_config(self):
        config = super().get_config()
        config.update({
            "schema": self.schema,
            "vocabularies": self.vocabularies,
            "numeric_mean": self.numeric_mean,
            "numeric_std": self.numeric_std,
            "max_sequence_length": self.max_sequence_length,
            "history_length": self.history_length,
            "text_sequence_length": self.text_sequence_length,
            "numeric_transform": self.numeric_transform,
            "numeric_edges": self.numeric_edges,
            "bow_vocabulary": self.bow_vocabulary,
            "bow_idf": self.bow_idf,
            "sequence_idf": self.sequence_idf,
            "tokenizer": None if self.tokenizer is None else tokenizer_config(self.tokenizer),
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("tokenizer"), dict):
            config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)


def tokenizer_config(tokenizer) -> dict:
    """``keras.saving.serialize_keras_object(tokenizer)`` with its vocabulary in the config.

    keras-hub tokenizers leave the vocabulary out of ``get_config`` (it is a
    ``.keras`` asset, loaded after the object is built); the preprocessor
    packs with the tokenizer's special-token ids when it is built, so its
    config carries the vocabulary itself and ``from_config`` alone rebuilds it.
    """
    config = keras.saving.serialize_keras_object(tokenizer)
    if "vocabulary" in config["config"] and hasattr(tokenizer, "get_vocabulary"):
        config["config"]["vocabulary"] = [str(t) for t in tokenizer.get_vocabulary()]
    return config


def _idf_from_counts(documents, n: int, vocabulary: list[str]) -> list[float]:
    """scikit-learn's smoothed idf, ``log((1 + n) / (1 + df)) + 1``, per lookup id of ``vocabulary``.

    From document counts (value -> rows holding it) of ``n`` rows. Id 0
    (padding) gets 0; id 1 (unseen values) gets the idf of a value seen in no
    training row, the largest.
    """
    df = np.array([documents.get(v, 0) for v in vocabulary], np.float64)
    idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
    return [0.0, float(np.log(1.0 + n) + 1.0)] + [float(v) for v in idf]
