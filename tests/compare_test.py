"""purchase_intent.compare: bootstrap, modality subsets, cached text encoder, end to end on a fixture (peers: baselines_test)."""

import json
from pathlib import Path

import numpy as np
import pytest

from purchase_intent import baselines, compare
from purchase_intent.data.online_retail import SCHEMA as RETAIL_SCHEMA
from purchase_intent.data.online_shoppers import SCHEMA as SHOPPERS_SCHEMA
from purchase_intent.data.synthetic import SCHEMA as SYNTHETIC_SCHEMA
from purchase_intent.data.synthetic import make_synthetic
from purchase_intent.data.womens_reviews import SCHEMA as REVIEWS_SCHEMA

DATA = Path(__file__).parent / "data"


def test_modality_subsets_skip_what_a_dataset_lacks():
    run, skipped = compare.modality_subsets(SHOPPERS_SCHEMA)
    assert list(run) == ["all"] and "no text" in skipped["text"] and "same features" in skipped["numeric"]
    run, skipped = compare.modality_subsets(REVIEWS_SCHEMA)
    assert list(run) == ["text", "numeric", "all"]
    assert "same features" in skipped["text+numeric"] and "no sequence" in skipped["sequence"]
    run, skipped = compare.modality_subsets(RETAIL_SCHEMA)
    assert list(run) == ["sequence", "numeric", "text+sequence", "sequence+numeric", "all"]
    assert "per-event text" in skipped["text"]
    assert run["all"].event_text == ["item_description"] and not run["sequence+numeric"].event_text


def test_markdown_table_has_calibration_columns():
    from purchase_intent import evaluate

    y = np.array([0, 1, 0, 1, 1, 0])
    p = {"purchase_intent": np.array([0.2, 0.7, 0.4, 0.9, 0.6, 0.1]), "xgboost": np.array([0.3, 0.6, 0.5, 0.8, 0.4, 0.2])}
    results = evaluate.evaluate_all(y, p, y, p)
    for m in results.values():
        m["roc_auc_ci95"] = [0.5, 1.0]
    table = compare.format_markdown(results, "xgboost").splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert "log loss" in header and "ECE" in header
    row = [c.strip() for c in table[2].strip("|").split("|")]
    assert float(row[header.index("ECE")]) == pytest.approx(results["purchase_intent"]["ece"], abs=1e-4)


def test_bootstrap_intervals_are_paired_and_ordered():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    good = y + rng.normal(0, 0.6, 400)
    bad = y + rng.normal(0, 2.0, 400)
    out = compare.bootstrap_auc(y, {"good": good, "bad": bad}, n=200, pairs=[("good", "bad")])
    lo, hi = out["models"]["good"]
    assert 0.5 < lo < hi < 1
    d = out["differences"]["good - bad"]
    assert d["low"] > 0 and d["p_le_0"] == 0.0


def test_cached_text_encoder_matches_the_backbone():
    import tensorflow as tf

    from purchase_intent.blocks import CachedTextEncoder, MaskedMeanPool, token_fingerprints
    from purchase_intent.text import encode_texts, load_text_encoder, make_packer

    texts = ["great dress", "too small for me", "", "great dress, love it"]
    tokenizer, backbone = load_text_encoder("tiny", texts=texts, tiny_vocab_size=100, tiny_hidden_dim=8,
                                            tiny_num_layers=1, max_sequence_length=12)
    ids, mask = make_packer(tokenizer, 12)(tokenizer(tf.constant(texts)))
    ids, mask = tf.cast(ids, tf.int32), tf.cast(mask, tf.int32)
    cached = CachedTextEncoder(token_fingerprints(ids.numpy()), encode_texts(tokenizer, backbone, texts, 12,
                                                                           progress=False))
    inputs = {"token_ids": ids, "segment_ids": tf.zeros_like(ids), "padding_mask": mask}
    want = MaskedMeanPool()(backbone(inputs)["sequence_output"], mask)
    got = MaskedMeanPool()(cached(inputs)["sequence_output"], mask)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-4)
    unseen = make_packer(tokenizer, 12)(tokenizer(tf.constant(["never seen"])))
    out = cached({"token_ids": tf.cast(unseen[0], tf.int32), "padding_mask": tf.cast(unseen[1], tf.int32)})
    assert np.all(out["sequence_output"].numpy() == 0)


def test_compare_end_to_end_on_fixture(tmp_path):
    """Tiny preset on the reviews fixture, frozen text: every peer, two subsets and a bootstrap interval
    in compare.json. (The fusion model is the task's, trainable text or not: task_test, tiny_run.)"""
    out_dir = tmp_path / "out"
    report = compare.main([
        "--preset", "tiny", "--data", "womens_reviews", "--set", f"data.path={DATA / 'womens_reviews_sample.csv.gz'}",
        "--set", "model.text_trainable_layers=0", "--set", "data.text_sequence_length=24",
        "--epochs", "1", "--bootstrap", "50", "--output-dir", str(out_dir), "--subsets", "text,all"])
    saved = json.loads((out_dir / "compare.json").read_text())
    assert saved["data"] == "womens_reviews" and "--bootstrap" in saved["argv"]
    expected = {compare.FUSION, *baselines.PEERS, baselines.TFIDF_PEER}
    for name, sub in saved["subsets"].items():
        assert set(sub["results"]) == expected, name
        for model, m in sub["results"].items():
            lo, hi = m["roc_auc_ci95"]
            assert 0 <= lo <= hi <= 1, model
            assert {"roc_auc", "pr_auc", "log_loss", "ece", "f1", "threshold", "val_roc_auc"} <= set(m)
        assert sub["best_peer"] in expected
        # The tiny preset fits each peer once (train.peer_grid=one), at the middle of its grid.
        assert set(sub["peers"]) == expected - {compare.FUSION}
        for peer, fitted in sub["peers"].items():
            assert len(fitted["grid"]) == 1, peer
            assert fitted["params"].items() >= {p: v[0] for p, v in baselines.ONE_POINT[peer].items()}.items()
        assert any(k.startswith("purchase_intent - ") for k in sub["bootstrap"]["differences"])
    assert set(saved["subsets"]) == {"text", "all"}
    assert report["subsets"].keys() == saved["subsets"].keys()


def test_fit_fusion_builds_under_the_mixed_precision_policy_and_restores_it(monkeypatch):
    import keras

    from purchase_intent.config import get_config

    cfg = get_config("tiny", overrides=["train.mixed_precision=mixed_bfloat16", "train.epochs=1",
                                        "train.calibration=none"])
    schema = SYNTHETIC_SCHEMA.subset(["sequence", "numeric"])
    df = SYNTHETIC_SCHEMA.validate(make_synthetic(240, seed=3))[[*schema.feature_names, schema.label]]
    splits = {"train": df.iloc[:160], "validation": df.iloc[160:200], "test": df.iloc[200:]}
    seen, build = [], compare.fusion_task

    def spy(*args, **kwargs):
        seen.append(keras.mixed_precision.dtype_policy().name)
        return build(*args, **kwargs)

    monkeypatch.setattr(compare, "fusion_task", spy)
    before = keras.mixed_precision.dtype_policy().name
    fit = compare.fit_fusion(cfg, schema, splits)
    assert seen == ["mixed_bfloat16"]
    assert keras.mixed_precision.dtype_policy().name == before
    assert fit["test"].dtype == np.float32 and np.all(np.isfinite(fit["test"])) and fit["test"].shape == (40,)
