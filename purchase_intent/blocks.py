"""Model building blocks: masked pooling, behaviour-sequence encoders.

Padding id 0 marks an empty event slot. A session with zero events gives a
finite, all-zero encoding (plus the ``has_events`` flag the model adds), on
CPU and on cuDNN alike: the LSTM always sees at least one unmasked step.
"""

from __future__ import annotations

import keras
from keras import ops


def very_negative(dtype) -> float:
    """A score that loses every max/softmax yet is finite in ``dtype``: -1e9, or -3e4 in float16 (max 65504).

    Under ``train.mixed_precision=mixed_float16``, -1e9 overflows to -inf (numpy warns
    while the graph is built) and a softmax over a row of -inf is NaN.
    """
    return -3e4 if keras.backend.standardize_dtype(dtype) == "float16" else -1e9


@keras.saving.register_keras_serializable(package="purchase_intent")
class MaskedMeanPool(keras.layers.Layer):
    """Mean over the time axis of ``[batch, time, dim]`` where ``mask`` is non-zero.

    Examples:

    >>> import numpy as np
    >>> x = np.ones((2, 3, 4), "float32"); m = np.array([[1, 1, 0], [0, 0, 0]])
    >>> MaskedMeanPool()(x, m).shape
    (2, 4)
    """

    def call(self, x, mask):
        w = ops.expand_dims(ops.cast(ops.not_equal(mask, 0), x.dtype), -1)
        return ops.sum(x * w, axis=1) / ops.maximum(ops.sum(w, axis=1), 1.0)


@keras.saving.register_keras_serializable(package="purchase_intent")
class MaskedMaxPool(keras.layers.Layer):
    """Max over the time axis where ``mask`` is non-zero; zeros for an all-masked row."""

    def call(self, x, mask):
        m = ops.expand_dims(ops.not_equal(mask, 0), -1)
        pooled = ops.max(ops.where(m, x, ops.full_like(x, very_negative(x.dtype))), axis=1)
        has_any = ops.any(m, axis=1)
        return ops.where(has_any, pooled, ops.zeros_like(pooled))


def safe_mask(mask):
    """Boolean ``mask != 0``, with the first slot of an all-padding row switched on.

    Recurrent and attention layers then always see at least one step (no
    empty softmax or empty scan on CPU or cuDNN); callers zero or mask out
    what such a row produces.
    """
    real = ops.not_equal(mask, 0)
    has_events = ops.any(real, axis=1, keepdims=True)
    first = ops.expand_dims(ops.arange(ops.shape(real)[1]) == 0, 0)
    return ops.logical_or(real, ops.logical_and(first, ops.logical_not(has_events)))


@keras.saving.register_keras_serializable(package="purchase_intent")
class BehaviourLSTM(keras.layers.Layer):
    """LSTM over the event embeddings; output is the state after the last real event.

    Args:
        units: int. LSTM width.
        dropout: float. Dropout on the LSTM inputs.
    """

    def __init__(self, units=64, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dropout = dropout
        self.lstm = keras.layers.LSTM(units, dropout=dropout, name="lstm")

    def build(self, x_shape, mask_shape=None):
        self.lstm.build(x_shape)

    def call(self, x, mask, training=None):
        has_events = ops.any(ops.not_equal(mask, 0), axis=1, keepdims=True)
        # An all-padding row still gets one (padding) step, then its output is zeroed.
        h = self.lstm(x, mask=safe_mask(mask), training=training)
        return h * ops.cast(has_events, h.dtype)

    def compute_output_shape(self, x_shape, mask_shape=None):
        return (x_shape[0], self.units)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "dropout": self.dropout})
        return config


@keras.saving.register_keras_serializable(package="purchase_intent")
class BehaviourCNN(keras.layers.Layer):
    """Conv1D over the event embeddings, then masked max and mean pooling.

    ``Conv1D`` drops Keras masks, so padded slots are zeroed before the
    convolution and excluded from both poolings here.

    Args:
        filters: int. Convolution filters.
        kernel_size: int. Window in events.
    """

    def __init__(self, filters=64, kernel_size=3, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.conv = keras.layers.Conv1D(filters, kernel_size, padding="same", activation="relu",
                                        name="conv")
        self.max_pool = MaskedMaxPool(name="max_pool")
        self.mean_pool = MaskedMeanPool(name="mean_pool")

    def build(self, x_shape, mask_shape=None):
        self.conv.build(x_shape)

    def call(self, x, mask):
        w = ops.expand_dims(ops.cast(ops.not_equal(mask, 0), x.dtype), -1)
        # TF 2.21's CPU Conv1D returns its *input* shape for an empty batch (an
        # empty replica batch under MirroredStrategy, or an empty request), so
        # one all-zero example is appended for the convolution and dropped after.
        padded = ops.concatenate([x * w, ops.zeros_like(ops.sum(x, axis=0, keepdims=True))], axis=0)
        h = self.conv(padded)[:-1]
        return ops.concatenate([self.max_pool(h, mask), self.mean_pool(h, mask)], axis=-1)

    def compute_output_shape(self, x_shape, mask_shape=None):
        return (x_shape[0], 2 * self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "kernel_size": self.kernel_size})
        return config


