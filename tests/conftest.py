"""Shared fixtures: one tiny end-to-end training run and one tiny served export, reused by test modules."""

import json
import os
import shutil

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SERVING_MODEL = "purchase_intent"
SERVING_WARMUP_RECORDS = 6


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """Runs `train.main` on the tiny preset with synthetic data; returns (run_dir, metrics)."""
    from purchase_intent import train

    run_dir = tmp_path_factory.mktemp("tiny_run")
    metrics = train.main(["--preset", "tiny", "--output-dir", str(run_dir)])
    return run_dir, metrics


@pytest.fixture(scope="session")
def fresh_tiny_run(tmp_path_factory):
    """``tiny_run``'s training (tiny preset, its 6 epochs, seed 42, one device) without the export, run by
    ``python -m purchase_intent.train`` in a fresh process; returns ``(run_dir, metrics, stderr)``.

    Shared by the determinism test (the same metrics as ``tiny_run``) and the MirroredStrategy test
    (its one-device side).
    """
    import subprocess
    import sys

    run_dir = tmp_path_factory.mktemp("fresh_tiny_run") / "run"
    cmd = [sys.executable, "-m", "purchase_intent.train", "--preset", "tiny", "--no-export",
           "--strategy", "default", "--output-dir", str(run_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=420,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return run_dir, read_json(run_dir / "metrics.json"), proc.stderr


def read_json(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """A tiny untrained model exported as version 1 (with warm-up records), and its expected outputs.

    ``sample`` holds an empty session (row 0), an unseen category (1), a
    missing number (2) and sessions longer than the client's 200 events (3).
    """
    import keras
    import numpy as np

    from purchase_intent.config import get_config
    from purchase_intent.data import load_splits
    from purchase_intent.export import export_model
    from purchase_intent.preprocessing import raw_batch
    from purchase_intent.task import build

    cfg = get_config("tiny")
    cfg.data.synthetic_examples = 300
    keras.utils.set_random_seed(0)
    schema, splits = load_splits(cfg.data, seed=0)
    pre, model = build(cfg, schema, splits)
    sample = splits["test"].head(24).copy().reset_index(drop=True)
    for col in schema.sequence_like:  # an empty session
        sample.at[0, col] = []
    sample.at[1, "device"] = "smart-fridge"  # an unseen category
    sample.at[2, "session_minutes"] = np.nan  # a missing number
    long = [f"sku{i}" for i in range(250)]  # longer than the client's 200 events and the model's 12
    sample.at[3, "item_id"] = long
    sample.at[3, "event_type"] = ["view"] * 250
    sample.at[3, "item_title"] = ["red mug sale"] * 250
    expected = model(pre(raw_batch(sample, schema)), training=False).numpy().reshape(-1)
    assert np.std(expected) > 1e-4, "the tiny model should not be constant"
    base = tmp_path_factory.mktemp("models")
    # The exporter writes the warm-up records into the version before it becomes visible.
    vdir = export_model(model, pre, base, SERVING_MODEL, 1,
                        extra_assets={"schema.json": schema.to_dict(), "threshold.json": {"threshold": 0.25}},
                        warmup_examples=splits["validation"].head(20), warmup_records=SERVING_WARMUP_RECORDS)
    return {"model": model, "pre": pre, "schema": schema, "sample": sample, "expected": expected,
            "base": base, "vdir": vdir, "splits": splits}


@pytest.fixture(scope="session")
def two_version_server(exported, tmp_path_factory):
    """A local server (gRPC and REST on free ports) with versions 1 and 2 of ``exported``.

    Labels: stable=1, canary=2; the default version is 2. Both versions are
    the same model, so either answers ``exported["expected"]``.
    """
    from purchase_intent.serving.local import start_server

    base = tmp_path_factory.mktemp("two_versions") / SERVING_MODEL
    for version in (1, 2):
        shutil.copytree(exported["vdir"], base / str(version))
    server = start_server(base, SERVING_MODEL, port=0, rest_port=0, poll_seconds=0, warmup=False,
                          version_labels={"stable": 1, "canary": 2})
    yield server
    server.stop()


@pytest.fixture(scope="session")
def user_csv_run(tmp_path_factory):
    """A tiny run on a user's own CSV whose schema names an id column and describes the label.

    400 synthetic sessions written as a CSV (sequences "|"-delimited) with a
    ``customer_id`` column, a schema file with ``id: [customer_id]`` and a
    ``description``; 2 epochs of the tiny preset, exported. The random split
    leaves 60 test rows: a small split. Returns ``(run_dir, metrics, csv, schema_file)``.
    """
    from purchase_intent import train
    from purchase_intent.data.synthetic import SCHEMA, make_synthetic

    base = tmp_path_factory.mktemp("user_csv_run")
    df = make_synthetic(400, seed=5)
    for col in SCHEMA.sequence_like:
        df[col] = df[col].map("|".join)
    df.insert(0, "customer_id", [f"C{i:05d}" for i in range(len(df))])
    csv = base / "customers.csv"
    df.to_csv(csv, index=False)
    schema_file = base / "schema.json"
    schema_file.write_text(json.dumps({**SCHEMA.to_dict(), "id": ["customer_id"],
                                       "description": "buys during the session"}))
    run_dir = base / "run"
    metrics = train.main(["--preset", "tiny", "--data", str(csv), "--set", f"data.schema={schema_file}",
                          "--epochs", "2", "--output-dir", str(run_dir)])
    return run_dir, metrics, csv, schema_file
