"""purchase_intent.trees: boosted trees in the graph equal scikit-learn's, and the stacked branch helps."""

import numpy as np
import pytest


def _fit(x, y, **params):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=0, **params).fit(x, y)


def test_tree_ensemble_equals_sklearn_margins_including_values_on_thresholds():
    from purchase_intent.trees import TreeEnsemble, tree_tables

    rng = np.random.default_rng(1)
    # Few distinct values per column: many test values sit exactly on a split's bin edge.
    x = np.column_stack([rng.integers(0, 7, 3000), rng.normal(size=3000).round(1),
                         np.float32(1 / 3) * rng.integers(0, 50, 3000), rng.normal(size=3000)]).astype("float32")
    y = ((x[:, 0] > 3) ^ (x[:, 1] * x[:, 2] > 1) | (x[:, 3] > 1.5)).astype(int)
    clf = _fit(x[:2000], y[:2000], max_iter=60, max_leaf_nodes=63)
    tables = tree_tables(clf)
    assert tables["depth"] >= 5 and tables["roots"].size == clf.n_iter_
    margin = TreeEnsemble(**tables)(x[2000:]).numpy().ravel()
    np.testing.assert_allclose(margin, clf.decision_function(x[2000:]), atol=1e-4)
    # Each example reaches the leaf sklearn reaches: the margins would differ by a whole leaf value otherwise.
    assert np.abs(margin - clf.decision_function(x[2000:])).max() < 1e-4


def test_thresholds_round_down_to_float32():
    from purchase_intent.trees import _float32_at_most

    t64 = np.array([0.1, 1 / 3, 1e-8, -2.5, np.inf])
    t32 = _float32_at_most(t64)
    assert t32.dtype == np.float32 and np.all(t32.astype(np.float64) <= t64)
    # the next float32 up is above the float64 threshold: v <= t32 iff v <= t64 for every float32 v
    assert np.all(np.nextafter(t32[:4], np.float32(np.inf)).astype(np.float64) > t64[:4])


def test_tree_ensemble_round_trips_through_its_config():
    from purchase_intent.trees import TreeEnsemble, tree_tables

    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 3)).astype("float32")
    layer = TreeEnsemble(**tree_tables(_fit(x, (x[:, 0] > 0).astype(int), max_iter=5)))
    again = TreeEnsemble.from_config(layer.get_config())
    np.testing.assert_array_equal(layer(x).numpy(), again(x).numpy())


def test_tree_ensemble_passes_the_layer_test():
    from layer_test_case import run_layer_test

    from purchase_intent.trees import TreeEnsemble, tree_tables

    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 4)).astype("float32")
    tables = tree_tables(_fit(x, (x[:, 0] * x[:, 1] > 0).astype(int), max_iter=8))
    layer, out = run_layer_test(TreeEnsemble, tables, x[:20], (20, 1), expected_num_trainable_weights=0,
                                expected_num_non_trainable_weights=4)
    assert not layer.trainable


def test_categorical_splits_are_refused():
    import pandas as pd

    from purchase_intent.trees import tree_tables

    frame = pd.DataFrame({"c": pd.Categorical(["a", "b", "c"] * 100), "x": np.arange(300.0)})
    clf = _fit(frame, np.array([1, 0, 0] * 100), max_iter=3, categorical_features="from_dtype")
    with pytest.raises(ValueError, match="numeric splits only"):
        tree_tables(clf)