@keras.saving.register_keras_serializable(package="purchase_intent")
class BehaviourTransformer(keras.layers.Layer):
    """A small Transformer encoder over the events (BST-style), then masked mean and max pooling.

    Learned position embeddings (counted from the most recent event, so a
    short history and a long one agree on what "last" means) are added to the
    projected events; ``num_layers`` keras-hub ``TransformerEncoder`` blocks
    attend over the real events only. An all-padding row gives zeros.

    Args:
        units: int. Model width (events are projected to it).
        num_heads: int. Attention heads.
        num_layers: int. Encoder blocks.
        max_length: int. Longest sequence (positions).
        dropout: float. Dropout inside the blocks.
    """

    def __init__(self, units=64, num_heads=2, num_layers=1, max_length=50, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        import keras_hub

        self.units, self.num_heads, self.num_layers = units, num_heads, num_layers
        self.max_length, self.dropout = max_length, dropout
        self.project = keras.layers.Dense(units, name="project")
        self.positions = keras.layers.Embedding(max_length, units, name="positions")
        self.encoders = [keras_hub.layers.TransformerEncoder(2 * units, num_heads, dropout=dropout,
                                                             name=f"encoder_{i}")
                         for i in range(num_layers)]
        self.max_pool = MaskedMaxPool(name="max_pool")
        self.mean_pool = MaskedMeanPool(name="mean_pool")

    def build(self, x_shape, mask_shape=None):
        self.project.build(x_shape)
        self.positions.build((None, x_shape[1]))
        for enc in self.encoders:
            enc.build((x_shape[0], x_shape[1], self.units))

    def call(self, x, mask, training=None):
        real = ops.not_equal(mask, 0)
        length = ops.shape(mask)[1]
        # Events are right-padded: position 0 is the most recent real event.
        n_real = ops.sum(ops.cast(real, "int32"), axis=1, keepdims=True)
        pos = ops.clip(n_real - 1 - ops.expand_dims(ops.arange(length), 0), 0, self.max_length - 1)
        h = self.project(x) + self.positions(pos)
        # An all-padding row attends to its first slot only (its output is dropped by the pools).
        attend = safe_mask(mask)
        for enc in self.encoders:
            h = enc(h, padding_mask=attend, training=training)
        return ops.concatenate([self.max_pool(h, mask), self.mean_pool(h, mask)], axis=-1)

    def compute_output_shape(self, x_shape, mask_shape=None):
        return (x_shape[0], 2 * self.units)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "num_heads": self.num_heads, "num_layers": self.num_layers,
                       "max_length": self.max_length, "dropout": self.dropout})
        return config


def token_fingerprints(token_ids) -> "np.ndarray":
    """64-bit fingerprints of rows of token ids (numpy), equal to :class:`CachedTextEncoder`'s in-graph ones."""
    import numpy as np

    ids = np.asarray(token_ids).astype(np.int64)
    w = _fingerprint_weights(ids.shape[1])
    with np.errstate(over="ignore"):
        return (ids * w[None, :]).sum(axis=1)  # wraps modulo 2**64, like TF's int64


def _fingerprint_weights(length: int):
    import numpy as np

    rng = np.random.default_rng(1234567)
    return (rng.integers(1, 2**62, size=length, dtype=np.int64) | 1)


