"""report.py: the figures of a tiny run are real images, the report links them, the CLI rebuilds it."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
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
