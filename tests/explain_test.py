"""explain (the package): occlusion changes predictions; permutation importance ranks a planted feature first;
text columns are ranked; progress goes to stderr; the batched path gives the per-frame path's numbers."""

import json
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
    ranked = set(pd.read_csv(out / "importance.csv")["feature"])
    assert "sequence" in ranked
    assert {"query", "item_title"} <= ranked, "the scalar and per-event text columns are ranked"
    assert set(SCHEMA.numeric + SCHEMA.categorical) <= ranked
    captured = capsys.readouterr()
    assert "Drop in ROC-AUC" in captured.out
    assert "per-event text (item_title)" in captured.out and "Not shuffled" not in captured.out
    # Progress: stderr is not a terminal here, so one line per stage there, none on stdout.
    assert "occlusion: 6 frames x 100 rows" in captured.err
    assert "permutation importance: " in captured.err
    assert "occlusion:" not in captured.out and "permutation importance:" not in captured.out
    timings = json.loads((out / explain.TIMINGS_FILE).read_text())
    assert timings["rows"] == 100 and timings["serving_arrays"] is True
    assert 0 < timings["rows_scored"] < timings["rows_requested"]


def test_explain_export_writes_the_tables_and_ranks_text(tiny_run, tmp_path, capsys):
    """The function behind the command and the training run's drivers: validated frame in, tables out."""
    from purchase_intent.predict import Predictor

    _, metrics = tiny_run
    predictor = Predictor(metrics["export"]["path"])  # or the folder: explain_export loads it
    df = SCHEMA.validate(make_synthetic(60, seed=8))
    out = explain.explain_export(predictor, df, tmp_path / "x", repeats=1, progress=False, max_rows=40)
    assert out["rows"] == 40 and out["out_dir"] == tmp_path / "x"
    assert pd.read_csv(tmp_path / "x" / "occlusion.csv")["row"].tolist() == list(
        explain.sample_rows(df, 40).index), "a seeded sample, rows in their order"
    assert set(pd.read_csv(tmp_path / "x" / "occlusion_summary.csv")["modality"]) >= {"text", "all"}
    importance = pd.read_csv(tmp_path / "x" / "importance.csv", index_col=0)
    assert list(importance.index) == list(out["importance"].index)
    assert {"query", "item_title", "sequence"} <= set(importance.index), "text columns are ranked"
    assert set(importance.index) == set(out["features"])
    assert json.loads((tmp_path / "x" / explain.TIMINGS_FILE).read_text())["rows"] == 40
    assert capsys.readouterr().err == "", "progress=False: quiet"
    unlabelled = explain.explain_export(predictor, df.drop(columns=SCHEMA.label).head(10), tmp_path / "y",
                                        progress=False)
    assert unlabelled["importance"] is None and not (tmp_path / "y" / "importance.csv").exists()
    assert len(pd.read_csv(tmp_path / "y" / "occlusion.csv")) == 10


def test_progress_bar_goes_to_stderr(tiny_run, capsys):
    from purchase_intent.predict import Predictor

    _, metrics = tiny_run
    predictor = Predictor(metrics["export"]["path"])
    df = SCHEMA.validate(make_synthetic(60, seed=4))
    explain.permutation_importance(predictor, df, SCHEMA, features=["query"], n_repeats=1, progress=True)
    captured = capsys.readouterr()
    assert "permutation importance (2 frames)" in captured.err and "rows" in captured.err
    assert captured.out == ""
    explain.occlusion(predictor, df, SCHEMA, batched=False, progress=True)
    captured = capsys.readouterr()
    assert "occlusion" in captured.err and "frames" in captured.err and captured.out == ""
    explain.occlusion(predictor, df, SCHEMA)  # the library is quiet by default
    assert capsys.readouterr().err == ""