@keras.saving.register_keras_serializable(package="purchase_intent")
class CachedTextEncoder(keras.layers.Layer):
    """A frozen text encoder replaced by a table of its precomputed outputs.

    Stands in for a frozen keras-hub backbone in :func:`purchase_intent.model.build_model`:
    each token-id row is looked up by a 64-bit fingerprint in a table of mean-pooled
    embeddings computed once per distinct text, and the embedding is repeated
    over the token axis, so the model's masked mean pool returns it unchanged.
    Rows not in the table (texts unseen when the table was built) get zeros.
    Training stands-in only (``task.build_members`` with ``text_cache``, ``compare``):
    the evaluated and exported model runs the backbone itself.

    The config holds ``keys`` and ``table`` as lists (exact: float32 values
    survive JSON), so :meth:`from_config` rebuilds the same lookup.

    Args:
        keys: int64 array ``[n]``. :func:`token_fingerprints` of the cached texts' token ids.
        table: float32 array ``[n, hidden_dim]``. Their mean-pooled embeddings.
    """

    def __init__(self, keys, table, **kwargs):
        kwargs.pop("trainable", None)  # from_config: always frozen
        super().__init__(trainable=False, **kwargs)
        import numpy as np
        import tensorflow as tf

        self._keys = np.asarray(keys, np.int64).reshape(-1)
        self._values = np.asarray(table, np.float32)
        self.hidden_dim = int(self._values.shape[1])
        table = np.concatenate([np.zeros((1, self.hidden_dim), np.float32), self._values])
        self._table = tf.constant(table)
        self._lookup = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(self._keys),
                                                tf.range(1, len(self._keys) + 1, dtype=tf.int64)),
            default_value=0)
        self._length = None

    def call(self, inputs):
        import tensorflow as tf

        ids = tf.cast(inputs["token_ids"], tf.int64)
        w = tf.constant(_fingerprint_weights(int(ids.shape[1])))
        rows = self._lookup.lookup(tf.reduce_sum(ids * w[None, :], axis=1))
        emb = tf.gather(self._table, rows)
        return {"sequence_output": tf.tile(emb[:, None, :], [1, tf.shape(ids)[1], 1])}

    def compute_output_spec(self, inputs):
        ids = inputs["token_ids"]
        return {"sequence_output": keras.KerasTensor((ids.shape[0], ids.shape[1], self.hidden_dim),
                                                     dtype="float32")}

    def get_config(self):
        config = super().get_config()
        config.update({"keys": self._keys.tolist(), "table": self._values.tolist()})
        return config


@keras.saving.register_keras_serializable(package="purchase_intent")
class AttentionPool(keras.layers.Layer):
    """DIN-style attention pooling of event vectors, queried by a context vector.

    Scores each event from ``[event, query, event * query, event - query]``
    (query and events projected to ``units``) with a small MLP, softmaxes over
    the real events (mask non-zero) and returns the weighted sum of the
    projected events. An all-masked row gives zeros.

    Args:
        units: int. Width of the projections and the scoring MLP.
    """

    def __init__(self, units=32, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.key_proj = keras.layers.Dense(units, name="key_proj")
        self.query_proj = keras.layers.Dense(units, name="query_proj")
        self.score_hidden = keras.layers.Dense(units, activation="relu", name="score_hidden")
        self.score = keras.layers.Dense(1, name="score")

    def build(self, x_shape, query_shape=None, mask_shape=None):
        self.key_proj.build(x_shape)
        self.query_proj.build(query_shape)
        self.score_hidden.build((None, None, 4 * self.units))
        self.score.build((None, None, self.units))

    def call(self, x, query, mask):
        k = self.key_proj(x)  # [b, t, u]
        q = ops.expand_dims(self.query_proj(query), 1)  # [b, 1, u]
        q = ops.broadcast_to(q, ops.shape(k))
        s = self.score(self.score_hidden(ops.concatenate([k, q, k * q, k - q], axis=-1)))[..., 0]
        m = ops.not_equal(mask, 0)
        s = ops.where(m, s, ops.full_like(s, very_negative(s.dtype)))
        a = ops.softmax(s, axis=1) * ops.cast(m, s.dtype)
        return ops.sum(k * ops.expand_dims(a, -1), axis=1)

    def compute_output_shape(self, x_shape, query_shape=None, mask_shape=None):
        return (x_shape[0], self.units)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units})
        return config


