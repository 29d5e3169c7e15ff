import numpy as np
import pandas as pd
import tensorflow as tf

from purchase_intent.preprocessing import Preprocessor, raw_batch
from purchase_intent.schema import FeatureSchema
from purchase_intent.text import load_text_encoder

SCHEMA = FeatureSchema(label="y", text=["q"], sequences=["items"], numeric=["x"], categorical=["c"])


def make(n=20):
    rng = np.random.default_rng(0)
    return SCHEMA.validate(pd.DataFrame({
        "q": ["red dress"] * n,
        "items": [[f"i{j}" for j in rng.integers(0, 5, rng.integers(0, 6))] for _ in range(n)],
        "x": rng.normal(size=n),
        "c": rng.choice(["UK", "DE"], n),
        "y": rng.integers(0, 2, n),
    }))


def preprocessor(train, max_len=4):
    tok, _ = load_text_encoder("tiny", texts=list(train["q"]))
    return Preprocessor.adapt(SCHEMA, train, max_sequence_length=max_len, text_sequence_length=6,
                              tokenizer=tok)


def test_truncation_keeps_most_recent_and_pads():
    train = make()
    pre = preprocessor(train)
    df = train.head(2).copy()
    df.at[0, "items"] = ["i0", "i1", "i2", "i3", "i4", "i0"]  # longer than max_len=4
    df.at[1, "items"] = []  # zero events
    out = pre(raw_batch(df, SCHEMA))
    lookup = pre.lookups["items"]
    expected = lookup(tf.constant([["i2", "i3", "i4", "i0"]])).numpy()
    np.testing.assert_array_equal(out["items"].numpy()[0], expected[0])
    np.testing.assert_array_equal(out["items"].numpy()[1], [0, 0, 0, 0])


def test_history_keeps_more_events_than_the_encoders_read():
    train = make()
    tok, _ = load_text_encoder("tiny", texts=list(train["q"]))
    pre = Preprocessor.adapt(SCHEMA, train, max_sequence_length=2, history_length=5, text_sequence_length=6,
                             tokenizer=tok)
    df = train.head(2).copy()
    df.at[0, "items"] = ["i0", "i1", "i2", "i3", "i4", "i0"]
    df.at[1, "items"] = ["i3"]
    out = pre(raw_batch(df, SCHEMA))
    ids = pre.lookups["items"](tf.constant([["i1", "i2", "i3", "i4", "i0"], ["i3", "", "", "", ""]])).numpy()
    np.testing.assert_array_equal(out["items_history"].numpy(), ids)
    np.testing.assert_array_equal(out["items"].numpy(), [ids[0, -2:], ids[1, :2]])
    assert pre.model_input_specs()["items_history"] == ((5,), "int32")
    # No history output when it would be no longer than what the encoders read.
    short = Preprocessor.adapt(SCHEMA, train, max_sequence_length=4, history_length=4, text_sequence_length=6,
                               tokenizer=tok)
    assert "items_history" not in short(raw_batch(df, SCHEMA)) and short.history_names == []


def test_unseen_values_map_to_oov_not_padding():
    pre = preprocessor(make())
    df = make().head(1).copy()
    df.at[0, "items"] = ["never-seen"]
    df.at[0, "c"] = "FR"
    out = pre(raw_batch(df, SCHEMA))
    assert out["items"].numpy()[0, 0] == 1  # OOV bucket, distinct from padding 0
    assert out["c"].numpy()[0] == 0  # categorical OOV


def test_numeric_missing_is_imputed_and_flagged():
    pre = preprocessor(make())
    df = make().head(2).copy()
    df["x"] = np.array([np.nan, 1.0], np.float32)
    out = pre(raw_batch(df, SCHEMA))
    assert np.all(np.isfinite(out["numeric"].numpy()))
    np.testing.assert_array_equal(out["numeric_missing"].numpy()[:, 0], [1.0, 0.0])
    assert out["numeric"].numpy()[0, 0] == 0.0


def test_text_is_packed_with_cls_and_sep():
    train = make()
    pre = preprocessor(train)
    out = pre(raw_batch(train.head(1), SCHEMA))
    ids = out["q_token_ids"].numpy()[0]
    mask = out["q_padding_mask"].numpy()[0]
    assert out["q_padding_mask"].dtype == tf.int32
    assert ids[0] == pre.tokenizer.cls_token_id
    assert ids[mask.sum() - 1] == pre.tokenizer.sep_token_id
    assert mask.tolist() == [1, 1, 1, 1, 0, 0]


