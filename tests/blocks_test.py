"""Masked pooling and the behaviour encoders: masks are lookup ids (0 = padding), not 0/1."""

import numpy as np
import pytest
import tensorflow as tf

from purchase_intent.blocks import BehaviourCNN, BehaviourLSTM, MaskedMaxPool, MaskedMeanPool

RNG = np.random.default_rng(0)
X = RNG.normal(size=(3, 5, 4)).astype("float32")
IDS = np.array([[7, 12, 3, 0, 0], [0, 0, 0, 0, 0], [2, 2, 2, 2, 99]], dtype="int32")
BINARY = (IDS != 0).astype("int32")


def test_mean_pool_uses_ids_as_a_mask_not_as_weights():
    out = MaskedMeanPool()(X, IDS).numpy()
    np.testing.assert_allclose(out[0], X[0, :3].mean(0), rtol=1e-6)
    np.testing.assert_allclose(out[1], 0.0)
    np.testing.assert_allclose(out[2], X[2].mean(0), rtol=1e-6)


def test_max_pool_ignores_padding_and_zeroes_empty_rows():
    out = MaskedMaxPool()(X, IDS).numpy()
    np.testing.assert_allclose(out[0], X[0, :3].max(0))
    np.testing.assert_allclose(out[1], 0.0)


@pytest.mark.parametrize("layer", [BehaviourCNN(filters=6, kernel_size=3), BehaviourLSTM(units=6)],
                         ids=["cnn", "lstm"])
def test_encoders_depend_on_the_mask_only_through_padding(layer):
    with_ids = layer(X, IDS).numpy()
    with_binary = layer(X, BINARY).numpy()
    np.testing.assert_allclose(with_ids, with_binary, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(with_ids))
    # Values in padded slots do not leak into the encoding.
    noisy = X.copy()
    noisy[IDS == 0] = 1e3
    np.testing.assert_allclose(layer(noisy, IDS).numpy(), with_ids, rtol=1e-5, atol=1e-5)


def test_cnn_handles_an_empty_batch_in_a_graph():
    """TF 2.21's CPU Conv1D returns its input shape for an empty batch; the block must not."""
    layer = BehaviourCNN(filters=6, kernel_size=3)
    layer(X, IDS)

    @tf.function(input_signature=[tf.TensorSpec([None, 5, 4]), tf.TensorSpec([None, 5], tf.int32)])
    def run(x, m):
        return layer(x, m)

    assert tuple(run(tf.zeros((0, 5, 4)), tf.zeros((0, 5), tf.int32)).shape) == (0, 12)


# -- wide part ---------------------------------------------------------------
def _bags(rows, vocab):
    """Token lists -> padded ids (0 padding, known token i -> i + 2) as the Preprocessor gives them."""
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), "int32")
    for i, r in enumerate(rows):
        ids[i, :len(r)] = [vocab.index(t) + 2 for t in r]
    return ids


@pytest.mark.parametrize("normalize", [False, True])
def test_bag_linear_equals_a_linear_model_on_scikit_learn_counts(normalize):
    from sklearn.feature_extraction.text import TfidfVectorizer

    from purchase_intent.blocks import BagLinear

    rng = np.random.default_rng(1)
    vocab = [f"sku{i}" for i in range(30)]
    rows = [list(rng.choice(vocab[:int(rng.integers(1, 30))], size=int(rng.integers(1, 12)))) for _ in range(40)]
    rows.append([])  # no events at all
    counts = TfidfVectorizer(analyzer=lambda r: r, vocabulary=vocab, use_idf=False, sublinear_tf=True,
                             norm="l2" if normalize else None).fit_transform(rows).toarray()
    layer = BagLinear(len(vocab) + 2, scale=3.0, normalize=normalize)
    ids = _bags([r or ["sku0"] for r in rows], vocab)
    ids[-1] = 0
    layer.build(ids.shape)
    w = rng.normal(size=len(vocab) + 2).astype("float32")
    layer.w.assign(w)
    expected = 3.0 * counts @ w[2:]
    np.testing.assert_allclose(layer(ids).numpy()[:, 0], expected, rtol=1e-5, atol=1e-5)