def id_counts(ids):
    """Per event: how often its id occurs in its row (padding: 0), as float32 ``[batch, events]``.

    Linear in the events (a long history costs no ``[events, events]``
    comparison): each (row, id) pair becomes one int64 key, ``Unique`` numbers
    the keys and a segment sum counts them; core ops only.
    """
    import tensorflow as tf

    ids = tf.cast(ids, tf.int64)
    shape = tf.shape(ids)
    span = tf.reduce_max(ids) + 1 if ids.shape.rank else 1
    keys = tf.range(tf.cast(shape[0], tf.int64))[:, None] * tf.maximum(span, 1) + ids
    _, index = tf.unique(tf.reshape(keys, [-1]))
    flat_index = tf.reshape(index, [-1])
    counts = tf.math.unsorted_segment_sum(tf.ones_like(flat_index, tf.float32), flat_index,
                                          tf.size(flat_index))
    per_event = tf.reshape(tf.gather(counts, flat_index), shape)
    return tf.where(ids != 0, per_event, tf.zeros_like(per_event))


def bag_weights(ids, normalize=False, idf=None):
    """Per-event weights that turn a sum over events into a sum over the distinct ids of a row.

    For ids ``[batch, events]`` (0 = padding), an id seen ``c`` times gets the
    sublinear term frequency ``1 + log c`` (times ``idf[id]`` if given) in all,
    spread over its ``c`` events, so ``sum(weights * f(ids))`` equals ``sum over
    distinct ids of tf-idf(id) * f(id)``: the row of scikit-learn's
    ``TfidfVectorizer(sublinear_tf=True, norm=None)`` (``norm="l2"`` with
    ``normalize``; ``use_idf=False`` without ``idf``) times ``f``. Computed from
    an ``[events, events]`` comparison: core ops, no vocabulary-sized tensor.
    """
    real = ops.not_equal(ids, 0)
    count = ops.maximum(id_counts(ids), 1.0)
    weight = 1.0 + ops.log(count)
    if idf is not None:
        weight = weight * ops.take(idf, ops.cast(ids, "int32"), axis=0)
    per_event = ops.where(real, weight / count, ops.zeros_like(count))
    if normalize:  # sum over events of w^2 / c = sum over distinct ids of w^2
        norm = ops.sqrt(ops.sum(per_event * weight, axis=1, keepdims=True))
        per_event = per_event / ops.maximum(norm, 1e-12)
    return per_event


def cross_ids(a, b, b_vocabulary_size, buckets):
    """Ids of the pair (``a``, ``b``) per event, in ``[0, buckets)``; 0 where ``a`` or ``b`` is padding."""
    a64, b64 = ops.cast(a, "int64"), ops.cast(b, "int64")
    crossed = (a64 * b_vocabulary_size + b64) % (buckets - 1) + 1
    real = ops.logical_and(ops.not_equal(a, 0), ops.not_equal(b, 0))
    return ops.cast(ops.where(real, crossed, ops.zeros_like(crossed)), "int32")


@keras.saving.register_keras_serializable(package="purchase_intent")
class CrossIds(keras.layers.Layer):
    """:func:`cross_ids` as a layer: ``[a_ids, b_ids]`` -> ids of the pairs in ``[0, buckets)``.

    Args:
        b_vocabulary_size: int. Ids ``b`` can take.
        buckets: int. Number of crossed ids (0 = padding).
    """

    def __init__(self, b_vocabulary_size, buckets, **kwargs):
        super().__init__(**kwargs)
        self.b_vocabulary_size, self.buckets = b_vocabulary_size, buckets

    def call(self, pair):
        return cross_ids(pair[0], pair[1], self.b_vocabulary_size, self.buckets)

    def compute_output_shape(self, shapes):
        return shapes[0]

    def compute_output_spec(self, pair):
        return keras.KerasTensor(pair[0].shape, dtype="int32")

    def get_config(self):
        config = super().get_config()
        config.update({"b_vocabulary_size": self.b_vocabulary_size, "buckets": self.buckets})
        return config


