import itertools

import numpy as np
import pytest

from purchase_intent.config import get_config
from purchase_intent.data.synthetic import SCHEMA, make_synthetic
from purchase_intent.pipeline import make_dataset
from purchase_intent.preprocessing import raw_batch
from purchase_intent.task import build

SUBSETS = [list(c) for r in (1, 2, 3) for c in itertools.combinations(["text", "sequence", "numeric"], r)]


@pytest.fixture(scope="module")
def frames():
    df = SCHEMA.validate(make_synthetic(240, seed=3))
    return {"train": df.iloc[:160].reset_index(drop=True), "validation": df.iloc[160:200].reset_index(drop=True),
            "test": df.iloc[200:].reset_index(drop=True)}


@pytest.mark.parametrize("modalities", SUBSETS, ids=["+".join(s) for s in SUBSETS])
def test_every_modality_subset_builds_and_trains(frames, modalities):
    cfg = get_config("tiny", overrides=["train.epochs=1", "data.batch_size=32"])
    schema = SCHEMA.subset(modalities)
    splits = {k: v[[*schema.feature_names, schema.label]] for k, v in frames.items()}
    pre, model = build(cfg, schema, splits)
    model.run_eagerly = True  # wiring, not speed: five small steps run eagerly cost less than tracing them
    ds = make_dataset(splits["train"], schema, pre, cfg.data, training=True)
    before = [w.numpy().copy() for w in model.trainable_weights]
    hist = model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    changed = [not np.allclose(a, b.numpy()) for a, b in zip(before, model.trainable_weights)]
    assert any(changed), "no trainable weight moved"
    probs = model.predict(make_dataset(splits["test"], schema, pre, cfg.data, training=False), verbose=0)
    assert probs.shape == (len(splits["test"]), 1) and np.all((probs > 0) & (probs < 1))


@pytest.mark.parametrize("encoder", ["lstm", "cnn", "both", "transformer", "cnn+transformer"])
def test_empty_and_overlong_sequences_give_finite_output(frames, encoder):
    cfg = get_config("tiny", overrides=[f"model.sequence_encoder={encoder}"])
    schema = SCHEMA.subset(["text", "sequence"])
    pre, model = build(cfg, schema, frames)
    df = frames["test"].head(3).copy()
    for col in schema.sequence_like:
        df.at[0, col] = []  # zero events
        df.at[1, col] = ["sku1"] * 500  # far longer than max_sequence_length
    out = model(pre(raw_batch(df, schema)), training=False).numpy()
    assert np.all(np.isfinite(out)), out
    assert out.shape == (3, 1)


def test_the_wide_part_reads_the_history_the_encoders_do_not(frames):
    """An event older than the encoders' window changes the output through the wide bags and counts only."""
    cfg = get_config("tiny", overrides=["data.max_sequence_length=4", "data.max_history_length=10",
                                        "model.sequence_encoder=cnn"])
    schema = SCHEMA.subset(["sequence"])
    splits = {k: v[[*schema.feature_names, schema.label]] for k, v in frames.items()}
    pre, model = build(cfg, schema, splits)
    assert pre.history_names == list(schema.sequences)
    df = splits["test"].head(2).copy()
    item = schema.sequences[0]
    known = pre.vocabularies[item][:2]
    for col in schema.sequence_like:
        df.at[0, col] = list(splits["train"][col].iloc[0][:1]) * 8
        df.at[1, col] = list(df.at[0, col])
    df.at[0, item] = [known[0]] * 8
    df.at[1, item] = [known[1]] + [known[0]] * 7  # differs 8 events back: outside the 4 the encoders read
    inputs = pre(raw_batch(df, schema))
    np.testing.assert_array_equal(inputs[item].numpy()[0], inputs[item].numpy()[1])
    assert not np.array_equal(inputs[f"{item}_history"].numpy()[0], inputs[f"{item}_history"].numpy()[1])
    wide = model.get_layer(f"{item}_wide")
    wide.w.assign(np.arange(wide.w.shape[0], dtype="float32") / 10)
    out = model(inputs, training=False).numpy()[:, 0]
    assert abs(out[0] - out[1]) > 1e-4, out


