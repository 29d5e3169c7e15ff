"""report/: the figures of a tiny run are real images, the report links them, the CLI rebuilds it."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from plots_test import assert_real_image
from purchase_intent import report, targeting
from purchase_intent.report import narrative
from targeting_test import P10, Y10

PNGS = ["learning_curves.png", "curves.png", "calibration.png", "lift.png"]
REPO = Path(__file__).resolve().parents[1]


def test_tiny_run_writes_real_figures_and_report(tiny_run):
    run_dir, metrics = tiny_run
    for name in PNGS:
        assert_real_image(run_dir / name)
    md = (run_dir / "report.md").read_text()
    page = (run_dir / "report.html").read_text()
    for name in PNGS:
        assert f"]({name})" in md, name
        assert f"src='{name}'" in page, name
    for model in metrics["test"]:
        assert model in md and model in page
    assert metrics["export"]["path"] in md
    assert "purchase_intent.serving.local" in md
    calibration = metrics["training"]["calibration"]
    assert calibration["trees"] >= 1  # the boosted trees, the default: stacked, or left out by cross-fitting
    if calibration["method"] == "stack":
        assert f"Final step: {calibration['trees']:,} boosted trees" in md
    else:
        assert calibration["method"] == "platt" and calibration["cv"]["stack"]["log_loss"] >= \
            calibration["cv"]["platt"]["log_loss"] - 1e-4
        assert f"The {calibration['trees']:,} boosted trees were left out" in md


def test_calibration_sentence_names_the_final_step():
    stack = {"training": {"calibration": {"method": "stack", "a": 0.85, "c": 0.14, "b": 0.0, "trees": 1211}}}
    text = narrative.calibration_sentence(stack)
    assert "1,211 boosted trees" in text and "network 0.85, trees 0.14" in text and "calibrates" in text
    assert "Platt" in narrative.calibration_sentence({"training": {"calibration": {"method": "platt", "a": 1, "b": 0}}})
    dropped = {"method": "platt", "a": 1, "b": 0, "trees": 40,
               "cv": {"stack": {"log_loss": 0.31}, "platt": {"log_loss": 0.30}}}
    assert "40 boosted trees were left out" in narrative.calibration_sentence({"training": {"calibration": dropped}})
    assert "not recalibrated" in narrative.calibration_sentence({"training": {"calibration": {"method": "none"}}})
    assert narrative.calibration_sentence({"training": {}}) == ""


def test_predictions_file_matches_metrics(tiny_run):
    from sklearn.metrics import roc_auc_score

    run_dir, metrics = tiny_run
    y, probs = report.load_predictions(run_dir / report.PREDICTIONS_FILE)
    assert set(probs) == set(metrics["test"])
    assert len(y) == metrics["splits"]["test"]["examples"]
    for name, p in probs.items():
        assert roc_auc_score(y, p) == pytest.approx(metrics["test"][name]["roc_auc"], abs=1e-5)


def test_report_cli_rebuilds_from_run_files(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("history.json", "metrics.json", "config.json", report.PREDICTIONS_FILE):
        shutil.copy(run_dir / name, copy / name)
    proc = subprocess.run([sys.executable, "-m", "purchase_intent.report", str(copy)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "report.html" in proc.stdout
    for name in PNGS:
        assert_real_image(copy / name)
    assert all(f"]({name})" in (copy / "report.md").read_text() for name in PNGS)


def test_report_cli_fails_clearly_on_missing_directory(tmp_path):
    assert report.main([str(tmp_path / "nope")]) == 2


def test_run_summary_names_model_report_export_and_commands(tiny_run):
    run_dir, metrics = tiny_run
    text = report.run_summary(run_dir)
    export = metrics["export"]["path"]
    assert str(run_dir / "report.html") in text
    assert str(run_dir / "best.weights.h5") in text
    assert f"python -m purchase_intent.predict --model {export}" in text
    assert f"--model-base-path {Path(export).parent}" in text
    assert "PurchaseIntentClient" in text


# -- the analyst's report: targeting, threshold, label meaning, warnings, epochs, ids ------------
# Y10, P10: the 10 customers of targeting_test.py (4 buyers, probabilities in a known order).


def test_label_sentence_and_epochs_run_versus_kept():
    assert "buys within 60 days of the cut-off date" in narrative.label_sentence(
        {"label": "label", "description": "buys within 60 days of the cut-off date."})
    assert "the column `bought` is 1" in narrative.label_sentence({"label": "bought"})
    history = {"loss": [0.7, 0.6, 0.5, 0.45, 0.4, 0.38], "val_auc": [0.60, 0.65, 0.70, 0.69, 0.68, 0.67]}
    text = narrative.epochs_sentence(history, {"training": {"epochs_run": 6}}, {"train": {"epochs": 15}})
    assert text.startswith("Epochs: 6 run (at most 15); the weights of epoch 3 are kept")
    assert "early stopping" in text and "15 epochs" not in text


def test_predictions_file_ids_first_and_left_out_of_the_models(tmp_path):
    ids = pd.DataFrame({"customer_id": [f"C{i}" for i in range(10)], "cutoff": ["2011-09-01"] * 10})
    probs = {"purchase_intent": P10, "logistic_regression": 1 - P10}
    path = report.save_predictions(tmp_path / "p.csv", Y10, probs, ids=ids, threshold=0.45, model="purchase_intent")
    df = pd.read_csv(path)
    assert list(df.columns) == ["customer_id", "cutoff", "label", "purchase_intent", "logistic_regression",
                                "purchase_label"]
    assert list(df["customer_id"]) == list(ids["customer_id"])
    assert list(df["purchase_label"]) == [int(p >= 0.45) for p in P10]
    y, probs = report.load_predictions(path, ["customer_id", "cutoff"])
    assert list(probs) == ["purchase_intent", "logistic_regression"]
    np.testing.assert_array_equal(y, Y10)
    with pytest.raises(ValueError, match="clash"):
        report.save_predictions(tmp_path / "q.csv", Y10, {"purchase_intent": P10},
                                ids=pd.DataFrame({"label": range(10)}))


def _fake_run(run_dir: Path, n_test: int = 10) -> Path:
    """A run directory without a model: the files the report reads, with a 10-row test split."""
    import json

    run_dir.mkdir()
    (run_dir / "schema.json").write_text(json.dumps(
        {"label": "label", "numeric": ["x"], "id": ["customer_id"], "description": "buys within 30 days"}))
    (run_dir / "config.json").write_text(json.dumps({"train": {"epochs": 15, "learning_rate": 0.001}}))
    (run_dir / "history.json").write_text(json.dumps(
        {"loss": [0.7, 0.6, 0.5, 0.45, 0.4, 0.38], "val_loss": [0.7, 0.65, 0.6, 0.62, 0.63, 0.64],
         "auc": [0.6, 0.7, 0.75, 0.8, 0.82, 0.85], "val_auc": [0.60, 0.65, 0.70, 0.69, 0.68, 0.67]}))
    test = {"purchase_intent": {"roc_auc": 0.80, "pr_auc": 0.7, "log_loss": 0.5, "accuracy": 0.7,
                                "precision": 0.6, "recall": 0.75, "f1": 0.67, "ece": 0.08, "threshold": 0.45},
            "logistic_regression": {"roc_auc": 0.70, "pr_auc": 0.6, "log_loss": 0.6, "accuracy": 0.6,
                                    "precision": 0.5, "recall": 0.5, "f1": 0.5, "ece": 0.1, "threshold": 0.5}}
    (run_dir / "metrics.json").write_text(json.dumps({
        "test": test, "training": {"examples": 100, "epochs_run": 6, "best_epochs": [3]},
        "splits": {"train": {"examples": 100, "positive_rate": 0.4},
                   "validation": {"examples": 10, "positive_rate": 0.4},
                   "test": {"examples": n_test, "positive_rate": 0.4}}}))
    report.save_predictions(run_dir / report.PREDICTIONS_FILE, Y10, {"purchase_intent": P10,
                                                                     "logistic_regression": P10[::-1]},
                            ids=pd.DataFrame({"customer_id": [f"C{i}" for i in range(10)]}), threshold=0.45)
    return run_dir


def test_report_reads_as_an_analyst_needs(tmp_path):
    run_dir = _fake_run(tmp_path / "run")
    report.build_report(run_dir)
    md = (run_dir / "report.md").read_text()
    page = (run_dir / "report.html").read_text()
    assert "Label 1 means: buys within 30 days" in md
    assert "ranks buyers better than the best baseline, logistic_regression" in md
    # the targeting table, with the hand-computed 20 % row and the threshold row
    assert "| contact the top | customers | buyers reached | share of all buyers reached |" in md
    assert "| 20% | 2 | 2 | 50% | 100% | 2.50 | 0.800 |" in md
    assert "| above threshold (50%) | 5 | 3 | 75% | 60% | 1.50 | 0.450 |" in md
    assert ("contacting everyone above it means contacting the top 50% (5 of 10 test customers) and "
            "reaches 75% of the buyers") in md
    assert "ranking quality (ROC-AUC)" in md and "calibration error (ECE)" in md and "Glossary" in md
    assert "Warning:** The test split is small (10 rows, 4 buyers" in md
    assert "class='warning'" in page and "The validation split is small" in page
    assert "Epochs: 6 run (at most 15); the weights of epoch 3 are kept" in md
    assert "the id column(s) `customer_id`" in md
    assert "<td>20%</td><td>2</td><td>2</td><td>50%</td>" in page


def test_user_csv_run_passes_ids_and_reports_label_and_small_split(user_csv_run):
    run_dir, metrics, csv, _ = user_csv_run
    source = pd.read_csv(csv)
    pred = pd.read_csv(run_dir / report.PREDICTIONS_FILE)
    assert pred.columns[0] == "customer_id" and "purchase_label" in pred.columns
    assert len(pred) == metrics["splits"]["test"]["examples"] == 60
    assert set(pred["customer_id"]) <= set(source["customer_id"])
    # the labels line up with the ids: each row's label is the source row's label
    truth = source.set_index("customer_id")["label"]
    assert (pred["label"].to_numpy() == truth.loc[pred["customer_id"]].to_numpy()).all()
    table = metrics["targeting"]["table"]
    assert [r["share_contacted"] for r in table] == [0.05, 0.1, 0.2, 0.3, 0.5]
    expected = targeting.targeting_table(pred["label"], pred["purchase_intent"])
    np.testing.assert_allclose([r["share_of_buyers_reached"] for r in table], expected["share_of_buyers_reached"])
    assert any("test split is small (60 rows" in w for w in metrics["warnings"])
    md = (run_dir / "report.md").read_text()
    assert "Label 1 means: buys during the session (column `label`)" in md
    assert "Targeting table" in md and "Warning:** The test split is small" in md


def test_report_opens_with_the_runs_warnings(tmp_path):
    """metrics.json's warnings (leakage, shift, small splits) come before any figure."""
    import json

    run_dir = _fake_run(tmp_path / "run", n_test=1000)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    leak = ("Leakage: 98.9% of the test rows (267 of 270) have a 'customer_id' that is also in the training "
            "split")
    metrics["warnings"] = [leak, "Base rate shift: 48.1 % of the test rows are buyers against 41.6 % in training"]
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    report.build_report(run_dir)
    md = (run_dir / "report.md").read_text()
    assert md.index("## Warnings") < md.index(leak) < md.index("Base rate shift") < md.index("## In short")
    assert "The validation split is small" not in md  # the run's own list is shown as written
    del metrics["warnings"]  # a run of an earlier version: the small-split warnings are recomputed
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    report.build_report(run_dir)
    assert "The validation split is small" in (run_dir / "report.md").read_text()