@keras.saving.register_keras_serializable(package="purchase_intent")
class BagLinear(keras.layers.Layer):
    """The wide (linear) term of a bag of ids: ``scale * sum over distinct ids of w[id] * tf(id)``.

    ``tf`` is the sublinear term frequency ``1 + log count`` of :func:`bag_weights`
    (L2-normalised over the row with ``normalize``). Equal to a logistic
    regression's linear term over the bag-of-ids count vector, without building
    that vector. ``scale`` multiplies the input, as in the text bag of words:
    Adam moves each weight about one learning rate per step, so a larger scale
    lets the wide weights reach a logistic regression's size within few epochs.

    Args:
        vocabulary_size: int. Number of ids (0 = padding).
        scale: float. Input scale.
        l2: float. L2 penalty on the weights.
        normalize: bool. L2-normalise each row's bag.
        idf: list of float or None. Inverse document frequency per id (from
            the training data), as in TF-IDF; None: 1 for every id.
    """

    def __init__(self, vocabulary_size, scale=1.0, l2=0.0, normalize=False, idf=None, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size, self.scale, self.l2, self.normalize = vocabulary_size, scale, l2, normalize
        self.idf = None if idf is None else [float(v) for v in idf]
        if self.idf is not None and len(self.idf) != vocabulary_size:
            raise ValueError(f"idf has {len(self.idf)} values for {vocabulary_size} ids")

    def build(self, ids_shape):
        self.w = self.add_weight(shape=(self.vocabulary_size,), initializer="zeros", name="w",
                                 regularizer=keras.regularizers.L2(self.l2) if self.l2 else None)

    def call(self, ids):
        idf = None if self.idf is None else ops.convert_to_tensor(self.idf, "float32")
        per_event = bag_weights(ids, self.normalize, idf)
        w = ops.take(self.w, ops.cast(ids, "int32"), axis=0)
        return self.scale * ops.sum(per_event * w, axis=1, keepdims=True)

    def compute_output_shape(self, ids_shape):
        return (ids_shape[0], 1)

    def get_config(self):
        config = super().get_config()
        config.update({"vocabulary_size": self.vocabulary_size, "scale": self.scale, "l2": self.l2,
                       "normalize": self.normalize, "idf": self.idf})
        return config


@keras.saving.register_keras_serializable(package="purchase_intent")
class SequenceStats(keras.layers.Layer):
    """Counts of the kept events: what a count-based peer sees, made explicit for the deep part.

    Takes a list of id tensors ``[batch, events]`` (0 = padding) and returns
    ``[has_events, log1p(events), log1p(distinct ids) per id input,
    log1p(count of each value) per small-vocabulary input]`` (e.g. how many
    views, carts and purchases), one row per example.

    With ``log=False`` the counts themselves, exact integers in float32 (the
    distinct count rounded, so no summation order can move it): what the
    boosted trees compare with their thresholds.

    Args:
        count_vocabularies: list of int. For each id input, its vocabulary size
            if its value counts are wanted (a small vocabulary such as event
            types), else 0.
        log: bool. ``log1p`` of the counts (True) or the counts.
    """

    def __init__(self, count_vocabularies=(), log=True, **kwargs):
        super().__init__(**kwargs)
        self.count_vocabularies = list(count_vocabularies)
        self.log = bool(log)

    def call(self, ids_list):
        scale = ops.log1p if self.log else (lambda c: c)
        real = ops.cast(ops.not_equal(ids_list[0], 0), "float32")
        n = ops.sum(real, axis=1, keepdims=True)
        out = [ops.cast(n > 0, "float32"), scale(n)]
        for ids, vocab in zip(ids_list, self.count_vocabularies):
            real_ids = ops.cast(ops.not_equal(ids, 0), "float32")
            distinct = ops.sum(real_ids / ops.maximum(id_counts(ids), 1.0), axis=1, keepdims=True)
            out.append(scale(distinct if self.log else ops.round(distinct)))
            if vocab:
                counts = ops.sum(ops.one_hot(ops.cast(ids, "int32"), vocab), axis=1)[:, 1:]
                out.append(scale(counts))
        return ops.concatenate(out, axis=-1)

    def compute_output_shape(self, shapes):
        width = 2 + len(self.count_vocabularies) + sum(max(v - 1, 0) for v in self.count_vocabularies)
        return (shapes[0][0], width)

    def get_config(self):
        config = super().get_config()
        config.update({"count_vocabularies": self.count_vocabularies, "log": self.log})
        return config


@keras.saving.register_keras_serializable(package="purchase_intent")
class IdDropout(keras.layers.Layer):
    """In training, replaces each real id by the out-of-vocabulary id 1 with probability ``rate``.

    Item-id dropout: the model cannot lean on memorised ids alone and learns
    what the unseen-item embedding should mean. Padding (0) is kept.

    Args:
        rate: float. Probability of dropping an id.
        seed: int. Seed of the dropout noise.
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, ids, training=None):
        if not training or self.rate <= 0:
            return ids
        drop = keras.random.uniform(ops.shape(ids), seed=self.seed_generator) < self.rate
        return ops.where(ops.logical_and(drop, ops.not_equal(ids, 0)), ops.ones_like(ids), ids)

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config
