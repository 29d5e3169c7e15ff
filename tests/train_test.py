"""End to end: `train.main` on the tiny preset, and MirroredStrategy on 2 logical CPUs.

What a run shows: one line per stage on the terminal, everything else in ``RUN_DIR/train.log``
(``--verbose``: on the terminal too).
"""

import json
import os
import subprocess
import sys

import pytest

from purchase_intent.rundir import LOG_FILE
from purchase_intent.schema import SchemaError

# The tiny model must learn the synthetic task: planted signal gives the baselines ~0.85.
AUC_BAR = 0.75
# The terminal lines of a run, one per stage (train.py, rundir.py), in this order.
STAGES = ("Data: ", "Run directory: ", "Preprocessor adapted on ", "Training: up to ", "Trained: ",
          "Output stage (fitted on validation): ", "Evaluation on test ", "Export: SavedModel: ", "Report: ")


def assert_quiet_terminal(stderr: str):
    """A run's stderr without --verbose: the stage lines in order, short lines, no library noise or config."""
    lines = stderr.splitlines()
    assert max(map(len, lines)) < 320, max(lines, key=len)
    for noise in ("Traceback", "retracing", "Warning", "Resolved config", "Train history", "tensorflow:"):
        assert noise not in stderr, (noise, stderr[-3000:])
    where = [next((i for i, line in enumerate(lines) if line[9:].startswith(stage)), None) for stage in STAGES]
    assert None not in where and where == sorted(where), (dict(zip(STAGES, where)), stderr[-3000:])


def assert_full_log(log: str):
    """``train.log``: every module's lines, the full config (one JSON line) and the history."""
    config = next(line for line in log.splitlines() if "DEBUG purchase_intent.train: Resolved config: {" in line)
    assert json.loads(config.split("Resolved config: ", 1)[1])["train"]["seed"] == 42
    assert "DEBUG purchase_intent.train: Train history: [{" in log and "'val_auc': [" in log
    assert "INFO purchase_intent.task: Model: " in log and "INFO purchase_intent.export: Exported " in log


def test_tiny_run_learns_and_writes_run_directory(tiny_run):
    run_dir, metrics = tiny_run
    auc = metrics["test"]["purchase_intent"]["roc_auc"]
    assert auc > AUC_BAR, metrics["test"]
    for name in ("config.json", "schema.json", "history.json", "metrics.json", "metrics.txt",
                 "best.weights.h5", "calibration.png", "curves.png"):
        assert (run_dir / name).exists(), name
    assert_full_log((run_dir / LOG_FILE).read_text())
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert set(saved["test"]) >= {"purchase_intent", "logistic_regression", "hist_gradient_boosting"}
    assert saved["skipped_baselines"] == {}
    for model_metrics in saved["test"].values():
        assert {"roc_auc", "pr_auc", "log_loss", "accuracy", "precision", "recall", "f1", "ece",
                "threshold"} <= set(model_metrics)
    assert saved["training"]["examples_per_second"] > 0
    assert saved["export"]["max_abs_diff"] < 1e-5
    # TF Serving's own path (TF1 loader, Session, Grappler) on every tree split, extremes, odd sequences.
    assert saved["export"]["max_abs_diff_serving"] <= 1e-6 and saved["export"]["serving_rows_checked"] > 100


def test_frozen_text_with_mirrored_strategy_ensemble_pretraining_and_calibration(tmp_path):
    """train.main on frozen text, 2 logical CPUs, 2 members: fits on cached embeddings, exports BERT.

    Its terminal shows the stage lines only; its train.log every module's lines, the config, the
    history. (Trainable text under MirroredStrategy: distributed_test.)
    """
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "purchase_intent.train", "--preset", "tiny", "--epochs", "1",
           "--strategy", "mirrored", "--cpu-replicas", "2", "--output-dir", str(out),
           "--set", "data.synthetic_examples=400", "--set", "train.ensemble=2",
           "--set", "model.text_trainable_layers=0", "--set", "train.pretrain_epochs=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "MirroredStrategy with 2 replica(s)" in proc.stderr and ", 2 ensemble members" in proc.stderr
    assert_quiet_terminal(proc.stderr)
    assert "Test metrics (synthetic" in proc.stdout and " - val_auc: " in proc.stdout  # Keras per epoch
    log = (out / LOG_FILE).read_text()
    assert_full_log(log)
    assert "scalar text through cached embeddings of the frozen encoder" in log
    assert "distinct scalar texts (12 tokens)" in log and "Pretrained the behaviour branch" in log
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"]["replicas"] == 2 and metrics["training"]["epochs_run"] == 1
    # Two members, each with its own files; the export serves their calibrated mean.
    assert metrics["training"]["ensemble_members"] == 2 and len(metrics["training"]["best_epochs"]) == 2
    assert (out / "member_1" / "best.weights.h5").exists()
    # The boosted trees (train.boosted_trees, default) stacked with the members' mean on validation.
    calibration = metrics["training"]["calibration"]
    assert calibration["method"] == "stack" and calibration["trees"] >= 1, calibration
    # Test metrics come from the cached-text model; the export (the real encoder in the graph) matches them.
    assert metrics["export"]["max_abs_diff"] < 1e-5
    assert metrics["export"]["max_abs_diff_serving"] <= 1e-6  # the ensemble through TF Serving's path
    assert metrics["test"]["purchase_intent"]["roc_auc"] > AUC_BAR