def test_piecewise_linear_bins_are_monotone_bounded_and_zero_when_missing():
    from purchase_intent.preprocessing import quantile_boundaries

    rng = np.random.default_rng(1)
    train = make(200)
    train["x"] = np.where(rng.random(200) < 0.6, 0.0, rng.lognormal(2, 1, 200)).astype(np.float32)
    pre = Preprocessor.adapt(SCHEMA.subset(["numeric"]), train, numeric_bins=8)
    edges = np.array(pre.numeric_edges)
    assert edges.shape == (1, 9)
    assert np.all(np.diff(edges[0]) >= 0)
    # 60 % zeros: the low quantiles coincide and are merged into one edge, not 5 empty bins.
    assert np.sum(np.diff(edges[0]) == 0) >= 4
    df = make(5).copy()
    df["x"] = np.array([-5.0, 0.0, 3.0, 1e6, np.nan], np.float32)
    out = pre(raw_batch(df, SCHEMA.subset(["numeric"])))["numeric_bins"].numpy()
    assert out.shape == (5, 8)
    assert np.all((out >= 0) & (out <= 1))
    # Monotone in x: a larger value is never encoded lower in any bin.
    assert np.all(np.diff(out[:4], axis=0) >= 0)
    np.testing.assert_array_equal(out[0], 0.0)  # below every edge
    assert np.sum(out[3]) == np.sum(np.diff(edges[0]) > 0)  # above every edge: each real bin full
    np.testing.assert_array_equal(out[4], 0.0)  # missing
    assert quantile_boundaries(np.array([np.nan, np.inf]), 4) == [0.0] * 5


def test_bag_of_words_matches_scikit_learn_tfidf():
    from sklearn.feature_extraction.text import TfidfVectorizer

    schema = FeatureSchema(label="y", text=["q"], numeric=["x"])
    words = ["red", "dress", "blue", "shirt", "linen", "summer", "sale", "wool"]
    rng = np.random.default_rng(2)
    df = schema.validate(pd.DataFrame({
        "q": [" ".join(rng.choice(words, rng.integers(1, 7))) for _ in range(60)],
        "x": rng.normal(size=60), "y": rng.integers(0, 2, 60)}))
    tok, _ = load_text_encoder("tiny", texts=list(df["q"]))
    pre = Preprocessor.adapt(schema, df, bag_of_words=40, tokenizer=tok, text_sequence_length=8)
    assert len(pre.bow_vocabulary) == 40 and all(isinstance(t, str) for t in pre.bow_vocabulary)
    assert any(" " in t for t in pre.bow_vocabulary)  # bigrams
    ref = TfidfVectorizer(vocabulary=pre.bow_vocabulary, ngram_range=(1, 2), sublinear_tf=True).fit(df["q"])
    np.testing.assert_allclose(pre.bow_idf, ref.idf_, rtol=1e-6)
    test = df.head(8).copy()
    test.loc[test.index[0], "q"] = "Red, DRESS! unseenword"  # case and punctuation are normalised
    out = pre(raw_batch(test, schema))["text_bow"].numpy()
    expected = ref.transform(["red dress unseenword"] + list(test["q"][1:])).toarray()
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # Round trip through the layer config (the tokenizer's included) keeps the same output.
    again = Preprocessor.from_config(pre.get_config())
    np.testing.assert_allclose(again(raw_batch(test, schema))["text_bow"].numpy(), out, atol=1e-7)


def test_bag_of_words_without_text_is_ignored_with_a_warning(caplog):
    schema = SCHEMA.subset(["numeric"])
    with caplog.at_level("WARNING"):
        pre = Preprocessor.adapt(schema, make(), bag_of_words=100)
    assert "text_bag_of_words=100 is ignored" in caplog.text
    assert "text_bow" not in pre(raw_batch(make().head(2), schema))


