"""report.py: the figures of a tiny run are real images, the report links them, the CLI rebuilds it."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from purchase_intent import report

PNGS = ["learning_curves.png", "curves.png", "calibration.png", "lift.png"]
REPO = Path(__file__).resolve().parents[1]


def assert_real_image(path: Path, min_height: int = 250, min_width: int = 350) -> None:
    """A PNG of reasonable size that is not blank: spread-out pixels and many distinct colours."""
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4), (path, img.shape)
    height, width = img.shape[:2]
    assert height >= min_height and width >= min_width, (path, img.shape)
    rgb = img[..., :3]
    assert float(rgb.std()) > 0.05, f"{path}: almost uniform (pixel std {rgb.std():.4f})"
    colours = np.unique((rgb * 255).round().astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 30, f"{path}: only {len(colours)} distinct colours"
    not_white = np.mean(rgb.min(axis=2) < 0.9)
    assert not_white > 0.02, f"{path}: {not_white:.1%} of pixels are drawn"


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
    assert calibration["method"] == "stack"  # the boosted trees, the default
    assert f"Final step: {calibration['trees']:,} boosted trees" in md


def test_calibration_sentence_names_the_final_step():
    stack = {"training": {"calibration": {"method": "stack", "a": 0.85, "c": 0.14, "b": 0.0, "trees": 1211}}}
    text = report.calibration_sentence(stack)
    assert "1,211 boosted trees" in text and "network 0.85, trees 0.14" in text and "calibrates" in text
    assert "Platt" in report.calibration_sentence({"training": {"calibration": {"method": "platt", "a": 1, "b": 0}}})
    assert "not recalibrated" in report.calibration_sentence({"training": {"calibration": {"method": "none"}}})
    assert report.calibration_sentence({"training": {}}) == ""


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


def test_lift_table_and_gain():
    y = np.array([1] * 30 + [0] * 70)
    p = np.linspace(1, 0, 100)  # perfect ranking
    table = report.lift_table(y, p)
    assert list(table["buyers"][:3]) == [10, 10, 10] and table["buyers"][3:].sum() == 0
    assert table["lift"].iloc[0] == pytest.approx(1 / 0.3)
    assert table["cumulative_gain"].iloc[2] == pytest.approx(1.0)
    assert table["cumulative_share_contacted"].iloc[-1] == pytest.approx(1.0)
    random = report.lift_table(y, np.full(100, 0.5))
    assert random["cumulative_gain"].iloc[-1] == pytest.approx(1.0)


def test_data_overview_and_summary(tmp_path):
    from purchase_intent.data.synthetic import SCHEMA, make_synthetic

    df = SCHEMA.validate(make_synthetic(300))
    splits = {"train": df.iloc[:200], "validation": df.iloc[200:250], "test": df.iloc[250:]}
    summary = report.data_summary(splits, SCHEMA)
    assert list(summary.index) == ["train", "validation", "test"]
    assert summary.loc["train", "examples"] == 200
    assert_real_image(report.plot_data_overview(splits, SCHEMA, tmp_path / "overview.png"))


def test_time_split_check_catches_a_leak():
    from purchase_intent.config import DataConfig
    from purchase_intent.data.online_retail import clean_events, load_online_retail

    sample = REPO / "tests" / "data" / "online_retail_sample.csv.gz"
    from purchase_intent.data.readers import read_raw

    cfg = DataConfig(horizon_days=60, cutoff_step_days=30, max_train_cutoffs=2)
    frames = load_online_retail(cfg, path=sample)
    events = clean_events(read_raw(sample, string_columns=["InvoiceNo", "StockCode", "Description",
                                                           "InvoiceDate", "Country"]))
    checks = report.check_time_split(frames, events, cfg.horizon_days)
    assert (checks["checks"] == "passed").all() and len(checks) == 4
    leaky = {k: v.copy() for k, v in frames.items()}
    leaky["test"]["n_lines"] = leaky["test"]["n_lines"] + 1  # as if a line at/after T were counted
    with pytest.raises(AssertionError, match="n_lines"):
        report.check_time_split(leaky, events, cfg.horizon_days)


# -- the analyst's report: targeting, threshold, label meaning, warnings, epochs, ids ------------
# 10 customers, 4 buyers; probabilities in a known order (ties at 0.5 keep the file order).
Y10 = np.array([0, 1, 0, 1, 1, 0, 0, 1, 0, 0])
P10 = np.array([0.10, 0.90, 0.50, 0.80, 0.50, 0.20, 0.30, 0.40, 0.05, 0.60])
# ranked: rows 1 (0.9, buyer), 3 (0.8, buyer), 9 (0.6), 2 (0.5), 4 (0.5, buyer), 7 (0.4, buyer), ...


def test_targeting_table_equals_a_hand_computation():
    t = report.targeting_table(Y10, P10)
    assert list(t["share_contacted"]) == [0.05, 0.10, 0.20, 0.30, 0.50]
    # top 5 % of 10 rounds to 1 customer (at least one is contacted); 10 % -> 1; 20 % -> 2; 30 % -> 3; 50 % -> 5
    assert list(t["customers_contacted"]) == [1, 1, 2, 3, 5]
    assert list(t["buyers_reached"]) == [1, 1, 2, 2, 3]
    np.testing.assert_allclose(t["share_of_buyers_reached"], [1 / 4, 1 / 4, 2 / 4, 2 / 4, 3 / 4])
    np.testing.assert_allclose(t["precision"], [1, 1, 1, 2 / 3, 3 / 5])
    np.testing.assert_allclose(t["lift"], [2.5, 2.5, 2.5, (2 / 3) / 0.4, 1.5])  # buy rate 4 / 10
    np.testing.assert_allclose(t["min_probability"], [0.9, 0.9, 0.8, 0.6, 0.5])
    at = report.threshold_reach(Y10, P10, 0.45)  # 0.9, 0.8, 0.6, 0.5, 0.5 -> 5 customers, 3 buyers
    assert at["customers_contacted"] == 5 and at["buyers_reached"] == 3
    assert at["share_contacted"] == pytest.approx(0.5)
    assert at["share_of_buyers_reached"] == pytest.approx(0.75)
    assert at["precision"] == pytest.approx(0.6) and at["lift"] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="share contacted"):
        report.targeting_table(Y10, P10, shares=[0.0])


def test_split_warnings_name_small_splits_only():
    ok = {"validation": {"examples": 5000, "positive_rate": 0.3}, "test": {"examples": 800, "positive_rate": 0.1}}
    assert report.split_warnings(ok) == []
    small = {"train": {"examples": 50, "positive_rate": 0.5},  # train is not checked
             "validation": {"examples": 150, "positive_rate": 0.5},  # < 200 rows
             "test": {"examples": 1000, "positive_rate": 0.02}}  # 20 buyers < 30
    warnings = report.split_warnings(small)
    assert len(warnings) == 2
    assert warnings[0].startswith("The validation split is small (150 rows, 75 buyers")
    assert warnings[1].startswith("The test split is small (1,000 rows, 20 buyers")


def test_label_sentence_and_epochs_run_versus_kept():
    assert "buys within 60 days of the cut-off date" in report.label_sentence(
        {"label": "label", "description": "buys within 60 days of the cut-off date."})
    assert "the column `bought` is 1" in report.label_sentence({"label": "bought"})
    history = {"loss": [0.7, 0.6, 0.5, 0.45, 0.4, 0.38], "val_auc": [0.60, 0.65, 0.70, 0.69, 0.68, 0.67]}
    text = report.epochs_sentence(history, {"training": {"epochs_run": 6}}, {"train": {"epochs": 15}})
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
    expected = report.targeting_table(pred["label"], pred["purchase_intent"])
    np.testing.assert_allclose([r["share_of_buyers_reached"] for r in table], expected["share_of_buyers_reached"])
    assert any("test split is small (60 rows" in w for w in metrics["warnings"])
    md = (run_dir / "report.md").read_text()
    assert "Label 1 means: buys during the session (column `label`)" in md
    assert "Targeting table" in md and "Warning:** The test split is small" in md


def test_targeting_table_renders_as_an_image(tmp_path):
    targeting = report.targeting_summary(Y10, {"purchase_intent": P10}, "purchase_intent", 0.45)
    header, rows = report.targeting_rows(targeting)
    assert rows[2] == ["20%", "2", "2", "50%", "100%", "2.50", "0.800"] and rows[-1][0] == "above threshold (50%)"
    path = report.plot_table(header, rows, tmp_path / "targeting.png", title="Targeting table", note="a note")
    assert_real_image(path, min_height=200, min_width=600)


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
