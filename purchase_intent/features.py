"""Feature operations shared by the preprocessor and the streaming statistics.

:mod:`purchase_intent.preprocessing` computes the model's inputs with them (in
training and in the exported graph) and :mod:`purchase_intent.stats` counts
what the preprocessor will read with the same functions, so the statistics of
prepared shards adapt the same preprocessor as a frame. Both import this
module; it imports neither.

* :func:`transform`: the numeric transform (``"none"``, signed ``"log1p"``), in numpy;
* :func:`event_lengths`, :func:`recent_events`: the padding rule of
  :mod:`purchase_intent.contract` in the graph, the most recent events kept;
* :func:`joined_text`: all text of an example as one string (what the bag of words reads);
* :func:`bow_vectorizer`, :func:`bow_terms`: the bag of words' ``TextVectorization``
  (unigrams and bigrams) and the terms it counts in a batch of texts;
* :func:`raw_batch`: a validated frame as the dense raw tensors the serving signature takes.

TensorFlow is imported by the functions that need it, not with the module.
"""

from __future__ import annotations

import numpy as np

from purchase_intent import contract
from purchase_intent.schema import FeatureSchema

BOW_NGRAMS = 2
BOW_STANDARDIZE = "lower_and_strip_punctuation"


def transform(x: np.ndarray, name: str) -> np.ndarray:
    """The numeric transform of the preprocessor, in numpy (``"log1p"`` is signed)."""
    return np.sign(x) * np.log1p(np.abs(x)) if name == "log1p" else x


def _as_batch(x):
    import tensorflow as tf

    x = tf.convert_to_tensor(x, tf.string)
    return x[None, :] if x.shape.rank == 1 else x  # one example's sequence


def event_lengths(raw, names):
    """Events per example ``[batch]`` (int64): up to the last position where any of the
    sequence inputs ``names`` is not ``""`` (the padding rule of :mod:`purchase_intent.contract`)."""
    import tensorflow as tf

    lengths = [tf.RaggedTensor.from_tensor(_as_batch(raw[n]), padding=contract.PADDING).row_lengths()
               for n in names]
    return tf.reduce_max(tf.stack(lengths), axis=0)


def recent_events(x, max_sequence_length: int, lengths=None):
    """Right-padded ``[batch, events]`` strings -> the last ``max_sequence_length`` events, padded with ``""``.

    The padding rule of the contract (:mod:`purchase_intent.contract`): each
    example has ``lengths`` events (:func:`event_lengths`; None: this input
    alone, up to its last non-empty value); the ``""`` after them are padding,
    a ``""`` among them is an empty event and becomes ``"[EMPTY]"``.
    """
    import tensorflow as tf

    x = _as_batch(x)
    if lengths is None:
        rt = tf.RaggedTensor.from_tensor(x, padding=contract.PADDING)  # drops the trailing "" only
    else:
        short = tf.maximum(tf.reduce_max(tf.concat([lengths, [0]], 0)) - tf.shape(x, tf.int64)[1], 0)
        x = tf.pad(x, [[0, 0], [0, short]], constant_values=contract.PADDING)  # a narrower input
        rt = tf.RaggedTensor.from_tensor(x, lengths=lengths)
    rt = rt.with_flat_values(tf.where(tf.equal(rt.flat_values, contract.PADDING),
                                      contract.EMPTY_EVENT, rt.flat_values))
    rt = rt[:, -max_sequence_length:]
    return rt.to_tensor(default_value="", shape=[None, max_sequence_length])


def joined_text(raw, schema: FeatureSchema, max_sequence_length: int):
    """All text of each example as one string: scalar texts, then the kept events' texts.

    What the bag of words reads, in training (adapt and ``call``) and serving alike.
    """
    import tensorflow as tf

    parts = [tf.reshape(tf.convert_to_tensor(raw[n], tf.string), [-1]) for n in schema.text]
    lengths = event_lengths(raw, schema.sequence_like) if schema.event_text else None
    parts += [tf.strings.reduce_join(recent_events(raw[n], max_sequence_length, lengths), axis=1,
                                     separator=" ")
              for n in schema.event_text]
    return parts[0] if len(parts) == 1 else tf.strings.join(parts, separator=" ")


def bow_vectorizer(vocabulary=None, max_tokens=None, output_mode="count"):
    """The bag of words' ``TextVectorization``: standardised, whitespace-split unigrams and bigrams."""
    import keras

    return keras.layers.TextVectorization(
        max_tokens=max_tokens, standardize=BOW_STANDARDIZE, split="whitespace", ngrams=BOW_NGRAMS,
        output_mode=output_mode, vocabulary=vocabulary, name="text_bow_vectorizer")


def bow_terms(texts, vectorizer=None):
    """The terms :func:`bow_vectorizer` counts in each of ``texts``: a ragged ``[texts, terms]`` of bytes.

    Standardisation, split and n-grams exactly as the vectoriser does them (its
    own preprocessing step: ``TextVectorization`` has no public method for it),
    so counts of these terms give the vocabulary and the idf it would adapt.

    Args:
        texts: a ``[batch]`` string tensor (e.g. :func:`joined_text`).
        vectorizer: a vectoriser of :func:`bow_vectorizer` to reuse (default: a new one).
    """
    vectorizer = vectorizer or bow_vectorizer(["[unused]"])
    return vectorizer._preprocess(texts)


def raw_batch(df, schema: FeatureSchema):
    """A validated frame -> dense raw tensors as the serving signature takes them (every event kept)."""
    from purchase_intent.serving.codec import to_tensors

    return to_tensors(contract.frame_to_arrays(df, schema, max_events=None))
