"""pipeline.py: in-memory tf.data batches, class weights, sharding per input pipeline, distribution.

Small synthetic frames and a preprocessor without scalar text (no tokenizer, no model). The shard
path (``make_shard_dataset`` over a prepared directory) is tested with ``prepare`` in prepare_test.py.
"""

import numpy as np
import pytest
import tensorflow as tf

from purchase_intent.config import get_config
from purchase_intent.data.synthetic import SCHEMA, make_synthetic
from purchase_intent.data.source import pipeline_files, raw_examples
from purchase_intent.pipeline import (batch_examples, class_weights, distributed_dataset, make_dataset,
                                      on_service, preprocess_blocks)
from purchase_intent.preprocessing import Preprocessor, raw_batch

N = 150
SUB = SCHEMA.subset(["sequence", "numeric"])  # sequences, numeric, categorical: no tokenizer needed


@pytest.fixture(scope="module")
def frame():
    return SUB.validate(make_synthetic(N, seed=3))


@pytest.fixture(scope="module")
def cfg():
    return get_config("tiny", overrides=["data.batch_size=32", "data.max_sequence_length=6",
                                         "data.max_history_length=10"]).data


@pytest.fixture(scope="module")
def pre(frame, cfg):
    return Preprocessor.adapt(SUB, frame, max_sequence_length=cfg.max_sequence_length,
                              history_length=cfg.max_history_length)


def batches(ds):
    return list(ds.as_numpy_iterator())


def numeric_rows(parts):
    """The examples of a list of batches as hashable rows of their numeric inputs."""
    return [tuple(row) for x, *_ in parts for row in x["numeric"]]


# -- make_dataset --------------------------------------------------------------------------
def test_evaluation_batches_have_the_batch_size_input_names_and_labels_in_order(frame, cfg, pre):
    ds = make_dataset(frame, SUB, pre, cfg, training=False)
    assert int(ds.cardinality()) == -(-N // cfg.batch_size)
    parts = batches(ds)
    assert [len(y) for _, y in parts] == [32, 32, 32, 32, 22]
    specs = pre.model_input_specs()
    for x, y in parts:
        assert set(x) == set(specs) and y.shape == (len(y), 1) and y.dtype == np.float32
        for name, (shape, dtype) in specs.items():
            assert x[name].shape == (len(y), *shape) and x[name].dtype == dtype, name
    labels = np.concatenate([y for _, y in parts]).reshape(-1)
    np.testing.assert_array_equal(labels, frame["label"].to_numpy(np.float32))


def test_an_evaluation_dataset_of_a_source_is_built_once_per_preprocessor(frame, cfg, pre):
    import gc

    from purchase_intent import pipeline
    from purchase_intent.data.source import FrameSplits

    source = FrameSplits({"validation": frame}, SUB)
    first = make_dataset(source, SUB, pre, cfg, training=False, split="validation")
    assert make_dataset(source, SUB, pre, cfg, training=False, split="validation") is first
    again = batches(first), batches(first)  # iterated twice: the same batches
    np.testing.assert_array_equal(np.concatenate([y for _, y in again[0]]), np.concatenate([y for _, y in again[1]]))
    # Not reused: a training dataset, another batch size, another preprocessor, a frame (a new source each call).
    assert make_dataset(source, SUB, pre, cfg, training=True, split="validation") is not first
    other_cfg = get_config("tiny", overrides=["data.batch_size=16"]).data
    assert make_dataset(source, SUB, pre, other_cfg, training=False, split="validation") is not first
    other_pre = Preprocessor.adapt(SUB, frame, max_sequence_length=cfg.max_sequence_length,
                                   history_length=cfg.max_history_length)
    assert make_dataset(source, SUB, other_pre, cfg, training=False, split="validation") is not first
    assert make_dataset(frame, SUB, pre, cfg, training=False) is not make_dataset(frame, SUB, pre, cfg, training=False)
    key = id(source)
    assert key in pipeline._EVAL_DATASETS
    del source, first, again
    gc.collect()
    assert key not in pipeline._EVAL_DATASETS  # the source's datasets go with it


def test_predict_batches_is_model_predict_traced_once_per_model(frame, cfg, pre):
    """Every batch scored in order, the last (shorter) one included, by one trace per model and input spec."""
    import keras

    from purchase_intent import pipeline
    from purchase_intent.model import model_inputs

    inputs = model_inputs(pre)
    numbers = [keras.layers.Flatten()(keras.ops.cast(x, "float32")) for x in inputs.values()]
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Concatenate()(numbers)))
    ds = make_dataset(frame, SUB, pre, cfg, training=False)  # 150 examples: 4 batches of 32, then 22
    np.testing.assert_allclose(pipeline.predict_batches(model, ds), model.predict(ds, verbose=0), atol=1e-6)
    shorter = make_dataset(frame.head(40), SUB, pre, cfg, training=False)  # another batch count, the same spec
    assert pipeline.predict_batches(model, shorter).shape == (40, 1)
    assert pipeline._PREDICT_FUNCTIONS[model][1].experimental_get_tracing_count() == 1
    with pytest.raises(ValueError, match="no batch"):
        pipeline.predict_batches(model, ds.take(0))