def test_cross_ids_are_distinct_per_pair_and_zero_on_padding():
    from purchase_intent.blocks import CrossIds

    a = np.array([[2, 2, 3, 0], [5, 2, 0, 0]], "int32")
    b = np.array([[2, 3, 2, 0], [3, 3, 0, 0]], "int32")
    out = CrossIds(4, 1000)([a, b]).numpy()
    assert (out[a == 0] == 0).all()
    pairs = {(x, y): v for x, y, v in zip(a.ravel(), b.ravel(), out.ravel()) if x}
    assert len(set(pairs.values())) == len(pairs) and min(pairs.values()) >= 1
    assert out[0, 0] != out[0, 1]  # same item, other event type


def test_sequence_stats_count_events_distinct_ids_and_small_vocabulary_values():
    from purchase_intent.blocks import SequenceStats

    items = np.array([[7, 7, 3, 0], [0, 0, 0, 0]], "int32")
    types = np.array([[2, 3, 3, 0], [0, 0, 0, 0]], "int32")  # vocabulary of 4 ids
    out = SequenceStats([0, 4])([items, types]).numpy()
    np.testing.assert_allclose(out[0], np.log1p([np.e - 1, 3, 2, 2, 0, 1, 2]), rtol=1e-6)
    np.testing.assert_allclose(out[1], 0.0)


def test_id_dropout_only_in_training_and_never_on_padding():
    from purchase_intent.blocks import IdDropout

    ids = np.tile(np.array([[5, 6, 7, 0]], "int32"), (500, 1))
    layer = IdDropout(0.3, seed=1)
    np.testing.assert_array_equal(layer(ids, training=False), ids)
    out = np.asarray(layer(ids, training=True))
    assert (out[:, 3] == 0).all()
    dropped = (out[:, :3] == 1).mean()
    assert 0.25 < dropped < 0.35, dropped
    assert ((out[:, :3] == ids[:, :3]) | (out[:, :3] == 1)).all()


def test_bag_linear_with_idf_equals_a_linear_model_on_scikit_learn_tfidf():
    from sklearn.feature_extraction.text import TfidfVectorizer

    from purchase_intent.blocks import BagLinear

    rng = np.random.default_rng(2)
    vocab = [f"sku{i}" for i in range(20)]
    rows = [list(rng.choice(vocab, size=int(rng.integers(1, 10)))) for _ in range(30)]
    vec = TfidfVectorizer(analyzer=lambda r: r, vocabulary=vocab, sublinear_tf=True, norm="l2")
    tfidf = vec.fit_transform(rows).toarray()
    idf = [0.0, 9.0] + list(vec.idf_)
    layer = BagLinear(len(vocab) + 2, normalize=True, idf=idf)
    ids = _bags(rows, vocab)
    layer.build(ids.shape)
    w = rng.normal(size=len(vocab) + 2).astype("float32")
    layer.w.assign(w)
    np.testing.assert_allclose(layer(ids).numpy()[:, 0], tfidf @ w[2:], rtol=1e-5, atol=1e-5)


def test_sequence_idf_of_the_preprocessor_is_scikit_learns():
    import pandas as pd
    from sklearn.feature_extraction.text import TfidfVectorizer

    from purchase_intent.preprocessing import Preprocessor
    from purchase_intent.schema import FeatureSchema

    schema = FeatureSchema(label="y", sequences=["items"])
    rows = [["a", "b", "a"], ["b"], ["c", "b"], []]
    pre = Preprocessor.adapt(schema, schema.validate(pd.DataFrame({"items": rows, "y": [0, 1, 0, 1]})))
    vocab = pre.vocabularies["items"]
    vec = TfidfVectorizer(analyzer=lambda r: r, vocabulary=vocab).fit(rows)
    np.testing.assert_allclose(pre.sequence_idf["items"][2:], vec.idf_, rtol=1e-9)