def test_rare_sequence_values_share_the_unseen_id():
    schema = FeatureSchema(label="y", sequences=["items"])
    train = schema.validate(pd.DataFrame({"items": [["a", "a", "b"], ["a", "c"], ["b"]], "y": [0, 1, 0]}))
    pre = Preprocessor.adapt(schema, train, max_sequence_length=3, min_frequency=2)
    assert pre.vocabularies["items"] == ["a", "b"]  # "c" seen once
    ids = pre(raw_batch(train, schema))["items"].numpy()
    np.testing.assert_array_equal(ids[1], [2, 1, 0])  # "c" -> the out-of-vocabulary id 1


def test_preprocessor_round_trips_through_its_config_tokenizer_included():
    """Every output (token ids, history, bins, bag of words) equal after ``from_config`` alone."""
    import json

    import keras
    from layer_test_case import run_layer_test

    train = make(40)
    train["q"] = [f"red dress {w}" for w in np.random.default_rng(4).choice(["linen", "sale", "wool"], 40)]
    tok, _ = load_text_encoder("tiny", texts=list(train["q"]))
    kwargs = Preprocessor.adapt(SCHEMA, train, max_sequence_length=3, history_length=5, text_sequence_length=6,
                                numeric_bins=4, bag_of_words=10, tokenizer=tok).get_config()
    kwargs["tokenizer"] = tok
    df = train.head(5).copy()
    df.at[0, "x"] = np.nan
    df.at[1, "items"] = []
    df.at[2, "q"] = "an unseen query"
    raw = raw_batch(df, SCHEMA)
    shapes = {"q_token_ids": (5, 6), "q_padding_mask": (5, 6), "items": (5, 3), "items_history": (5, 5),
              "c": (5,), "numeric": (5, 1), "numeric_missing": (5, 1), "numeric_exact": (5, 1),
              "numeric_bins": (5, 4), "text_bow": (5, len(kwargs["bow_vocabulary"]))}
    pre, out = run_layer_test(Preprocessor, kwargs, raw, shapes)
    config = json.loads(json.dumps(pre.get_config()))
    assert config["tokenizer"]["registered_name"] == keras.saving.get_registered_name(type(tok))
    assert config["tokenizer"]["config"]["vocabulary"] == tok.get_vocabulary()
    again = Preprocessor.from_config(config)
    assert again.tokenizer.get_vocabulary() == tok.get_vocabulary()
    assert again.tokenizer.cls_token_id == tok.cls_token_id
    np.testing.assert_array_equal(again(raw)["q_token_ids"].numpy(), out["q_token_ids"].numpy())


def test_spaces_around_the_sequence_delimiter_give_the_same_ids():
    """"i1 | i2" (CSV), "i1|i2", and raw values with spaces sent straight to the graph (a gRPC
    caller that skips the Python mirror) read the same events: known ids, not unseen ones."""
    train = make(30)
    pre = preprocessor(train)
    delimited = train.head(3).drop(columns=["items"]).assign(items=["i1 | i2", "i1|i2", " i1|i2 | "])
    df = SCHEMA.validate(delimited, where="t")
    assert df["items"].tolist() == [["i1 ", " i2"], ["i1", "i2"], [" i1", "i2 ", " "]]
    ids = pre(raw_batch(df, SCHEMA))["items"].numpy()
    raw = raw_batch(df, SCHEMA)
    raw["items"] = tf.constant([["i1 ", " i2", " "], ["i1", "i2", ""], ["\ti1", "i2\n", "  "]])
    direct = pre(raw)["items"].numpy()
    known = pre.lookups["items"](["i1", "i2"]).numpy().tolist()
    assert all(row.tolist() == known + [0, 0] for row in ids), ids
    np.testing.assert_array_equal(direct, ids)


def test_spaces_around_a_category_give_the_same_id_trained_either_way():
    """A CSV written "a, b" puts " UK" in the training table; a caller sends "UK" (or the reverse):
    the same known id both ways, never the unseen one (it was: a different answer, no error)."""
    spaced = make(30)
    spaced["c"] = " " + spaced["c"] + " "
    for train in (make(30), spaced):
        pre = preprocessor(train)
        assert set(pre.lookups["c"].get_vocabulary()[1:]) == {"UK", "DE"}
        raw = raw_batch(train.head(3), SCHEMA)
        raw["c"] = tf.constant(["UK", " UK", "\tUK\r\n"])
        ids = pre(raw)["c"].numpy().tolist()
        assert ids == [pre.lookups["c"](tf.constant("UK")).numpy()] * 3 and ids[0] != 0
