"""Training from a prepared directory gives the metrics of training on the same table in memory."""

import numpy as np
import pandas as pd
import pytest

from conftest import max_abs_diff
from purchase_intent import prepare, train
from purchase_intent.data.source import PreparedSplits
from purchase_intent.data.synthetic import SCHEMA, make_synthetic

N = 1_000


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards_table")
    df = make_synthetic(N, seed=11)
    df["split"] = np.random.default_rng(1).choice(["train", "validation", "test"], N, p=[0.6, 0.2, 0.2])
    pd.DataFrame(df).to_parquet(root / "sessions.parquet", row_group_size=250)
    SCHEMA.save(root / "schema.json")
    return root


def test_the_task_trains_alike_from_shards_and_in_memory(table, tmp_path):
    """The same table, prepared into shards and read in memory: the same split figures, the same
    preprocessor, and one epoch of the task (the training split in one shard, so both read it in the
    table's order and the same seeded shuffle draws the same batches) ends with the same weights and
    the same test predictions; the baselines fit the same training rows. (train.main from shards:
    the tests below and exactness_test.)"""
    import keras

    from purchase_intent.config import get_config
    from purchase_intent.data.source import open_splits
    from purchase_intent.task import PurchaseIntentTask

    common = ["data.split_column=split", "data.shuffle_buffer=2000", "train.boosted_trees=false"]
    prepare.main(["--input", str(table / "sessions.parquet"), "--schema", str(table / "schema.json"),
                  "--output", str(tmp_path / "prepared"), "--preset", "tiny", "--set", "data.split_column=split",
                  "--shard-examples", "1000"])
    sources = {"shards": [f"data.name={tmp_path / 'prepared'}"],
               "memory": [f"data.name={table / 'sessions.parquet'}", f"data.schema={table / 'schema.json'}"]}
    runs = {}
    for name, where in sources.items():
        cfg = get_config("tiny", overrides=[*where, *common])
        data = open_splits(cfg.data, seed=cfg.train.seed)
        keras.utils.set_random_seed(cfg.train.seed)
        task = PurchaseIntentTask(cfg, data)
        before = task.members[0].get_weights()
        task.fit(epochs=1)
        runs[name] = {"data": data, "before": before, "after": task.members[0].get_weights(),
                      "test": task.predict("test")}
    shards, memory = runs["shards"], runs["memory"]
    assert type(shards["data"]).__name__ == "PreparedSplits" and type(memory["data"]).__name__ == "FrameSplits"
    summary = shards["data"].summary()
    for split, figures in memory["data"].summary().items():
        assert summary[split] == pytest.approx(figures), split
    assert max_abs_diff(shards["before"], memory["before"]) == 0.0  # the same seed, the same initial weights
    assert max_abs_diff(memory["before"], memory["after"]) > 1e-3  # one epoch moved them: the check can fail
    assert max_abs_diff(shards["after"], memory["after"]) <= 1e-6
    np.testing.assert_allclose(shards["test"], memory["test"], atol=1e-6)
    assert len(shards["test"]) == memory["data"].examples("test")
    # The baselines are fitted on the training frame of each source: the same rows.
    pd.testing.assert_frame_equal(shards["data"].frame("train").reset_index(drop=True),
                                  memory["data"].frame("train").reset_index(drop=True), check_dtype=False,
                                  check_like=True)


@pytest.fixture(scope="module")
def with_ids(tmp_path_factory):
    """A prepared directory of a table with a customer id, in shards of 40 examples."""
    from purchase_intent.schema import FeatureSchema

    root = tmp_path_factory.mktemp("shards_ids")
    df = make_synthetic(500, seed=12)
    df["customer_id"] = [f"c{i:05d}" for i in np.random.default_rng(3).permutation(len(df))]
    df["split"] = np.random.default_rng(2).choice(["train", "validation", "test"], len(df), p=[0.5, 0.25, 0.25])
    df.to_parquet(root / "sessions.parquet", row_group_size=100)
    FeatureSchema.from_dict({**SCHEMA.to_dict(), "id": ["customer_id"]}).save(root / "schema.json")
    prepare.main(["--input", str(root / "sessions.parquet"), "--schema", str(root / "schema.json"),
                  "--output", str(root / "prepared"), "--preset", "tiny", "--set", "data.split_column=split",
                  "--shard-examples", "40"])
    return root, df