def test_examples_equal_the_preprocessor_on_the_frame(frame, cfg, pre):
    """Block-wise truncation/padding and unbatching change nothing: as the serving path computes them."""
    parts = batches(make_dataset(frame, SUB, pre, cfg, training=False))
    direct = pre(raw_batch(frame, SUB))
    for name in direct:
        got = np.concatenate([x[name] for x, _ in parts])
        np.testing.assert_allclose(got, direct[name].numpy(), rtol=1e-6, err_msg=name)
    # Long sequences keep their most recent events (the preprocessor's history length here).
    longest = int(np.argmax([len(v) for v in frame["item_id"]]))
    assert len(frame["item_id"].iloc[longest]) > cfg.max_history_length
    ids = np.concatenate([x["item_id_history"] for x, _ in parts])[longest]
    vocab = ["", "[UNK]"] + pre.vocabularies["item_id"]
    assert [vocab[i] for i in ids] == frame["item_id"].iloc[longest][-cfg.max_history_length:]


def test_every_pipeline_of_a_preprocessor_reuses_one_trace_of_it(frame, cfg):
    """Training and evaluation pipelines (any split, any order) call one traced function of the preprocessor."""
    from purchase_intent.pipeline import traced_preprocessor

    fresh = Preprocessor.adapt(SUB, frame, max_sequence_length=cfg.max_sequence_length,
                               history_length=cfg.max_history_length)
    fn = traced_preprocessor(fresh)
    assert traced_preprocessor(fresh) is fn
    datasets = [make_dataset(frame.iloc[:100], SUB, fresh, cfg, training=True),
                make_dataset(frame.iloc[100:], SUB, fresh, cfg, training=False)]
    assert fn.experimental_get_tracing_count() == 1
    parts = batches(datasets[1])
    direct = fresh(raw_batch(frame.iloc[100:], SUB))
    for name in direct:  # the traced call computes what the layer computes
        np.testing.assert_array_equal(np.concatenate([x[name] for x, _ in parts]), direct[name].numpy(), name)
    assert traced_preprocessor(Preprocessor.adapt(SUB, frame)) is not fn  # one per preprocessor


def test_training_shuffles_every_epoch_and_keeps_every_example(frame, cfg, pre):
    ds = make_dataset(frame, SUB, pre, cfg, training=True, seed=1)
    first, second = numeric_rows(batches(ds)), numeric_rows(batches(ds))
    in_order = numeric_rows(batches(make_dataset(frame, SUB, pre, cfg, training=False)))
    assert sorted(first) == sorted(second) == sorted(in_order) and len(first) == N
    assert first != in_order and first != second
    # The same seed gives the same first epoch; a one-example shuffle buffer keeps the order.
    assert numeric_rows(batches(make_dataset(frame, SUB, pre, cfg, training=True, seed=1))) == first
    cfg1 = get_config("tiny", overrides=["data.shuffle_buffer=1", "data.batch_size=32",
                                         "data.max_sequence_length=6", "data.max_history_length=10"]).data
    assert numeric_rows(batches(make_dataset(frame, SUB, pre, cfg1, training=True, seed=1))) == in_order


def test_weights_are_a_third_element_by_label(frame, cfg, pre):
    weights = {0: 0.25, 1: 4.0}
    parts = batches(make_dataset(frame, SUB, pre, cfg, training=False, weights=weights))
    assert all(len(p) == 3 for p in parts)
    for _, y, w in parts:
        assert w.shape == (len(y),)
        np.testing.assert_array_equal(w, np.where(y[:, 0] > 0.5, 4.0, 0.25).astype(np.float32))
    assert all(len(p) == 2 for p in batches(make_dataset(frame, SUB, pre, cfg, training=False)))


