"""purchase_intent.baselines: categorical levels for the trees, baselines that fail soft, the peers of compare."""

import logging

import numpy as np
import pandas as pd
import pytest

from purchase_intent import baselines, evaluate
from purchase_intent.data.online_retail import SCHEMA as RETAIL_SCHEMA
from purchase_intent.data.synthetic import SCHEMA as SYNTHETIC_SCHEMA
from purchase_intent.data.synthetic import make_synthetic
from purchase_intent.data.womens_reviews import SCHEMA as REVIEWS_SCHEMA
from purchase_intent.schema import FeatureSchema

SCHEMA = FeatureSchema(numeric=["x"], categorical=["shop"])


@pytest.fixture(autouse=True)
def one_thread():
    """One BLAS/OpenMP thread: at this size it is fast, and idle threads spin on a busy CI machine."""
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime: the limit applies to loaded ones)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def _frame(n: int = 1200, shops: int = 400, seed: int = 0) -> pd.DataFrame:
    """``x`` carries the signal; ``shop`` has ``shops`` distinct values (more than HGB's 255)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x": rng.normal(size=n), "shop": [f"s{i % shops}" for i in range(n)]})
    df["label"] = (df["x"] + rng.normal(size=n) > 0).astype(int)
    return df


def test_category_levels_keep_the_most_frequent_training_values():
    train = pd.DataFrame({"c": ["a"] * 3 + ["b"] * 2 + ["c"] * 2 + ["d"]})
    levels = baselines.category_levels(train, ["c"], max_levels=2)
    assert levels == {"c": ["a", "b"]}  # "b" and "c" tie: the smaller value wins
    assert baselines.category_levels(train, ["c"]) == {"c": ["a", "b", "c", "d"]}
    out = baselines.to_categories(pd.DataFrame({"c": ["a", "c", "zzz"]}), levels)
    assert list(out["c"].cat.categories) == ["a", "b"]
    assert out["c"].isna().tolist() == [False, True, True]


def test_fit_baselines_take_a_categorical_with_more_levels_than_hist_gradient_boosting():
    """400 shops: HistGradientBoosting keeps the 254 most frequent (it raised on more than 255)."""
    train, test = _frame(), _frame(seed=1)
    test.loc[:9, "shop"] = "never seen"
    fitted = baselines.fit_baselines(train, None, SCHEMA, seed=0)
    assert set(fitted) == set(baselines.BASELINES)
    probs = baselines.predict_baselines(fitted, test, SCHEMA)
    for name, p in probs.items():
        assert p.shape == (len(test),) and np.all((p >= 0) & (p <= 1)), name
        assert evaluate.binary_metrics(test["label"], p, 0.5)["roc_auc"] > 0.7, name
    hgb = fitted["hist_gradient_boosting"]
    assert len(hgb[0].kw_args["levels"]["shop"]) == baselines.HGB_MAX_LEVELS


@pytest.mark.parametrize("stage", ["fit", "predict"])
def test_a_failing_baseline_is_skipped_with_a_warning(monkeypatch, caplog, stage):
    """One baseline raising (while fitting or predicting) leaves the other one and names the error."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    def boom(self, *args, **kwargs):
        raise ValueError("column 'shop' is broken")

    monkeypatch.setattr(HistGradientBoostingClassifier, "fit" if stage == "fit" else "predict_proba", boom)
    splits = {"train": _frame(400, 20), "validation": _frame(200, 20, seed=1), "test": _frame(200, 20, seed=2)}
    with caplog.at_level(logging.WARNING, logger="purchase_intent.baselines"):
        probs, skipped = baselines.baseline_predictions(splits, SCHEMA)
    assert set(probs) == {"validation", "test"}
    assert all(list(p) == ["logistic_regression"] for p in probs.values())
    assert skipped == {"hist_gradient_boosting": "ValueError: column 'shop' is broken"}
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "hist_gradient_boosting" in warning and "column 'shop' is broken" in warning
    assert ("fitting" if stage == "fit" else "predicting the validation split") in warning


def test_sequence_peer_bags_events_and_their_crosses():
    """Listed only with sequences; beats tabular logistic regression where items and event types carry signal."""
    assert baselines.SEQUENCE_PEER in baselines.peer_names(RETAIL_SCHEMA)
    assert baselines.SEQUENCE_PEER not in baselines.peer_names(REVIEWS_SCHEMA)
    assert baselines.SEQUENCE_PEER not in baselines.peer_names(RETAIL_SCHEMA.subset(["numeric"]))
    assert baselines.peer_names(REVIEWS_SCHEMA, [baselines.SEQUENCE_PEER, "xgboost"]) == ["xgboost"]
    df = make_synthetic(900, seed=0)
    tokens = baselines.sequence_tokens(df, SYNTHETIC_SCHEMA)
    row = df.iloc[1]
    n = len(row["item_id"])
    assert len(tokens[1]) == 3 * n
    assert f"item_id={row['item_id'][0]}|event_type={row['event_type'][0]}" in tokens[1]
    assert all(len(t) == 3 * len(items) for t, items in zip(tokens, df["item_id"]))

    splits = {"train": df.iloc[:500], "validation": df.iloc[500:700], "test": df.iloc[700:]}
    out = baselines.fit_peers(SYNTHETIC_SCHEMA, splits, names=["logistic_regression", baselines.SEQUENCE_PEER])
    peer = out[baselines.SEQUENCE_PEER]
    assert len(peer["grid"]) == 10 and set(peer["params"]) == {"C", "class_weight"}
    assert baselines.ONE_POINT[baselines.SEQUENCE_PEER] == {"C": [1.0], "class_weight": ["balanced"]}
    assert baselines.ONE_POINT["xgboost"] == {"learning_rate": [0.1], "max_depth": [5]}
    y_test = splits["test"]["label"].to_numpy()
    assert baselines.roc_auc(y_test, peer["test"]) > baselines.roc_auc(y_test, out["logistic_regression"]["test"]) + 0.01
