"""The two data sources give the run the same examples: counts, statistics, texts, labels and raw blocks."""

import numpy as np
import pandas as pd
import pytest

from purchase_intent import prepare
from purchase_intent.data.source import FrameSplits, PreparedSplits, as_splits
from purchase_intent.data.synthetic import SCHEMA, make_synthetic

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The same 300-row table as frames in memory and prepared into shards of 30 examples."""
    from purchase_intent.data.prepared import Prepared

    root = tmp_path_factory.mktemp("source")
    df = make_synthetic(300, seed=21)
    df["split"] = np.random.default_rng(4).choice(SPLITS, len(df), p=[0.6, 0.2, 0.2])
    df.to_parquet(root / "table.parquet")
    SCHEMA.save(root / "schema.json")
    prepare.main(["--input", str(root / "table.parquet"), "--schema", str(root / "schema.json"),
                  "--output", str(root / "prepared"), "--preset", "tiny", "--set", "data.split_column=split",
                  "--shard-examples", "30"])
    frames = {s: SCHEMA.validate(df[df["split"] == s].reset_index(drop=True)) for s in SPLITS}
    return FrameSplits(frames, SCHEMA), PreparedSplits(Prepared.load(root / "prepared"))


def test_counts_are_python_ints_and_agree(both):
    memory, shards = both
    for split in SPLITS:
        positives, examples = shards.label_counts(split)
        assert type(positives) is int and type(examples) is int
        assert (positives, examples) == memory.label_counts(split)
        assert shards.positive_rate(split) == pytest.approx(memory.positive_rate(split))
    _assert_close(memory.summary(), shards.summary(), "summary")


def test_labels_texts_and_frames_agree_row_for_row(both):
    memory, shards = both
    for split in SPLITS:
        np.testing.assert_array_equal(shards.columns(split, ids=False)[SCHEMA.label].to_numpy(),
                                      memory.columns(split)[SCHEMA.label].to_numpy())
        assert not shards.sampled(split) and not memory.sampled(split)
        pd.testing.assert_series_equal(shards.frame(split)["session_minutes"],
                                       memory.frame(split)["session_minutes"], check_names=False)
    assert shards.distinct_values(SCHEMA.text) == memory.distinct_values(SCHEMA.text)
    assert len(memory.distinct_values(SCHEMA.text)) > 5


def test_one_adapt_path_gives_the_same_preprocessor_from_either_source(both):
    from purchase_intent.config import get_config
    from purchase_intent.task import adapt_preprocessor

    cfg = get_config("tiny", overrides=["model.numeric_bins=4"])
    memory, shards = both
    schema = SCHEMA.subset(["sequence", "numeric"])  # scalar text needs a tokenizer: not this test's point
    a = adapt_preprocessor(cfg, schema, memory).get_config()
    b = adapt_preprocessor(cfg, schema, shards).get_config()
    assert a["numeric_edges"] and a["vocabularies"]["item_id"]
    a.pop("name"), b.pop("name")  # Keras numbers the second layer's name
    _assert_close(a, b, "config")


def _assert_close(a, b, where):
    """Equal structures; floats equal to 1e-9 (moments merged from shards differ in the last bits)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), where
    else:
        assert a == b, where


def test_raw_blocks_in_evaluation_order_are_the_same_examples(both):
    memory, shards = both
    for source in both:
        blocks = source.raw_blocks("validation", block=16, training=False)
        assert blocks.examples == memory.examples("validation")
    got = []
    for source in both:
        blocks = source.raw_blocks("validation", block=16, training=False).dataset
        numbers, items, labels = [], [], []
        for raw, y in blocks:
            numbers.append(raw["session_minutes"].numpy())
            items += [[v.decode() for v in row] for row in raw["item_id"].to_list()]
            labels.append(y.numpy().reshape(-1))
        got.append((np.concatenate(numbers), items, np.concatenate(labels)))
    np.testing.assert_array_equal(got[0][0], got[1][0])
    assert got[0][1] == got[1][1]
    np.testing.assert_array_equal(got[0][2], got[1][2])


def test_raw_blocks_divide_a_split_among_input_pipelines(both):
    import tensorflow as tf

    memory, shards = both
    n = memory.examples("train")
    for source in both:
        parts = [source.raw_blocks("train", block=32, training=False,
                                   ctx=tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i))
                 for i in range(2)]
        assert sum(p.examples for p in parts) == n
        assert [sum(int(y.shape[0]) for _, y in p.dataset) for p in parts] == [p.examples for p in parts]
    assert memory.raw_blocks("train", block=32, training=True).in_memory
    assert not shards.raw_blocks("train", block=32, training=True).in_memory


def test_as_splits_takes_frames_one_frame_or_a_source(both):
    memory, _ = both
    assert as_splits(memory) is memory
    one = as_splits(memory.frame("test"), SCHEMA, "test")
    assert one.examples("test") == memory.examples("test") and one.splits == ("test",)
    assert as_splits({"train": memory.frame("train")}, SCHEMA).examples("train") == memory.examples("train")
