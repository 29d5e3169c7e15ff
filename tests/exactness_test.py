"""Exports answer the same through TF Serving's own path (TF1 loader, Session, Grappler on) as in memory."""

import numpy as np
import pytest

from purchase_intent.exactness import (
    _float_keys,
    _key_floats,
    awkward_rows,
    boundary_values,
    compare_paths,
    export_tree_thresholds,
    split_thresholds,
)

TOLERANCE = 1e-6


def test_float_keys_keep_the_order_of_floats():
    x = np.array([-np.inf, -3.4e38, -1.0, -1e-45, -0.0, 0.0, 1e-45, 1.0, 3.4e38, np.inf], np.float32)
    keys = _float_keys(x)
    assert np.all(np.diff(keys) > 0)
    assert keys[5] - keys[4] == 1 and keys[6] - keys[5] == 1  # -0.0, 0.0, the smallest subnormal
    np.testing.assert_array_equal(_key_floats(keys).view(np.int32), x.view(np.int32))
    assert _float_keys(np.nextafter(np.float32(1.0), np.float32(2.0))) == _float_keys(np.float32(1.0)) + 1


def test_boundary_values_sit_on_each_threshold():
    mean, std = np.float32(3.7), np.float32(1.3)

    def standardised(r):
        return (np.asarray(r, np.float32) - mean) / std  # float32 arithmetic, as a graph does

    t = np.array([-2.0, 0.1, 0.7312, 5.0], np.float32)
    values = boundary_values(standardised, t)
    lo, hi = values[:4], values[4:]
    assert np.all(standardised(lo) <= t) and np.all(standardised(hi) > t)
    np.testing.assert_array_equal(np.nextafter(lo, np.float32(np.inf)), hi)  # adjacent floats


def test_split_thresholds_ignore_leaves():
    feature = np.array([0, 1, 0, 0, 2])
    threshold = np.array([0.5, 1.5, np.inf, 0.25, np.inf], np.float32)
    out = split_thresholds(feature, threshold)
    assert sorted(out) == [0, 1]
    np.testing.assert_array_equal(out[0], np.array([0.25, 0.5], np.float32))


@pytest.fixture(scope="module")
def stacked_export(tmp_path_factory):
    """A tiny network + boosted trees + stacking, exported: the default product's shape."""
    import keras

    from purchase_intent import output_stage, task
    from purchase_intent.config import get_config
    from purchase_intent.data import load_splits
    from purchase_intent.export import export_model

    cfg = get_config("tiny", overrides=["data.synthetic_examples=600", "train.boosted_trees_max_iter=60"])
    keras.utils.set_random_seed(0)
    schema, splits = load_splits(cfg.data, seed=0)
    pre, model = task.build(cfg, schema, splits)
    y_val = splits["validation"][schema.label].to_numpy()
    p_val = task.predict(model, cfg, schema, pre, splits["validation"])
    stacked, info, trees = output_stage.fit_output(model, cfg, schema, pre, splits,
                                           y_val, p_val)
    assert info["method"] == "stack" and trees is not None
    vdir = export_model(stacked, pre, tmp_path_factory.mktemp("stacked"), "m", 1)
    return {"model": stacked, "pre": pre, "schema": schema, "splits": splits, "vdir": vdir, "trees": trees}


def _in_memory(bundle, frame):
    from purchase_intent.preprocessing import raw_batch

    return bundle["model"](bundle["pre"](raw_batch(frame, bundle["schema"])), training=False).numpy().reshape(-1)


def test_trees_and_network_answer_alike_on_every_split_threshold(stacked_export):
    """Raw values whose tree feature sits exactly on (or one float beside) every split: no gap.

    The rows are found by bisection through the in-memory tree features, so
    they hit the thresholds whatever the trees read (before this fix, the
    standardised numbers: Grappler's ``x * (1/std)`` sent such rows down the other branch).
    """
    from purchase_intent import output_stage
    from purchase_intent.preprocessing import raw_batch

    b = stacked_export
    schema, pre = b["schema"], b["pre"]
    features = output_stage.tree_feature_model(pre)
    thresholds = split_thresholds(b["trees"].tables["feature"], b["trees"].tables["threshold"])
    numeric_splits = sum(len(thresholds.get(j, [])) for j in range(len(schema.numeric)))
    assert numeric_splits > 20, "the trees should split on the numbers"

    def feature_fn(frame):
        return features(pre(raw_batch(frame, schema)), training=False).numpy()

    rows = awkward_rows(b["splits"]["test"].head(8), schema, thresholds, feature_fn=feature_fn,
                        max_events=pre.wide_length)
    assert len(rows) > 2 * numeric_splits
    expected = _in_memory(b, rows)
    result = compare_paths(b["vdir"], rows, schema, expected=expected)
    assert result["max_abs_diff_in_memory_serving"] <= TOLERANCE, result
    assert result["max_abs_diff_serving"] <= TOLERANCE, result
    assert np.std(result["served"]) > 1e-3  # the rows are not all alike


def test_export_thresholds_are_the_raw_split_values(stacked_export):
    """Read back from the export, the thresholds split raw numbers: the generic check needs no model."""
    b = stacked_export
    from_export = export_tree_thresholds(b["vdir"])
    from_layer = split_thresholds(b["trees"].tables["feature"], b["trees"].tables["threshold"])
    assert sorted(from_export) == sorted(from_layer)
    for j in from_layer:
        np.testing.assert_array_equal(from_export[j], from_layer[j])
    rows = awkward_rows(b["splits"]["test"].head(4), b["schema"], from_export, max_events=b["pre"].wide_length)
    result = compare_paths(b["vdir"], rows, b["schema"], expected=_in_memory(b, rows))
    assert result["max_abs_diff_in_memory_serving"] <= TOLERANCE, result


def test_event_log_trained_from_prepared_shards_serves_exactly(tmp_path):
    """The event-log path and the prepared-data path, end to end: the run's own check through TF Serving's path."""
    from purchase_intent import prepare, train
    from purchase_intent.data.synthetic import CLICKSTREAM_COLUMNS, CLICKSTREAM_SCHEMA, make_synthetic_clickstream

    make_synthetic_clickstream(300, seed=4).to_csv(tmp_path / "events.csv", index=False)
    CLICKSTREAM_SCHEMA.save(tmp_path / "schema.json")
    sets = [f"data.{k}={v}" for k, v in CLICKSTREAM_COLUMNS.items()] + ["data.format=events"]
    prepare.main(["--input", str(tmp_path / "events.csv"), "--schema", str(tmp_path / "schema.json"),
                  "--output", str(tmp_path / "prepared"), "--preset", "tiny", "--shard-examples", "300",
                  *[a for s in sets for a in ("--set", s)]])
    metrics = train.main(["--data", str(tmp_path / "prepared"), "--output-dir", str(tmp_path / "run"),
                          "--preset", "tiny", "--epochs", "1", "--set", "train.boosted_trees_max_iter=40"])
    assert metrics["training"]["calibration"]["method"] == "stack"
    assert metrics["export"]["max_abs_diff_serving"] <= TOLERANCE, metrics["export"]
    assert metrics["export"]["serving_rows_checked"] > 20