def test_evaluation_streams_big_splits_and_baselines_score_a_sample(with_ids, tmp_path, monkeypatch):
    from purchase_intent import evaluate
    from purchase_intent.data import source as source_module
    from purchase_intent.data.prepared import Prepared
    from purchase_intent.report import load_predictions

    root, df = with_ids
    calls = []
    read_frame = source_module.read_frame

    def spy(prepared, split, limit=None):
        calls.append((split, limit))
        return read_frame(prepared, split, limit)

    monkeypatch.setattr(source_module, "read_frame", spy)
    monkeypatch.setattr(source_module, "PREPARED_EVAL_SAMPLE", 50)
    metrics = train.main(["--data", str(root / "prepared"), "--output-dir", str(tmp_path / "run"), "--preset",
                          "tiny", "--epochs", "1", "--no-export"])
    assert calls and all(limit is not None for split, limit in calls if split != "train"), calls
    assert {split for split, _ in calls} == {"train", "validation", "test"}

    manifest = Prepared.load(root / "prepared")
    n_val, n_test = manifest.examples("validation"), manifest.examples("test")
    assert n_val > 50 and n_test > 50 and len(manifest.shards("test")) > 1
    predictions = pd.read_csv(tmp_path / "run" / "predictions_test.csv", dtype={"customer_id": str})
    assert len(predictions) == n_test  # every test example, the model's column only
    assert list(predictions.columns) == ["customer_id", "label", "purchase_intent", "purchase_label"]
    test_rows = df[df["split"] == "test"]  # one prepare process: the shards keep the table's order
    assert predictions["customer_id"].tolist() == test_rows["customer_id"].tolist()
    assert predictions["label"].tolist() == test_rows["label"].astype(int).tolist()

    # The model's metrics: its streamed probabilities of the whole test split.
    y, probs = load_predictions(tmp_path / "run" / "predictions_test.csv", ["customer_id"])
    ours = metrics["test"]["purchase_intent"]
    assert set(metrics["test"]) == {"purchase_intent"}
    assert ours["examples"] == n_test
    again = evaluate.binary_metrics(y, probs["purchase_intent"], ours["threshold"])
    for key in ("roc_auc", "pr_auc", "accuracy", "f1"):
        assert again[key] == pytest.approx(ours[key], abs=1e-6), key
    # The baselines beside every model on the same sample rows.
    assert metrics["baseline_eval_examples"] == {"validation": 50, "test": 50}
    comparison = metrics["baseline_comparison"]
    assert comparison["examples"] == {"validation": 50, "test": 50}
    assert set(comparison["test"]) == {"purchase_intent", "logistic_regression", "hist_gradient_boosting"}
    assert all(m["examples"] == 50 for m in comparison["test"].values())
    from sklearn.metrics import roc_auc_score

    assert comparison["test"]["purchase_intent"]["roc_auc"] == pytest.approx(
        roc_auc_score(y[:50], probs["purchase_intent"][:50]), abs=1e-6)
    assert "the same first 50 validation and 50 test examples" in (tmp_path / "run" / "metrics.txt").read_text()
    assert "scored a sample" in (tmp_path / "run" / "report.md").read_text()


def test_streamed_predictions_and_columns_follow_the_frame_order(with_ids):
    """Predicting a split from its shards gives the frame's predictions, row for row; ids and labels too."""
    from purchase_intent import task
    from purchase_intent.config import get_config
    from purchase_intent.data.prepared import Prepared, read_columns, read_frame

    root, df = with_ids
    prepared = Prepared.load(root / "prepared")
    cfg = get_config("tiny")
    pre, models, _ = task.build_members(cfg, prepared.schema, PreparedSplits(prepared), members=1)
    frame = read_frame(prepared, "validation")
    streamed = task.predict(models[0], cfg, prepared.schema, pre, prepared, "validation")
    assert len(streamed) == prepared.examples("validation") == len(frame)
    np.testing.assert_allclose(streamed, task.predict(models[0], cfg, prepared.schema, pre, frame), atol=1e-6)
    columns = read_columns(prepared, "validation")
    assert list(columns.columns) == ["customer_id", "label"]
    assert columns["label"].tolist() == frame["label"].tolist()
    assert columns["customer_id"].tolist() == df.loc[df["split"] == "validation", "customer_id"].tolist()
    assert list(read_columns(prepared, "test", ids=False).columns) == ["label"]


