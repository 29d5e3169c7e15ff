"""explain.py: occlusion changes predictions; permutation importance ranks a planted feature first."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from purchase_intent import explain
from purchase_intent.data.synthetic import SCHEMA, make_synthetic
from purchase_intent.schema import FeatureSchema


def test_occlude_empties_each_modality():
    df = SCHEMA.validate(make_synthetic(30, seed=1))
    text = explain.occlude(df, SCHEMA, "text")
    assert (text["query"] == "").all()
    assert [len(s) for s in text["item_title"]] == [len(s) for s in df["item_id"]]
    assert all(t == "" for s in text["item_title"] for t in s)
    seq = explain.occlude(df, SCHEMA, "sequence")
    assert all(len(s) == 0 for name in SCHEMA.sequence_like for s in seq[name])
    num = explain.occlude(df, SCHEMA, "numeric")
    assert num[SCHEMA.numeric].isna().all().all()
    cat = explain.occlude(df, SCHEMA, "categorical")
    assert (cat["device"] == explain.UNSEEN_CATEGORY).all()
    assert df["query"].ne("").any(), "the input frame is not modified"
    with pytest.raises(ValueError, match="Unknown modality"):
        explain.occlude(df, SCHEMA, "images")


def test_occlusion_of_the_tiny_model_changes_predictions(tiny_run):
    from purchase_intent.predict import Predictor

    _, metrics = tiny_run
    predictor = Predictor(metrics["export"]["path"])
    df = SCHEMA.validate(make_synthetic(120, seed=2))
    per_example, summary = explain.occlusion(lambda d: predictor.predict(d, validate=False), df, SCHEMA)
    assert list(summary.index) == ["text", "sequence", "numeric", "categorical", "all"]
    assert len(per_example) == len(df)
    np.testing.assert_allclose(per_example["probability"] - per_example["p_without_all"],
                               per_example["contribution_all"], atol=1e-9)
    assert summary.loc["all", "mean_abs_contribution"] > 0.02, summary
    assert (summary["mean_abs_contribution"] > 1e-4).all(), summary
    # With every modality emptied, all examples look alike.
    assert per_example["p_without_all"].std() < 1e-5
    assert per_example["probability"].std() > 0.05


def _planted():
    rng = np.random.default_rng(0)
    n = 800
    strong, weak = rng.normal(size=n), rng.normal(size=n)
    colour = rng.choice(["red", "blue"], n)
    logit = 3.0 * strong + 0.3 * weak + 0.2 * (colour == "red")
    label = (logit + rng.logistic(size=n) > 0).astype(int)
    schema = FeatureSchema(label="y", numeric=["strong", "weak"], categorical=["colour"])
    df = schema.validate(pd.DataFrame({"strong": strong, "weak": weak, "colour": colour, "y": label}))
    return schema, df


def test_permutation_importance_ranks_planted_feature_first(tmp_path):
    from sklearn.linear_model import LogisticRegression

    schema, df = _planted()
    x = lambda d: np.column_stack([d["strong"], d["weak"], d["colour"] == "red"])  # noqa: E731
    clf = LogisticRegression().fit(x(df), df["y"])
    table = explain.permutation_importance(lambda d: clf.predict_proba(x(d))[:, 1], df, schema,
                                           n_repeats=3, seed=0)
    assert table.index[0] == "strong"
    assert table.loc["strong", "importance"] > 0.2
    assert table.loc["strong", "importance"] > 10 * max(table.loc["weak", "importance"], 1e-3)
    assert (table["baseline_roc_auc"] > 0.9).all()
    out = explain.plot_importance(table, tmp_path / "importance.png")
    assert Path(out).stat().st_size > 5_000
    with pytest.raises(ValueError, match="Unknown features"):
        explain.permutation_importance(lambda d: np.zeros(len(d)), df, schema, features=["nope"])


def test_explain_command_writes_occlusion_and_importance(tiny_run, tmp_path, capsys):
    _, metrics = tiny_run
    table = make_synthetic(150, seed=3)
    for name in SCHEMA.sequence_like:
        table[name] = ["|".join(map(str, v)) for v in table[name]]
    table.to_csv(tmp_path / "t.csv", index=False)
    assert explain.main(["--model", metrics["export"]["path"], "--input", str(tmp_path / "t.csv"),
                         "--max-rows", "100", "--repeats", "1"]) == 0
    out = tmp_path / "t.csv.explain"
    assert len(pd.read_csv(out / "occlusion.csv")) == 100
    assert set(pd.read_csv(out / "occlusion_summary.csv")["modality"]) >= {"text", "numeric", "all"}
    assert "sequence" in set(pd.read_csv(out / "importance.csv")["feature"])
    assert "Drop in ROC-AUC" in capsys.readouterr().out
