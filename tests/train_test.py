"""End to end: `train.main` on the tiny preset, and MirroredStrategy on 2 logical CPUs."""

import json
import os
import subprocess
import sys

import pytest

from purchase_intent.schema import SchemaError

# The tiny model must learn the synthetic task: planted signal gives the baselines ~0.85.
AUC_BAR = 0.75


def test_tiny_run_learns_and_writes_run_directory(tiny_run):
    run_dir, metrics = tiny_run
    auc = metrics["test"]["purchase_intent"]["roc_auc"]
    assert auc > AUC_BAR, metrics["test"]
    for name in ("config.json", "schema.json", "history.json", "metrics.json", "metrics.txt",
                 "best.weights.h5", "calibration.png", "curves.png"):
        assert (run_dir / name).exists(), name
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert set(saved["test"]) >= {"purchase_intent", "logistic_regression", "hist_gradient_boosting"}
    assert saved["skipped_baselines"] == {}
    for model_metrics in saved["test"].values():
        assert {"roc_auc", "pr_auc", "log_loss", "accuracy", "precision", "recall", "f1", "ece",
                "threshold"} <= set(model_metrics)
    assert saved["training"]["examples_per_second"] > 0
    assert saved["export"]["max_abs_diff"] < 1e-5


def test_mirrored_strategy_on_two_logical_cpus_with_a_seed_ensemble(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "purchase_intent.train", "--preset", "tiny", "--epochs", "2",
           "--strategy", "mirrored", "--cpu-replicas", "2", "--output-dir", str(out),
           "--set", "data.synthetic_examples=400", "--set", "train.ensemble=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "MirroredStrategy with 2 replica(s)" in proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"]["replicas"] == 2
    assert metrics["training"]["epochs_run"] == 2
    # Two members, each with its own files; the export serves their calibrated mean.
    assert metrics["training"]["ensemble_members"] == 2 and len(metrics["training"]["best_epochs"]) == 2
    assert (out / "member_1" / "best.weights.h5").exists()
    assert metrics["training"]["calibration"]["method"] == "platt"
    assert metrics["export"]["max_abs_diff"] < 1e-5


def test_bad_inputs_give_clear_errors(tmp_path):
    from purchase_intent import train

    table = tmp_path / "t.csv"
    table.write_text("a,y\n1,0\n2,1\n3,5\n" + "".join(f"{i},0\n" for i in range(20)))
    schema = tmp_path / "s.json"
    schema.write_text('{"label": "y", "numeric": ["a"]}')
    with pytest.raises(SchemaError, match=r"label column 'y', row 2"):
        train.main(["--data", str(table), "--set", f"data.schema={schema}", "--output-dir", str(tmp_path / "r")])
    schema.write_text('{"label": "y", "numeric": ["b"]}')
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['b'\]"):
        train.main(["--data", str(table), "--set", f"data.schema={schema}", "--output-dir", str(tmp_path / "r")])


@pytest.mark.parametrize("freeze", [False, True])
def test_wide_warmup_fits_the_wide_part_first_and_freezes_it_on_request(freeze):
    import keras
    import numpy as np

    from purchase_intent.config import get_config
    from purchase_intent.data.synthetic import SCHEMA, make_synthetic
    from purchase_intent.model import wide_layers
    from purchase_intent.pipeline import make_dataset
    from purchase_intent.train import build, warm_up_wide

    cfg = get_config("tiny", overrides=["train.wide_warmup_epochs=3", f"train.wide_warmup_freeze={freeze}",
                                        "data.batch_size=64"])
    schema = SCHEMA.subset(["sequence", "numeric"])
    df = SCHEMA.validate(make_synthetic(600, seed=5))[[*schema.feature_names, schema.label]]
    splits = {"train": df.iloc[:400], "validation": df.iloc[400:500], "test": df.iloc[500:]}
    keras.utils.set_random_seed(0)
    pre, model = build(cfg, schema, splits)
    train_ds = make_dataset(splits["train"], schema, pre, cfg.data, training=True)
    val_ds = make_dataset(splits["validation"], schema, pre, cfg.data, training=False)
    wide = wide_layers(model)
    assert {l.name for l in wide} >= {f"{n}_wide" for n in schema.sequences}
    before = [w.numpy().copy() for l in wide for w in l.weights]
    val_auc = warm_up_wide(model, cfg.train, train_ds, val_ds, steps_per_epoch=7)
    assert 1 <= len(val_auc) <= 3 and max(val_auc) > 0.6, val_auc
    warmed = [w.numpy().copy() for l in wide for w in l.weights]
    assert any(not np.allclose(a, b) for a, b in zip(before, warmed)), "the warm-up moved no wide weight"
    deep = model.get_layer("deep_logit").kernel.numpy().copy()
    model.fit(train_ds, epochs=1, verbose=0)
    after = [w.numpy() for l in wide for w in l.weights]
    assert not np.allclose(deep, model.get_layer("deep_logit").kernel.numpy())
    moved = any(not np.allclose(a, b) for a, b in zip(warmed, after))
    assert moved != freeze, "frozen wide weights moved" if freeze else "wide weights did not train"
