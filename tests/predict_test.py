"""predict.py: offline scoring of a CSV with the tiny run's export equals the serving function."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from purchase_intent import predict
from purchase_intent.data.synthetic import SCHEMA, make_synthetic

REPO = Path(__file__).resolve().parents[1]


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    out = df.drop(columns=[SCHEMA.label]).copy()
    for name in SCHEMA.sequence_like:
        out[name] = out[name].map("|".join)
    out.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def export_dir(tiny_run):
    run_dir, metrics = tiny_run
    return Path(metrics["export"]["path"])


def reference(export_dir: Path, df: pd.DataFrame) -> np.ndarray:
    from purchase_intent.export import load_serving_fn
    from purchase_intent.preprocessing import raw_batch

    fn = load_serving_fn(export_dir)
    return fn(**raw_batch(SCHEMA.validate(df), SCHEMA))["purchase_probability"].numpy()


def test_predict_cli_matches_serving_fn(export_dir, tmp_path):
    raw = make_synthetic(150, seed=11)
    raw.loc[3, "session_minutes"] = np.nan  # imputed, as in serving
    raw.at[4, "item_id"], raw.at[4, "event_type"], raw.at[4, "item_title"] = [], [], []  # no events
    csv = write_csv(raw, tmp_path / "in.csv")
    out = tmp_path / "scored.csv"
    assert predict.main(["--model", str(export_dir), "--input", str(csv), "--output", str(out),
                         "--batch-size", "64", "--no-progress"]) == 0
    scored = pd.read_csv(out)
    assert len(scored) == len(raw)
    expected = reference(export_dir, raw)
    np.testing.assert_allclose(scored[predict.PROBABILITY_COLUMN].to_numpy(), expected, atol=1e-5)
    threshold = predict.Predictor(export_dir).threshold
    np.testing.assert_array_equal(scored[predict.LABEL_COLUMN].to_numpy(),
                                  (scored[predict.PROBABILITY_COLUMN].to_numpy() >= threshold).astype(int))
    assert list(scored.columns[:3]) == list(raw.drop(columns=[SCHEMA.label]).columns[:3])


def test_predictor_from_python_and_model_folder(export_dir):
    raw = make_synthetic(40, seed=12)
    predictor = predict.Predictor(export_dir.parent)  # model folder: highest version
    assert predictor.version_dir == export_dir
    np.testing.assert_allclose(predictor.predict(raw, batch_size=7), reference(export_dir, raw), atol=1e-5)
    assert set(predictor.predict_labels(raw)) <= {0, 1}


def test_predict_cli_errors_name_the_problem(export_dir, tmp_path, capsys):
    raw = make_synthetic(20, seed=13).drop(columns=["device"])
    csv = tmp_path / "bad.csv"
    raw.drop(columns=[SCHEMA.label]).to_csv(csv, index=False)
    assert predict.main(["--model", str(export_dir), "--input", str(csv)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"{csv}: missing column(s) ['device']" in err
    assert predict.main(["--model", str(tmp_path), "--input", str(csv)]) == 2
    assert "error: " in (err := capsys.readouterr().err) and "no saved_model.pb" in err


def test_predict_help_lists_options_with_defaults():
    proc = subprocess.run([sys.executable, "-m", "purchase_intent.predict", "--help"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0
    for option in ("--model", "--input", "--output", "--batch-size", "--threshold", "default: 512"):
        assert option in proc.stdout, option