def test_stacking_contains_platt_and_uses_an_informative_margin():
    from purchase_intent.calibration import Stacking, fit_platt, fit_stacking, logit

    rng = np.random.default_rng(0)
    s1, s2 = rng.normal(size=(2, 20000))
    y = (rng.random(20000) < 1 / (1 + np.exp(-(s1 + s2)))).astype(int)
    p = 1 / (1 + np.exp(-s1))  # the network sees s1; the trees' margin is s2
    a, c, b = fit_stacking(y, p, s2)
    assert abs(a - 1) < 0.1 and abs(c - 1) < 0.1 and abs(b) < 0.1
    a0, c0, b0 = fit_stacking(y, p, rng.normal(size=20000))  # an uninformative margin: about Platt
    assert abs(c0) < 0.05 and abs(a0 - fit_platt(y, p)[0]) < 0.05
    out = Stacking(a, c, b)([p.reshape(-1, 1).astype("float32"), s2.reshape(-1, 1).astype("float32")])
    np.testing.assert_allclose(out.numpy().ravel(), 1 / (1 + np.exp(-(a * logit(p) + c * s2 + b))), rtol=1e-4)
    assert fit_stacking(np.zeros(5), np.full(5, 0.3), np.zeros(5)) == (1.0, 0.0, 0.0)


def _banded(n, seed):
    """Numbers whose label sits in narrow bands of one column (trees find them; a small MLP in 3 epochs does not)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    x1, x2, x3 = rng.uniform(0, 10, n), rng.normal(size=n), rng.uniform(0, 1, n)
    band = (np.floor(x1 * 2) % 2 == 0)
    y = (rng.random(n) < np.where(band ^ (x3 > 0.7), 0.8, 0.15)).astype(int)
    return pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "device": rng.choice(["a", "b"], n), "y": y})


def test_stacked_trees_beat_the_network_alone_and_are_exported(tmp_path):
    import keras

    from purchase_intent import output_stage, task
    from purchase_intent.config import get_config
    from purchase_intent.evaluate import expected_calibration_error
    from purchase_intent.export import export_model, load_serving_fn
    from purchase_intent.preprocessing import raw_batch
    from purchase_intent.schema import FeatureSchema
    from purchase_intent.trees import TreeEnsemble
    from sklearn.metrics import roc_auc_score

    schema = FeatureSchema(label="y", numeric=["x1", "x2", "x3"], categorical=["device"])
    df = schema.validate(_banded(5000, 0))
    splits = {"train": df.iloc[:3000], "validation": df.iloc[3000:4000], "test": df.iloc[4000:]}
    # The default trees (the tiny preset's 40 small ones are for wiring tests).
    cfg = get_config("tiny", overrides=["train.epochs=3", "data.batch_size=128", "train.boosted_trees_max_iter=300",
                                        "train.boosted_trees_max_leaf_nodes=31"])
    keras.utils.set_random_seed(0)
    pre, model = task.build(cfg, schema, splits)
    train_ds, val_ds = task.datasets(cfg, schema, pre, splits)
    task.fit(model, cfg, train_ds, val_ds, steps_per_epoch=24)
    y_val, y_test = splits["validation"]["y"].to_numpy(), splits["test"]["y"].to_numpy()
    p_val = task.predict(model, cfg, schema, pre, splits["validation"])
    p_net = task.predict(model, cfg, schema, pre, splits["test"])

    stacked, info, trees = output_stage.fit_output(model, cfg, schema, pre, splits,
                                           y_val, p_val)
    assert isinstance(trees, TreeEnsemble) and info["method"] == "stack" and info["c"] > 0.3
    # The trees read the graph's features: numeric (3), missing flags (3), the device id, nothing else.
    assert output_stage.tree_feature_model(pre).output.shape[-1] == 7
    p = task.predict(stacked, cfg, schema, pre, splits["test"])
    auc_net, auc = roc_auc_score(y_test, p_net), roc_auc_score(y_test, p)
    assert auc > auc_net + 0.05, (auc, auc_net)
    assert expected_calibration_error(y_test, p) < 0.05

    vdir = export_model(stacked, pre, tmp_path, "m", 1)
    served = load_serving_fn(vdir)(**raw_batch(splits["test"].head(50), schema))["purchase_probability"]
    np.testing.assert_allclose(served.numpy().ravel(), p[:50], atol=1e-5)

    off = get_config("tiny", overrides=["train.boosted_trees=false"])
    platt, info_off, none = output_stage.fit_output(model, off, schema, pre, splits,
                                            y_val, p_val)
    assert none is None and info_off["method"] == "platt"
