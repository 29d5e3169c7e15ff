"""predict.py: offline scoring of a CSV with the tiny run's export equals the serving function."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from purchase_intent import contract, predict
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
    np.testing.assert_allclose(scored[contract.PROBABILITY_COLUMN].to_numpy(), expected, atol=1e-5)
    threshold = predict.Predictor(export_dir).threshold
    np.testing.assert_array_equal(scored[contract.PREDICTED_LABEL_COLUMN].to_numpy(),
                                  (scored[contract.PROBABILITY_COLUMN].to_numpy() >= threshold).astype(int))
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


# -- one output rule for predict and serving.score: ids first, the same --threshold and --output --
def test_read_threshold_number_or_threshold_json(tmp_path):
    from purchase_intent.serving import score

    assert predict.read_threshold("0.3") == 0.3 and predict.read_threshold(None) is None
    path = tmp_path / "threshold.json"
    path.write_text('{"threshold": 0.42}')
    assert predict.read_threshold(str(path)) == 0.42
    assert score.read_threshold is predict.read_threshold  # one function for both CLIs
    for bad, message in (("nope.json", "neither a number nor"), ("1.5", r"in \[0, 1\]")):
        with pytest.raises(ValueError, match=message):
            predict.read_threshold(bad)
    (tmp_path / "bad.json").write_text('{"cut": 0.4}')
    with pytest.raises(ValueError, match="expected JSON such as"):
        predict.read_threshold(str(tmp_path / "bad.json"))
    # score's default: the export's threshold.json beside --schema
    (tmp_path / "schema.json").write_text("{}")
    assert score.default_threshold(tmp_path / "schema.json") == 0.42
    assert score.default_threshold(None) is None


def test_predict_and_score_share_output_options():
    from purchase_intent.serving import score

    p = predict.parse_args(["--model", "m", "--input", "shop/customers.csv"])
    s = score.parse_args(["--target", "localhost:8500", "--input", "shop/customers.csv"])
    assert p.output is None and s.output is None and p.threshold is None and s.threshold is None
    assert predict.default_output("shop/customers.csv") == Path("shop/customers.scored.csv")
    assert predict.default_output("shop/customers.csv.gz") == Path("shop/customers.scored.csv")
    assert score.PREDICTED_LABEL_COLUMN == contract.PREDICTED_LABEL_COLUMN == "purchase_label"
    assert report_label_column() == contract.TRUE_LABEL_COLUMN == "label"
    for args in (["-m", "purchase_intent.predict", "--help"], ["-m", "purchase_intent.serving.score", "--help"]):
        out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                             cwd=REPO).stdout
        flat = " ".join(out.split())
        assert "default: <input stem>.scored.csv" in flat and "threshold.json" in flat, args
        assert "(default: None)" not in flat, args  # every default is written once, in words


def report_label_column() -> str:
    from purchase_intent.report import files

    return files.TRUE_LABEL_COLUMN


def test_predict_writes_ids_first_with_threshold_json(user_csv_run, tmp_path):
    run_dir, metrics, csv, _ = user_csv_run
    export = Path(metrics["export"]["path"])
    threshold_json = export / "assets.extra" / "threshold.json"
    source = pd.read_csv(csv).drop(columns=["label"])
    source.insert(1, "note", "x")  # any other input column is kept after the ids
    source = source[[c for c in source.columns if c != "customer_id"] + ["customer_id"]]  # id last in the input
    inp = tmp_path / "new_customers.csv"
    source.head(40).to_csv(inp, index=False)
    assert predict.main(["--model", str(export), "--input", str(inp), "--no-progress"]) == 0
    default = pd.read_csv(tmp_path / "new_customers.scored.csv")  # the default --output
    assert default.columns[0] == "customer_id" and list(default["customer_id"]) == list(source["customer_id"][:40])
    threshold = predict.read_threshold(threshold_json)
    assert threshold == pytest.approx(metrics["test"]["purchase_intent"]["threshold"])
    assert (default["purchase_label"] == (default["purchase_probability"] >= threshold)).all()
    out = tmp_path / "kept.csv"
    assert predict.main(["--model", str(export), "--input", str(inp), "--output", str(out), "--no-progress",
                         "--threshold", str(threshold_json), "--keep-columns", "note"]) == 0
    kept = pd.read_csv(out)
    assert list(kept.columns) == ["customer_id", "note", "purchase_probability", "purchase_label"]
    assert (kept["purchase_label"] == default["purchase_label"]).all()
    assert predict.main(["--model", str(export), "--input", str(inp), "--output", str(out), "--no-progress",
                         "--threshold", "1"]) == 0
    assert pd.read_csv(out)["purchase_label"].sum() == 0


def test_predict_refuses_another_delimiter_and_keeps_ids_as_written(user_csv_run, tmp_path, capsys):
    """Scoring a file written with "," between events is an error (exit 2), not scores off by 0.4;
    numeric ids with a blank stay as in the file (900001, not 900001.0)."""
    run_dir, metrics, csv, _ = user_csv_run
    export = Path(metrics["export"]["path"])
    source = pd.read_csv(csv, dtype=str).drop(columns=["label"]).head(30)
    source["customer_id"] = [str(900000 + i) for i in range(len(source))]
    source.loc[4, "customer_id"] = ""  # a blank id: pandas would turn the column into floats
    commas = source.copy()
    for name in SCHEMA.sequences:
        commas[name] = commas[name].str.replace("|", ",")
    commas.to_csv(tmp_path / "commas.csv", index=False)
    assert predict.main(["--model", str(export), "--input", str(tmp_path / "commas.csv"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 1 and "commas.csv" in err and "'|'" in err and "','" in err, err
    assert not (tmp_path / "commas.scored.csv").exists()
    source.to_csv(tmp_path / "ids.csv", index=False)
    assert predict.main(["--model", str(export), "--input", str(tmp_path / "ids.csv"), "--no-progress"]) == 0
    lines = (tmp_path / "ids.scored.csv").read_text().splitlines()
    ids = [line.split(",")[0] for line in lines[1:]]
    assert ids[:4] == ["900000", "900001", "900002", "900003"] and ids[4] == "", ids[:6]


def test_score_writes_ids_first_and_the_exports_threshold(user_csv_run, tmp_path):
    import shutil

    from purchase_intent.serving import score
    from purchase_intent.serving.local import start_server

    _, metrics, csv, _ = user_csv_run
    export = Path(metrics["export"]["path"])
    base = tmp_path / "models" / "purchase_intent"
    shutil.copytree(export, base / "1")
    inp = tmp_path / "customers.csv"
    pd.read_csv(csv).drop(columns=["label"]).head(30).to_csv(inp, index=False)
    expected = predict.Predictor(export).predict(pd.read_csv(inp))
    server = start_server(base, "purchase_intent", port=0, poll_seconds=0, warmup=False)
    try:
        schema = str(export / "assets.extra" / "schema.json")
        # no --output, no --threshold: <input stem>.scored.csv, the export's threshold (beside --schema)
        assert score.main(["--target", server.target, "--input", str(inp), "--schema", schema,
                           "--keep-columns", "device"]) == 0
        scored = pd.read_csv(tmp_path / "customers.scored.csv")
        assert list(scored.columns) == ["customer_id", "device", "purchase_probability", "purchase_label"]
        np.testing.assert_allclose(scored["purchase_probability"], expected, atol=1e-5)
        threshold = metrics["test"]["purchase_intent"]["threshold"]
        assert (scored["purchase_label"] == (expected >= threshold)).all()
        out = tmp_path / "scored_number.csv"
        assert score.main(["--target", server.target, "--input", str(inp), "--schema", schema,
                           "--output", str(out), "--threshold", "0"]) == 0
        assert pd.read_csv(out)["purchase_label"].eq(1).all()
    finally:
        server.stop()