def test_batched_scoring_matches_one_call_per_frame(tiny_run):
    """The fast path (serving arrays built once, distinct rows scored together) against the
    straightforward one (each perturbed frame through Predictor.predict), on the tiny export."""
    from purchase_intent.predict import Predictor

    _, metrics = tiny_run
    predictor = Predictor(metrics["export"]["path"])
    df = SCHEMA.validate(make_synthetic(150, seed=5))
    df.loc[::3, "device"] = df["device"].iloc[0]  # repeated values: shuffles leave rows as they were
    slow = lambda d: predictor.predict(d, validate=False)  # noqa: E731
    scorer = explain.PerturbationScorer(predictor, df, SCHEMA, batch_size=64)
    assert scorer.exact_arrays and scorer.text_embeddings  # "query" encoded once per distinct text
    pe_fast, sum_fast = explain.occlusion(scorer, df, SCHEMA)
    pe_slow, sum_slow = explain.occlusion(slow, df, SCHEMA, batched=False)
    np.testing.assert_allclose(pe_fast.to_numpy(), pe_slow.to_numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(sum_fast.to_numpy(), sum_slow.to_numpy(), rtol=0, atol=1e-6)
    # A fully occluded frame is one distinct row.
    assert scorer.rows_scored <= len(df) * len(sum_fast) + 1
    imp_fast = explain.permutation_importance(scorer, df, SCHEMA, n_repeats=2, seed=3)
    imp_slow = explain.permutation_importance(slow, df, SCHEMA, n_repeats=2, seed=3, batched=False)
    assert list(imp_fast.index) == list(imp_slow.index)
    np.testing.assert_allclose(imp_fast.to_numpy(), imp_slow.to_numpy(), rtol=0, atol=1e-6)
    assert scorer.rows_scored < scorer.rows_requested  # unchanged rows were not scored again
    # Any predict_fn goes through the frame path, with the same numbers.
    imp_fn = explain.permutation_importance(slow, df, SCHEMA, n_repeats=2, seed=3)
    np.testing.assert_allclose(imp_fn.to_numpy(), imp_slow.to_numpy(), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="another frame"):
        explain.occlusion(scorer, df.head(10), SCHEMA)


def test_shuffle_event_text_keeps_each_rows_events():
    df = SCHEMA.validate(make_synthetic(40, seed=6))
    shuffled = explain.shuffle_event_text(df["item_title"], np.random.default_rng(0))
    assert [len(s) for s in shuffled] == [len(s) for s in df["item_title"]]
    assert sorted(t for s in shuffled for t in s) == sorted(t for s in df["item_title"] for t in s)
    assert shuffled.tolist() != df["item_title"].tolist()
    frame = explain.apply_perturbation(df, SCHEMA, explain._permutation_plan(df, SCHEMA, ["item_title"], 1, 0)[0][1])
    assert SCHEMA.validate(frame).shape == df.shape  # sequence columns still describe the same events
    assert (frame["item_id"].tolist(), frame["query"].tolist()) == (df["item_id"].tolist(), df["query"].tolist())


def test_describe_shuffles_names_what_is_left_out():
    every = explain.default_features(SCHEMA)
    assert set(every) == set(SCHEMA.text + SCHEMA.event_text + SCHEMA.numeric + SCHEMA.categorical) | {"sequence"}
    assert "Not shuffled" not in explain.describe_shuffles(SCHEMA, every)
    line = explain.describe_shuffles(SCHEMA, ["session_minutes", "device"])
    assert "Not shuffled: query, item_title" in line and "\n" not in line


def test_text_is_encoded_per_row_when_the_embeddings_cannot_be_fed(tiny_run, monkeypatch, caplog):
    from purchase_intent.explain import scorer as scorer_module
    from purchase_intent.predict import Predictor

    calls = []

    def no_cut(*args, **kwargs):
        calls.append(args)
        raise explain.TextCutError("no pooled embedding of text column 'query'")

    _, metrics = tiny_run
    predictor = Predictor(metrics["export"]["path"])  # a fresh Session: nothing inlined into it yet
    df = SCHEMA.validate(make_synthetic(50, seed=7))
    monkeypatch.setattr(scorer_module, "InlinedText", no_cut)  # where PerturbationScorer looks it up
    with caplog.at_level("INFO", logger="purchase_intent.explain"):
        scorer = explain.PerturbationScorer(predictor, df, SCHEMA)
    assert calls, "the scorer did not try InlinedText"
    assert not scorer.text_embeddings and "encoded again for every scored row" in caplog.text
    per_row, _ = explain.occlusion(scorer, df, SCHEMA)
    reference, _ = explain.occlusion(predictor, df, SCHEMA, batched=False)
    np.testing.assert_allclose(per_row.to_numpy(), reference.to_numpy(), rtol=0, atol=1e-6)