def test_input_context_shards_examples_and_batches_per_replica(frame, cfg, pre):
    contexts = [tf.distribute.InputContext(2, i, 2) for i in range(2)]
    parts = [batches(make_dataset(frame, SUB, pre, cfg, training=False, ctx=c)) for c in contexts]
    assert all(len(y) <= cfg.batch_size // 2 for p in parts for _, y in p)
    rows = [numeric_rows(p) for p in parts]
    everything = numeric_rows(batches(make_dataset(frame, SUB, pre, cfg, training=False)))
    assert rows[0] == everything[0::2] and rows[1] == everything[1::2]
    # Training: full per-replica batches only, the same number of steps in every pipeline.
    train = [batches(make_dataset(frame, SUB, pre, cfg, training=True, ctx=c)) for c in contexts]
    assert {len(y) for p in train for _, y in p} == {cfg.batch_size // 2}
    assert len(train[0]) == len(train[1]) == (N // 2) // (cfg.batch_size // 2)


def test_distributed_dataset_with_one_replica_is_make_dataset(frame, cfg, pre):
    strategy = tf.distribute.get_strategy()
    ds = distributed_dataset(strategy, frame, SUB, pre, cfg, training=False)
    assert isinstance(ds, tf.data.Dataset)
    got = batches(ds)
    want = batches(make_dataset(frame, SUB, pre, cfg, training=False))
    assert numeric_rows(got) == numeric_rows(want)
    np.testing.assert_array_equal(np.concatenate([y for _, y in got]), np.concatenate([y for _, y in want]))


# -- the shared stages ---------------------------------------------------------------------
def test_preprocess_blocks_then_batch_examples_as_make_dataset(frame, cfg, pre):
    labels = frame["label"].to_numpy(np.float32).reshape(-1, 1)
    blocks = tf.data.Dataset.from_tensor_slices((raw_examples(frame, SUB), labels)).batch(40)
    examples = preprocess_blocks(blocks, SUB, pre, cfg)
    ds = batch_examples(examples, cfg, training=False, seed=0, weights=None, ctx=None, examples_here=N,
                        smallest_pipeline=N, cache=False)
    assert int(ds.cardinality()) == -(-N // cfg.batch_size)
    got, want = batches(ds), batches(make_dataset(frame, SUB, pre, cfg, training=False))
    assert numeric_rows(got) == numeric_rows(want)
    for (xa, _), (xb, _) in zip(got, want):
        for k in xb:
            np.testing.assert_array_equal(xa[k], xb[k], err_msg=k)


def test_raw_examples_keep_ragged_sequences(frame):
    raw = raw_examples(frame.head(5), SUB)
    assert isinstance(raw["item_id"], tf.RaggedTensor)
    assert raw["item_id"].row_lengths().numpy().tolist() == [len(v) for v in frame["item_id"].head(5)]
    assert raw["session_minutes"].dtype == tf.float32 and raw["device"].dtype == tf.string


def test_no_service_leaves_the_dataset_as_it_is(cfg):
    ds = tf.data.Dataset.range(3)
    assert on_service(ds, cfg) is ds


# -- class weights -------------------------------------------------------------------------
def test_balanced_class_weights_are_n_over_twice_the_class_count():
    labels = np.array([1] * 30 + [0] * 70)
    w = class_weights(labels, "balanced")
    assert w == pytest.approx({0: 100 / (2 * 70), 1: 100 / (2 * 30)})
    assert 70 * w[0] == pytest.approx(30 * w[1])  # both classes weigh the same in total


@pytest.mark.parametrize("labels, mode, expected", [
    ([1] * 30 + [0] * 70, "none", None),
    ([1] * 30 + [0] * 70, "auto", None),  # 30 % positives: no weights
    ([1] * 10 + [0] * 90, "auto", {0: 100 / 180, 1: 100 / 20}),  # < 20 %: balanced
    ([1] * 90 + [0] * 10, "auto", {0: 100 / 20, 1: 100 / 180}),  # > 80 %: balanced
    ([1] * 10, "balanced", None),  # one class: nothing to balance
    ([], "balanced", {0: 1.0, 1: 1.0}),  # no labels: the rate counts as 0.5, neutral weights
])
def test_class_weight_modes(labels, mode, expected):
    got = class_weights(np.array(labels), mode)
    assert got == (pytest.approx(expected) if expected else None)


# -- files per input pipeline --------------------------------------------------------------
def test_pipeline_files_without_a_context_is_every_file():
    assert pipeline_files(["a", "b"], [3, 4], None) == (["a", "b"], False, 7, 7)


def test_pipeline_files_divides_files_or_examples_among_pipelines():
    ctx = [tf.distribute.InputContext(2, i, 2) for i in range(2)]
    paths, counts = ["a", "b", "c"], [10, 10, 5]
    assert pipeline_files(paths, counts, ctx[0]) == (["a", "c"], False, 15, 10)
    assert pipeline_files(paths, counts, ctx[1]) == (["b"], False, 10, 10)
    # Fewer files than pipelines: every pipeline reads every file and keeps every other example.
    assert pipeline_files(["a"], [7], ctx[0]) == (["a"], True, 4, 3)
    assert pipeline_files(["a"], [7], ctx[1]) == (["a"], True, 3, 3)