def test_bad_inputs_give_clear_errors(tmp_path):
    from purchase_intent import train

    table = tmp_path / "t.csv"
    table.write_text("a,y\n1,0\n2,1\n3,5\n" + "".join(f"{i},0\n" for i in range(20)))
    schema = tmp_path / "s.json"
    schema.write_text('{"label": "y", "numeric": ["a"]}')
    with pytest.raises(SchemaError, match=r"label column 'y', spreadsheet row 4 \(header = row 1\)"):
        train.main(["--data", str(table), "--set", f"data.schema={schema}", "--output-dir", str(tmp_path / "r")])
    schema.write_text('{"label": "y", "numeric": ["b"]}')
    with pytest.raises(SchemaError, match=r"missing column\(s\) 'b' \(a feature of the schema\)"):
        train.main(["--data", str(table), "--set", f"data.schema={schema}", "--output-dir", str(tmp_path / "r")])


def test_explain_rows_is_on_by_default_and_off_in_the_small_presets():
    from purchase_intent.config import Config, ConfigError, get_config

    assert Config().train.explain_rows == 1000
    assert get_config("tiny").train.explain_rows == get_config("quick").train.explain_rows == 0
    with pytest.raises(ConfigError, match=r"train.explain_rows must be >= 0 \(0: off\) \(got -1\)"):
        get_config("tiny", overrides=["train.explain_rows=-1"])


def test_drivers_after_the_export_reach_the_report(tiny_run, tmp_path, caplog):
    """train's hook (explain.explain_run) on tiny_run's export and test frame, then the report of a copy of the run."""
    import shutil

    from purchase_intent import explain
    from purchase_intent.config import get_config
    from purchase_intent.data.source import open_splits
    from purchase_intent.report import build_report

    run_dir, metrics = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("export", "tensorboard", "*.h5", "backup"))
    cfg = get_config("tiny", overrides=["train.explain_rows=200"])
    data = open_splits(cfg.data, seed=cfg.train.seed)  # as train.run gets it
    frame = data.frame("test")
    assert frame[data.schema.label].nunique() == 2
    with caplog.at_level("INFO", logger="purchase_intent.explain"):
        out = explain.explain_run(cfg, metrics["export"]["path"], frame, copy)
    assert out["rows"] == min(200, len(frame)) and out["out_dir"] == copy / "explain"
    assert not (copy / "explain.partial").exists()
    assert f"Drivers: permutation importance of {len(out['features'])} features (text included) on" in caplog.text
    assert {"query", "item_title"} <= set(out["importance"].index)
    build_report(copy, bootstrap=50)
    md = (copy / "report.md").read_text()
    drivers = md[md.index("## Drivers"):md.index("## Technical appendix")]
    for feature in out["importance"].index:
        assert f"| {feature} | " in drivers, (feature, drivers)
    assert f"on {out['rows']:,} labelled rows" in drivers
    # Off, not exported, or failing: no tables, and never the run's failure.
    assert explain.explain_run(get_config("tiny"), metrics["export"]["path"], frame, tmp_path / "off") is None
    assert explain.explain_run(cfg, None, frame, tmp_path / "off") is None
    with caplog.at_level("WARNING", logger="purchase_intent.explain"):
        assert explain.explain_run(cfg, tmp_path / "no_export", frame, tmp_path / "bad") is None
    assert "Drivers not computed" in caplog.text
    assert not (tmp_path / "off").exists() and not (tmp_path / "bad" / "explain").exists()