def test_the_tabular_wide_term_is_a_linear_model_on_the_numeric_and_one_hot_categorical_inputs(frames):
    """``model.wide_tabular``: wide logit = w . (scale * [numeric inputs, event counts]) + scale * v[category]."""
    import keras

    from purchase_intent.model import wide_part

    cfg = get_config("tiny", overrides=["model.wide_tabular=true", "model.wide_sequences=false",
                                        "model.wide_scale=3", "model.numeric_bins=4"])
    schema = SCHEMA.subset(["sequence", "numeric"])
    assert schema.categorical, "the fixture needs a categorical column"
    splits = {k: v[[*schema.feature_names, schema.label]] for k, v in frames.items()}
    pre, model = build(cfg, schema, splits)
    rng = np.random.default_rng(0)
    dense = model.get_layer("numeric_wide")
    dense.kernel.assign(rng.normal(size=dense.kernel.shape).astype("float32"))
    tables = {}
    for name in schema.categorical:
        emb = model.get_layer(f"{name}_wide")
        tables[name] = rng.normal(size=emb.embeddings.shape).astype("float32")
        emb.embeddings.assign(tables[name])
    wide = wide_part(model)
    inputs = pre(raw_batch(splits["test"], schema))
    counts = keras.Model(model.input, model.get_layer("sequence_stats").output)(inputs).numpy()
    x = np.concatenate([inputs[n].numpy() for n in ("numeric", "numeric_missing", "numeric_bins")] + [counts],
                       axis=1)
    assert x.shape[1] == len(schema.numeric) * (2 + 4) + counts.shape[1] and counts.shape[1] >= 4
    logit = 3.0 * x @ dense.kernel.numpy()[:, 0]
    for name in schema.categorical:
        logit += 3.0 * tables[name][inputs[name].numpy(), 0]
    bias = model.get_layer("deep_logit").bias.numpy()[0]
    expected = 1 / (1 + np.exp(-(logit + bias)))
    np.testing.assert_allclose(wide(inputs, training=False).numpy()[:, 0], expected, rtol=1e-4, atol=1e-6)
    # and it is part of the model: +5 on every weight of a category moves the full model's logit by scale x 5
    full_logit = keras.Model(model.input, model.get_layer("wide_deep_logit").output)
    before = full_logit(inputs, training=False).numpy()
    name = schema.categorical[0]
    model.get_layer(f"{name}_wide").embeddings.assign(tables[name] + 5.0)
    np.testing.assert_allclose(full_logit(inputs, training=False).numpy() - before, 15.0, rtol=1e-4)


def test_ensemble_mean_passes_the_layer_test_and_keeps_the_shared_text_encoder(frames):
    """The members of a run share the text encoder; from_config shares it again (one set of weights)."""
    from layer_test_case import run_layer_test

    from purchase_intent.model import EnsembleMean
    from purchase_intent.task import build_members

    cfg = get_config("tiny")
    pre, members, _ = build_members(cfg, SCHEMA, frames, members=2)
    inputs = {k: v.numpy() for k, v in pre(raw_batch(frames["test"].head(6), SCHEMA)).items()}
    layer, out = run_layer_test(EnsembleMean, {"models": members, "dtype": "float32"}, inputs, (6, 1),
                                call_kwargs={"training": False}, atol=1e-6)
    np.testing.assert_allclose(out.numpy(), np.mean([m(inputs, training=False).numpy() for m in members], 0),
                               atol=1e-6)
    config = layer.get_config()
    name = next(l.name for l in members[0].layers if type(l).__name__.endswith("Backbone"))  # the text encoder
    assert config["shared_layers"] == [{}, {name: [0, name]}]
    assert all("compile_config" not in m for m in config["models"])
    again = EnsembleMean.from_config(config)
    assert again.members[1].get_layer(name) is again.members[0].get_layer(name)
