"""monitor.py: a planted shift drifts (exit 1), a resample of the training data stays ok (exit 0), bad input exits 2."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from purchase_intent import cli, contract, monitor
from purchase_intent.data.synthetic import SCHEMA, make_synthetic
from purchase_intent.evaluate import reference_scores
from purchase_intent.stats import SplitStats

REPO = Path(__file__).resolve().parents[1]
SHIFTED = ["price_seen", "device", "item_id"]


def fake_scores(df: pd.DataFrame) -> np.ndarray:
    """A stand-in model: a logistic function of three features (the pure tests need no TensorFlow)."""
    x = (0.8 * np.log(df["session_minutes"].astype(float)) - 0.4 * np.log1p(df["price_seen"].astype(float))
         + 0.6 * (df["device"] == "desktop"))
    return (1 / (1 + np.exp(-x))).to_numpy()


def shifted(n: int = 800, seed: int = 7) -> pd.DataFrame:
    """New rows with a planted shift: prices x3, a new device for 40 % of rows, new item ids for half the events."""
    df = make_synthetic(n, seed=seed)
    rng = np.random.default_rng(seed)
    df["price_seen"] *= 3
    df.loc[rng.random(n) < 0.4, "device"] = "smart-fridge"
    df["item_id"] = [[f"new-{v}" if rng.random() < 0.5 else v for v in seq] for seq in df["item_id"]]
    return df


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    out = df.drop(columns=[SCHEMA.label]).copy()
    for name in SCHEMA.sequence_like:
        out[name] = out[name].map("|".join)
    out.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """An export's assets.extra as train writes it (no SavedModel: enough for --no-scores and --scores)."""
    train = SCHEMA.validate(make_synthetic(1500, seed=0))
    ref = SplitStats.of_frame(train, SCHEMA).compact()
    validation = SCHEMA.validate(make_synthetic(500, seed=100))
    version = tmp_path_factory.mktemp("export") / "purchase_intent" / "1"
    (version / "assets.extra").mkdir(parents=True)
    SCHEMA.save(version / "assets.extra" / "schema.json")
    (version / "assets.extra" / monitor.TRAINING_STATS).write_text(json.dumps(ref.to_dict()))
    (version / "assets.extra" / monitor.REFERENCE_SCORES).write_text(
        json.dumps(reference_scores(fake_scores(validation))))
    return version, ref


def run(argv, capsys):
    status = cli.run(monitor.main, [str(a) for a in argv])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_a_resample_of_the_training_data_is_ok(export):
    _, ref = export
    ref_scores = json.loads((export[0] / "assets.extra" / monitor.REFERENCE_SCORES).read_text())
    for seed in (1, 2):  # another seed of the same generator
        new = SCHEMA.validate(make_synthetic(800, seed=seed))
        report = monitor.compare(ref, SplitStats.of_frame(new, SCHEMA), SCHEMA, ref_scores, fake_scores(new))
        assert report["verdict"] == "ok", report["summary"]
        assert {f["verdict"] for f in report["features"].values()} == {"ok"}
        assert report["scores"]["verdict"] == "ok"
        assert report["summary"].startswith("No feature drifted (7 compared). Scores: ok (predicted base rate")
    assert set(report["not_compared"]) == {"query", "item_title"}


def test_a_planted_shift_drifts_and_names_the_features(export):
    _, ref = export
    ref_scores = json.loads((export[0] / "assets.extra" / monitor.REFERENCE_SCORES).read_text())
    new = SCHEMA.validate(shifted())
    report = monitor.compare(ref, SplitStats.of_frame(new, SCHEMA), SCHEMA, ref_scores, fake_scores(new))
    verdicts = {n: f["verdict"] for n, f in report["features"].items()}
    assert verdicts == {n: "drift" if n in SHIFTED else "ok" for n in verdicts}
    assert report["verdict"] == "drift" and report["scores"]["verdict"] == "drift"
    features = report["features"]
    assert features["price_seen"]["psi"] > 0.5 and features["price_seen"]["ks"] > 0.3
    assert features["device"]["unseen"] == pytest.approx(0.4, abs=0.05)
    assert features["device"]["unseen_examples"] == ["smart-fridge"]
    assert features["item_id"]["unseen"] == pytest.approx(0.5, abs=0.03)
    assert report["summary"].startswith("3 of 7 features drifted: price_seen (PSI ")
    assert "device (PSI" in report["summary"] and "of rows unseen, e.g. 'smart-fridge'" in report["summary"]
    table = monitor.summary_table(report)
    assert table.splitlines()[0].split() == ["feature", "kind", "verdict", "PSI", "KS", "detail"]
    assert table.splitlines()[-1].startswith("DRIFT: 3 of 7 features drifted")