def test_masked_scores_stay_finite_in_float16():
    """Under mixed_float16 the masking score is finite (-1e9 overflowed: -inf and a numpy RuntimeWarning)."""
    import warnings

    import keras

    from purchase_intent.blocks import AttentionPool

    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        x, query, ids = keras.Input((5, 4)), keras.Input((2,)), keras.Input((5,), dtype="int32")
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            model = keras.Model([x, query, ids], [AttentionPool(4)(x, query, ids), MaskedMaxPool()(x, ids)])
            attention, pooled = model.predict([X, np.ones((3, 2), "float32"), IDS], verbose=0)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    assert np.all(np.isfinite(attention)) and np.all(attention[1] == 0)
    np.testing.assert_allclose(pooled, MaskedMaxPool()(X, IDS).numpy(), atol=1e-2)


# -- serialisation -------------------------------------------------------------
def _block_cases():
    from purchase_intent import blocks

    query = RNG.normal(size=(3, 2)).astype("float32")
    types = IDS % 4
    keys = blocks.token_fingerprints(IDS[[0, 2]])
    table = RNG.normal(size=(2, 6)).astype("float32")
    off = {"training": False}
    return [
        (blocks.MaskedMeanPool, {}, (X, IDS), (3, 4), {}),
        (blocks.MaskedMaxPool, {}, (X, IDS), (3, 4), {}),
        (blocks.BehaviourLSTM, {"units": 6, "dropout": 0.1}, (X, IDS), (3, 6), off),
        (blocks.BehaviourCNN, {"filters": 6, "kernel_size": 2}, (X, IDS), (3, 12), {}),
        (blocks.BehaviourTransformer, {"units": 8, "num_heads": 2, "num_layers": 2, "max_length": 5,
                                       "dropout": 0.1}, (X, IDS), (3, 16), off),
        (blocks.AttentionPool, {"units": 4}, (X, query, IDS), (3, 4), {}),
        (blocks.CrossIds, {"b_vocabulary_size": 4, "buckets": 50}, [IDS, types], (3, 5), {}),
        (blocks.BagLinear, {"vocabulary_size": 100, "scale": 2.0, "l2": 1e-3, "normalize": True,
                            "idf": [float(v) for v in np.linspace(0, 2, 100)]}, IDS, (3, 1), {}),
        (blocks.SequenceStats, {"count_vocabularies": [0, 4], "log": True}, [IDS, types], (3, 7), {}),
        (blocks.SequenceStats, {"count_vocabularies": [0, 4], "log": False}, [IDS, types], (3, 7), {}),
        (blocks.IdDropout, {"rate": 0.3, "seed": 1}, IDS, (3, 5), off),
        (blocks.CachedTextEncoder, {"keys": keys, "table": table},
         {"token_ids": IDS, "padding_mask": BINARY}, {"sequence_output": (3, 5, 6)}, {}),
    ]


@pytest.mark.parametrize("case", _block_cases(), ids=lambda c: c[0].__name__)
def test_every_block_round_trips_through_its_config(case):
    from layer_test_case import run_layer_test

    cls, kwargs, inputs, shape, call_kwargs = case
    run_layer_test(cls, kwargs, inputs, shape, call_kwargs=call_kwargs)


def test_cached_text_encoder_config_holds_its_table_exactly():
    """The revived lookup finds the same rows: keys are exact int64, the table exact float32."""
    import json

    from purchase_intent.blocks import CachedTextEncoder, token_fingerprints

    ids = RNG.integers(1, 2**31 - 1, size=(50, 7)).astype("int32")
    table = RNG.normal(size=(50, 5)).astype("float32") * np.float32(1 / 3)
    layer = CachedTextEncoder(token_fingerprints(ids), table)
    again = CachedTextEncoder.from_config(json.loads(json.dumps(layer.get_config())))
    out = again({"token_ids": ids, "padding_mask": np.ones_like(ids)})["sequence_output"].numpy()
    np.testing.assert_array_equal(out[:, 0], table)
    assert not again.trainable and again.hidden_dim == 5
