import itertools

import numpy as np
import pytest

from purchase_intent.config import get_config
from purchase_intent.data.synthetic import SCHEMA, make_synthetic
from purchase_intent.pipeline import make_dataset
from purchase_intent.preprocessing import raw_batch
from purchase_intent.train import build

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