def test_noise_needs_significance_and_missing_values_are_a_bin():
    same = np.full(10, 0.1)
    assert monitor.psi(same, same, 1000, 1000) == 0.0
    moved = np.array([0.3, 0.3] + [0.05] * 8)
    value = monitor.psi(same, moved, 5000, 30)
    assert value > monitor.PSI_DRIFT  # a large PSI ...
    assert monitor.grade(value, 0.1, 0.25, monitor.psi_p_value(value, 10, 5000, 30)) == "ok"  # ... 30 rows explain
    assert monitor.grade(value, 0.1, 0.25, monitor.psi_p_value(value, 10, 5000, 3000)) == "drift"
    assert monitor.grade(0.15, 0.1, 0.25, 0.0) == "warn" and monitor.worst(["ok", "drift", "warn"]) == "drift"
    # Good-Turing: values seen once are what a resample would find unseen; a pruned counter's lost mass too.
    assert monitor.expected_unseen({"a": 8, "b": 1, "c": 1}, 10) == pytest.approx(0.2)
    assert monitor.expected_unseen({"a": 8}, 10) == pytest.approx(0.2)
    # A numeric column 30 % missing where training had none: the missing bin drifts.
    train = SCHEMA.validate(make_synthetic(1000, seed=0))
    new = SCHEMA.validate(make_synthetic(600, seed=1))
    new.loc[new.index[:180], "pages_viewed"] = np.nan
    f = monitor.numeric_drift("pages_viewed", SplitStats.of_frame(train, SCHEMA), SplitStats.of_frame(new, SCHEMA))
    assert f["verdict"] == "drift" and f["missing_reference"] == 0 and f["missing_new"] == pytest.approx(0.3)
    assert "missing 0.0% -> 30.0%" in f["reason"]


def test_cli_drift_exits_1_and_writes_json_and_html(export, tmp_path, capsys):
    version, ref = export
    csv = write_csv(shifted(), tmp_path / "july.csv")
    scored = tmp_path / "july.scored.csv"
    pd.DataFrame({contract.PROBABILITY_COLUMN: fake_scores(shifted())}).to_csv(scored, index=False)
    status, out, err = run(["--model", version.parent, "--input", csv, "--scores", scored,
                            "--output", tmp_path / "out"], capsys)
    assert status == monitor.EXIT_DRIFT, err
    report = json.loads((tmp_path / "out" / "monitor.json").read_text())
    expected = monitor.compare(ref, monitor.table_stats(csv, SCHEMA)[0], SCHEMA)
    assert {n: f["verdict"] for n, f in report["features"].items()} == \
        {n: f["verdict"] for n, f in expected["features"].items()}
    assert report["verdict"] == "drift" and report["rows"] == 800 and report["scores"]["verdict"] == "drift"
    assert report["reference"]["training_examples"] == 1500 and report["reference"]["score_sample"] == 500
    assert report["export"] == str(version)  # the model folder's highest version
    page = (tmp_path / "out" / "monitor.html").read_text()
    assert page.index("DRIFT") < page.index("3 of 7 features drifted") < page.index("<table>")
    assert page.count("data:image/png;base64,") == 4  # 3 drifted features and the scores
    assert "price_seen" in out and out.strip().splitlines()[-1].startswith("Report: ")