@pytest.fixture(scope="module")
def many_positives(tmp_path_factory):
    """A prepared directory whose validation split holds 181 positives of 250 (more than 8 bits count)."""
    root = tmp_path_factory.mktemp("shards_positives")
    df = make_synthetic(600, seed=13)
    df["split"] = ["validation"] * 250 + ["train"] * 250 + ["test"] * 100
    df["label"] = ([1] * 181 + [0] * 69) + [i % 3 == 0 for i in range(250)] + [i % 4 == 0 for i in range(100)]
    df["label"] = df["label"].astype(int)
    df.to_parquet(root / "sessions.parquet", row_group_size=200)
    SCHEMA.save(root / "schema.json")
    prepare.main(["--input", str(root / "sessions.parquet"), "--schema", str(root / "schema.json"),
                  "--output", str(root / "prepared"), "--preset", "tiny", "--set", "data.split_column=split",
                  "--shard-examples", "100"])
    return root


def test_validation_positives_past_127_are_counted_not_wrapped(many_positives, monkeypatch, caplog, tmp_path):
    """181 validation positives from shards: no small-validation warning (an 8-bit sum made them -75)."""
    import logging

    from purchase_intent.data.prepared import Prepared, label_counts

    prepared = Prepared.load(many_positives / "prepared")
    assert label_counts(prepared, "validation", "label") == (181, 250)
    assert label_counts(prepared, "train", "label") == (84, 250)
    ran = []
    monkeypatch.setattr(train, "run", lambda *args, **kwargs: ran.append(args) or {})  # no training
    with caplog.at_level(logging.WARNING):
        train.main(["--data", str(many_positives / "prepared"), "--output-dir", str(tmp_path / "run"),
                    "--preset", "tiny", "--no-export"])
    assert ran
    assert "validation split has only" not in caplog.text, caplog.text
    # The class weights of a split of shards: its counts, as the frame's labels give them.
    from purchase_intent.pipeline import class_weights, count_class_weights

    frame = pd.read_parquet(many_positives / "sessions.parquet")
    y_train = frame.loc[frame["split"] == "train", "label"].to_numpy()
    assert count_class_weights(*label_counts(prepared, "train", "label"), "balanced") == pytest.approx(
        class_weights(y_train, "balanced"))


def test_frozen_text_from_shards_is_cached_each_text_encoded_once(with_ids, monkeypatch):
    """From shards as in memory: a frozen encoder's scalar texts of every split, encoded once, looked up in training."""
    from purchase_intent import task, text
    from purchase_intent.data.prepared import Prepared, distinct_values, read_frame
    from purchase_intent.config import get_config
    from purchase_intent.pipeline import make_shard_dataset

    root, df = with_ids
    prepared = Prepared.load(root / "prepared")
    frames = {s: read_frame(prepared, s) for s in ("train", "validation", "test")}
    assert distinct_values(prepared, ["query"]) == distinct_values(frames, ["query"]) == sorted(set(df["query"]))
    encoded = []
    encode = text.encode_texts
    monkeypatch.setattr(text, "encode_texts", lambda tok, bb, texts, *a, **k: encoded.append(list(texts))
                        or encode(tok, bb, texts, *a, **k))
    text._MEMO.clear()
    cfg = get_config("tiny", overrides=["model.text_trainable_layers=0", "data.batch_size=32"])
    # The texts come from the shards (every split), not from a frame.
    pre, (model,), exportable = task.build_members(cfg, prepared.schema, PreparedSplits(prepared), members=1,
                                                   text_cache=True)
    layers = {type(layer).__name__ for layer in model.layers}
    assert "CachedTextEncoder" in layers and "BertBackbone" not in layers
    queries = set(df["query"])
    calls = [batch for batch in encoded if queries & set(batch)]
    assert len(calls) == 1 and sorted(calls[0]) == sorted(queries), "each distinct query encoded once"
    model.fit(make_shard_dataset(prepared, "train", pre, cfg.data, training=True), epochs=1, verbose=0)

    # The cache holds the texts of every split: the model with the backbone scores validation alike.
    (served,) = exportable([model])
    cached = task.predict(model, cfg, prepared.schema, pre, prepared, "validation")
    np.testing.assert_allclose(task.predict(served, cfg, prepared.schema, pre, prepared, "validation"),
                               cached, atol=1e-5)
