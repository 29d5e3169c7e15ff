"""recalibrate: a new version that is the old one followed by a Platt map, and nothing else."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from purchase_intent import cli, recalibrate

PLANTED_A, PLANTED_B = 1.0, 1.5  # the season: every score's odds multiplied by e^1.5


@pytest.fixture(scope="module")
def recent(exported, tmp_path_factory):
    """A copy of the ``exported`` version 1, a labelled table with a planted shift, and version 2 from the CLI.

    The 600 rows (the fixture's splits twice) are labelled ``Bernoulli(sigmoid(logit(p) + 1.5))`` of
    the export's own probability ``p`` (the ranking holds, the buying rate jumps), stamped with
    times 1 hour apart and written in shuffled order, so ``--time-column`` decides what is held back.
    """
    from purchase_intent.export import load_serving_fn
    from purchase_intent.preprocessing import raw_batch

    schema = exported["schema"]
    base = tmp_path_factory.mktemp("recalibrate") / "purchase_intent"
    shutil.copytree(exported["vdir"], base / "1")
    frame = pd.concat([exported["splits"][s] for s in ("train", "validation", "test")] * 2, ignore_index=True)
    old_fn = load_serving_fn(base / "1")
    p_old = np.concatenate([old_fn(**raw_batch(frame.iloc[i:i + 256], schema))["purchase_probability"].numpy()
                            for i in range(0, len(frame), 256)]).astype(np.float64)
    rng = np.random.default_rng(0)
    frame[schema.label] = (rng.random(len(frame)) < recalibrate.platt_map(p_old, PLANTED_A, PLANTED_B)).astype(int)
    frame["visit_time"] = (pd.Timestamp("2024-11-01") + pd.to_timedelta(np.arange(len(frame)), "h")).astype(str)
    table = frame.copy()
    for col in schema.sequence_like:
        table[col] = table[col].map("|".join)
    csv = base.parent / "recent.csv"
    table.iloc[rng.permutation(len(table))].to_csv(csv, index=False)
    out = base.parent / "report"
    assert recalibrate.main(["--model", str(base), "--input", str(csv), "--time-column", "visit_time",
                             "--output", str(out)]) == 0
    report = json.loads((out / recalibrate.RECALIBRATION_FILE).read_text())
    return {"base": base, "csv": csv, "frame": frame, "p_old": p_old, "report": report, "schema": schema,
            "held_back": np.arange(len(frame)) >= len(frame) // 2}  # the later half by time


def _scores(version_dir, frame, schema):
    from purchase_intent.export import load_serving_fn
    from purchase_intent.preprocessing import raw_batch

    fn = load_serving_fn(version_dir)
    return np.concatenate([fn(**raw_batch(frame.iloc[i:i + 256], schema))["purchase_probability"].numpy()
                           for i in range(0, len(frame), 256)]).astype(np.float64)


def test_new_version_is_the_old_one_followed_by_the_map(recent):
    from sklearn.metrics import roc_auc_score

    report, base = recent["report"], recent["base"]
    assert report["version"] == 2 and report["source_version"] == 1 and (base / "2" / "saved_model.pb").exists()
    a, b = report["a"], report["b"]
    p_new = _scores(base / "2", recent["frame"], recent["schema"])
    np.testing.assert_allclose(p_new, recalibrate.platt_map(recent["p_old"], a, b), atol=1e-6, rtol=0)
    y = recent["frame"]["label"]
    assert roc_auc_score(y, p_new) == pytest.approx(roc_auc_score(y, recent["p_old"]), abs=1e-9)
    assert report["held_back"]["after"]["roc_auc"] == pytest.approx(report["held_back"]["before"]["roc_auc"],
                                                                     abs=1e-9)
    # Fitted on the earlier rows only, and near the planted season.
    assert report["rows_fit"] == report["rows_held_back"] == 300
    assert a == pytest.approx(PLANTED_A, abs=0.6) and b == pytest.approx(PLANTED_B, abs=0.6)
    # assets.extra: copied, the threshold mapped (same decisions), the recalibration recorded.
    extra = base / "2" / "assets.extra"
    for name in ("schema.json", "contract.json", "tf_serving_warmup_requests"):
        assert (extra / name).read_bytes() == (base / "1" / "assets.extra" / name).read_bytes()
    threshold = json.loads((extra / "threshold.json").read_text())
    assert threshold["threshold"] == pytest.approx(float(recalibrate.platt_map(np.array([0.25]), a, b)[0]))
    assert threshold["recalibration"]["threshold_before"] == 0.25
    assert json.loads((extra / "metrics.json").read_text())["recalibration"]["a"] == a
    assert json.loads((extra / recalibrate.RECALIBRATION_FILE).read_text())["b"] == b
    assert report["exactness"]["warmup_requests_replayed"] > 0


def test_recalibrate_changes_only_the_output_layer(recent):
    import tensorflow as tf

    base = recent["base"]
    old = {v.name: v.numpy() for v in tf.saved_model.load(str(base / "1")).variables}
    new = tf.saved_model.load(str(base / "2")).variables
    names = [v.name for v in new]
    assert len(names) == len(set(names))
    new = {v.name: v.numpy() for v in new}
    assert set(new) - set(old) == {"recalibration_2/a:0", "recalibration_2/b:0"}
    assert set(old) <= set(new)
    for name, value in old.items():
        assert new[name].shape == value.shape and np.array_equal(new[name], value), name
    assert new["recalibration_2/a:0"] == recent["report"]["a"]
    assert new["recalibration_2/b:0"] == recent["report"]["b"]


def test_held_back_calibration_improves_on_a_planted_shift(recent):
    from purchase_intent.evaluate import expected_calibration_error

    frame, held, report = recent["frame"], recent["held_back"], recent["report"]
    y = frame["label"].to_numpy()[held]
    before = recent["p_old"][held]
    after = _scores(recent["base"] / "2", frame[held], recent["schema"])
    assert y.mean() > before.mean() + 0.15  # the season: far more buyers than the model says
    assert expected_calibration_error(y, after) < expected_calibration_error(y, before) / 2
    assert report["held_back"]["before"]["ece"] == pytest.approx(expected_calibration_error(y, before), abs=1e-6)
    assert report["held_back"]["after"]["ece"] == pytest.approx(expected_calibration_error(y, after), abs=1e-6)
    assert report["held_back"]["after"]["log_loss"] < report["held_back"]["before"]["log_loss"]


def test_tf_serving_path_answers_as_tf_saved_model_load(recent):
    from export_test import _assert_ops_portable

    from purchase_intent.exactness import compare_paths
    from purchase_intent.serving.session import SessionModel

    base, schema = recent["base"], recent["schema"]
    rows = schema.validate(recent["frame"], require_label=False)
    check = compare_paths(base / "2", rows, schema)
    assert check["max_abs_diff_serving"] <= 1e-6 and check["rows_above_1e-6"] == 0
    assert recent["report"]["exactness"]["max_abs_diff_serving"] <= 1e-6
    assert recent["report"]["exactness"]["rows"] > len(rows)  # the awkward rows too
    old, new = SessionModel(base / "1"), SessionModel(base / "2")
    assert dict(new.signature_def.inputs.items()).keys() == dict(old.signature_def.inputs.items()).keys()
    for key, spec in old.signature_def.inputs.items():
        assert new.signature_def.inputs[key].dtype == spec.dtype
        assert new.signature_def.inputs[key].tensor_shape == spec.tensor_shape
    assert list(new.signature_def.outputs) == ["purchase_probability"]
    assert new.signature_def.method_name == old.signature_def.method_name == "tensorflow/serving/predict"
    old.close(), new.close()
    _assert_ops_portable(base / "2")  # core TF ops + TF Text 2.12's


def test_a_recalibrated_version_recalibrates_again(recent, tmp_path):
    """Next season: version 2 is the source; a refit on the same rows is the identity."""
    import tensorflow as tf

    report = recalibrate.recalibrate(recent["base"] / "2", recent["schema"].validate(recent["frame"]),
                                     model_dir=tmp_path / "purchase_intent", version=3)
    assert report["version"] == 3 and report["source_version"] == 2
    assert report["a"] == pytest.approx(1.0, abs=0.05) and report["b"] == pytest.approx(0.0, abs=0.05)
    names = [v.name for v in tf.saved_model.load(str(tmp_path / "purchase_intent" / "3")).variables]
    assert len(names) == len(set(names)) and names[-4:] == [
        "recalibration_2/a:0", "recalibration_2/b:0", "recalibration_3/a:0", "recalibration_3/b:0"]


@pytest.mark.parametrize("case", ["no_label", "no_model", "bad_fraction", "no_time_column", "one_class"])
def test_bad_input_is_one_line_and_exit_2(recent, tmp_path, capsys, case):
    table = pd.read_csv(recent["csv"])
    model, extra = str(recent["base"] / "1"), []
    if case == "no_label":
        table = table.drop(columns=["label"])
    elif case == "no_model":
        model = str(tmp_path / "nowhere" / "purchase_intent")
    elif case == "bad_fraction":
        extra = ["--holdout-fraction", "1.5"]
    elif case == "no_time_column":
        extra = ["--time-column", "when"]
    elif case == "one_class":
        table["label"] = 0
    csv = tmp_path / "recent.csv"
    table.to_csv(csv, index=False)
    capsys.readouterr()
    status = cli.run(recalibrate.main, ["--model", model, "--input", str(csv), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1, err
    expected = {"no_label": "'label'", "no_model": "no such model folder", "bad_fraction": "--holdout-fraction",
                "no_time_column": "'when'", "one_class": "all 300 rows have label 0"}[case]
    assert expected in errors[0]
    assert sorted(p.name for p in recent["base"].iterdir()) == ["1", "2"]  # nothing half-written


def test_split_rows_holds_back_the_latest_times_whole():
    times = pd.Series(["2024-11-03", "2024-11-01", "2024-11-02", "2024-11-02", "2024-11-04", "2024-11-01"])
    fit, held = recalibrate.split_rows(6, 0.5, times, "day")
    # The cut at row 3 of 6 (by time) falls inside 2024-11-02: both of that day's rows stay on one side.
    assert sorted(fit) == [1, 5] and list(held) == [2, 3, 0, 4]
    fit, held = recalibrate.split_rows(5, 0.4)
    assert list(fit) == [0, 1, 2] and list(held) == [3, 4]
    numeric = pd.Series([202412, 202410, 202411, 202411])
    fit, held = recalibrate.split_rows(4, 0.25, numeric, "month")
    assert list(fit) == [1, 2, 3] and list(held) == [0]
    with pytest.raises(cli.UserError, match="nothing to fit on"):
        recalibrate.split_rows(3, 0.5, pd.Series(["2024-11-01"] * 3), "day")