def test_cli_resample_exits_0_without_tensorflow(export, tmp_path):
    version, _ = export
    csv = write_csv(make_synthetic(800, seed=3), tmp_path / "resample.csv")
    code = ("import sys; from purchase_intent import cli, monitor; status = cli.run(monitor.main, sys.argv[1:]); "
            "print('tensorflow imported:', 'tensorflow' in sys.modules); sys.exit(status)")
    proc = subprocess.run([sys.executable, "-c", code, "--model", str(version), "--input", str(csv), "--no-scores"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "OK: No feature drifted (7 compared)." in proc.stdout
    assert "tensorflow imported: False" in proc.stdout
    report = json.loads((tmp_path / "resample.csv.monitor" / "monitor.json").read_text())
    assert report["verdict"] == "ok" and report["scores"] is None


@pytest.mark.parametrize("case", ["missing column", "unreadable file", "no such file", "no training stats",
                                  "bad scores"])
def test_bad_input_exits_2_with_one_line(case, export, tmp_path, capsys):
    version, _ = export
    csv = tmp_path / "new.csv"
    write_csv(make_synthetic(50, seed=4), csv)
    if case == "missing column":
        pd.read_csv(csv).drop(columns=["device"]).to_csv(csv, index=False)
        expect = f"{csv}: missing column(s) ['device']"
    elif case == "unreadable file":
        csv.write_bytes(b"PK\x03\x04 not a csv")
        expect = f"{csv}: the file is an Excel workbook"
    elif case == "no such file":
        csv = tmp_path / "absent.csv"
        expect = f"{csv}: file not found"
    elif case == "bad scores":
        scores = tmp_path / "scored.csv"
        pd.DataFrame({contract.PROBABILITY_COLUMN: [0.2, 0.4, 1.7] + [0.5] * 47}).to_csv(scores, index=False)
        status, out, err = run(["--model", version, "--input", csv, "--scores", scores], capsys)
        assert status == 2 and err.strip() == (
            f"error: {scores}: spreadsheet row 4 (header = row 1): "
            "purchase_probability '1.7' is not a probability in [0, 1] (1 such rows)")
        return
    else:
        version = tmp_path / "old_export"
        (version / "assets.extra").mkdir(parents=True)
        SCHEMA.save(version / "assets.extra" / "schema.json")
        expect = f"{version / 'assets.extra' / monitor.TRAINING_STATS} is missing"
    status, out, err = run(["--model", version, "--input", csv, "--no-scores"], capsys)
    assert status == 2
    assert err.startswith("error: ") and expect in err and len(err.strip().splitlines()) == 1, err


def test_end_to_end_with_a_real_export_and_a_prepared_directory(tiny_run, tmp_path, capsys):
    """--model scores through predict's Predictor; --input may be a prepared directory (its statistics)."""
    from purchase_intent import prepare
    from purchase_intent.data.prepared import Prepared

    run_dir, metrics = tiny_run
    version = Path(metrics["export"]["path"])
    assert (version / "assets.extra" / monitor.TRAINING_STATS).is_file()
    csv = write_csv(make_synthetic(300, seed=21), tmp_path / "resample.csv")
    status, out, err = run(["--model", version, "--input", csv, "--output", tmp_path / "a", "--no-progress"],
                           capsys)
    report = json.loads((tmp_path / "a" / "monitor.json").read_text())
    assert report["scores"]["examples"] == 300 and report["scores"]["verdict"] == "ok", report["scores"]
    assert status == 0 and report["verdict"] in ("ok", "warn"), report["summary"]
    table = shifted(400, seed=22)
    for name in SCHEMA.sequence_like:
        table[name] = table[name].map("|".join)
    table.to_csv(tmp_path / "shifted.csv", index=False)  # with its label: prepare splits a training table
    SCHEMA.save(tmp_path / "schema.json")
    prepare.main(["--input", str(tmp_path / "shifted.csv"), "--schema", str(tmp_path / "schema.json"),
                  "--output", str(tmp_path / "prepared"), "--preset", "tiny"])
    status, out, err = run(["--model", version, "--input", tmp_path / "prepared", "--output", tmp_path / "b",
                            "--no-progress"], capsys)
    report = json.loads((tmp_path / "b" / "monitor.json").read_text())
    assert status == monitor.EXIT_DRIFT and report["input"].endswith("(split train)")
    assert report["scores"]["examples"] == report["rows"] == Prepared.load(tmp_path / "prepared").examples("train")
    assert {n for n, f in report["features"].items() if f["verdict"] == "drift"} == set(SHIFTED)
