"""Shared fixtures: one tiny end-to-end training run and one tiny served export, reused by test modules."""

import json
import os
import shutil

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SERVING_MODEL = "purchase_intent"
SERVING_WARMUP_RECORDS = 6

# The files with the longest end-to-end runs start first: scripts/test.sh hands whole files to its
# pytest-xdist workers in collection order (--dist loadfile), and one of them started last would run on
# its own while the other worker idles. Stable: the order inside each file is kept.
# (Measured 2026-12-04, seconds of tests per file: notebooks 155, distributed 92, train 79, resume 70,
# export 55, task 54, train_shards 51, exactness 49, report 45, compare 41, recalibrate 40, serving 33.)
LONG_FILES_FIRST = ("notebooks_test.py", "distributed_test.py", "train_test.py", "resume_test.py",
                    "export_test.py", "task_test.py", "train_shards_test.py", "exactness_test.py",
                    "report_test.py", "compare_test.py", "recalibrate_test.py", "serving_test.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONG_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def build_once(tmp_path_factory, worker_id, name, build):
    """Runs ``build(folder)`` once per test session and returns the folder it filled.

    With pytest-xdist every worker is a process of its own with its own session
    fixtures; the first worker to ask builds in a folder all of them share (under a
    file lock) and the others wait for it and read what it wrote. A build that raised
    leaves no ``.built`` mark, so the next worker to ask tries again (and fails alike).
    """
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()  # this process's folder of the test session
    if worker_id != "master":
        root = root.parent  # the session's folder, above the workers' own: shared by them
    folder = root / name
    with FileLock(str(root / f"{name}.lock")):
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


TINY_RUN_EXAMPLES = 1_200  # the tiny preset's data.synthetic_examples


def write_user_csv(folder, n: int = TINY_RUN_EXAMPLES, seed: int = 42):
    """Synthetic sessions as a user's CSV (sequences "|"-delimited) with a ``customer_id`` column, and a schema
    file naming that id column and describing the label; returns ``(csv, schema_file)``."""
    from purchase_intent.data.synthetic import SCHEMA, make_synthetic

    df = make_synthetic(n, seed=seed)
    for col in SCHEMA.sequence_like:
        df[col] = df[col].map("|".join)
    df.insert(0, "customer_id", [f"C{i:05d}" for i in range(len(df))])
    df.to_csv(folder / "customers.csv", index=False)
    (folder / "schema.json").write_text(json.dumps({**SCHEMA.to_dict(), "id": ["customer_id"],
                                                    "description": "buys during the session"}))
    return folder / "customers.csv", folder / "schema.json"


def tiny_run_args(folder) -> list[str]:
    """``train``'s arguments of conftest's ``tiny_run`` (its data in ``folder``), without ``--output-dir``."""
    return ["--preset", "tiny", "--data", str(folder / "customers.csv"),
            "--set", f"data.schema={folder / 'schema.json'}"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, worker_id):
    """Runs `train.main` on the tiny preset with a user's CSV of synthetic sessions; returns (run_dir, metrics).

    The CSV (``write_user_csv``: 1,200 sessions, as the tiny preset's synthetic data) has a
    ``customer_id`` column that its schema file names as the id, and a description of the label;
    the random split leaves 180 test rows, a small split. Beside the run folder,
    ``epochs/<k>.weights.h5`` holds the network's weights at the end of epoch k (saved as
    ``BackupAndRestore`` saves them): ``resume_test`` compares a fresh process's backup with them.
    """
    def build(folder):
        import keras

        from purchase_intent import train

        write_user_csv(folder)
        (folder / "epochs").mkdir()
        every_epoch = keras.callbacks.ModelCheckpoint(str(folder / "epochs" / "{epoch}.weights.h5"),
                                                      save_weights_only=True)
        train.main([*tiny_run_args(folder), "--output-dir", str(folder / "run")], callbacks=[every_epoch])

    run_dir = build_once(tmp_path_factory, worker_id, "tiny_run", build) / "run"
    return run_dir, read_json(run_dir / "metrics.json")


@pytest.fixture(scope="session")
def user_csv_run(tiny_run):
    """``tiny_run`` with its input files: ``(run_dir, metrics, csv, schema_file)``."""
    run_dir, metrics = tiny_run
    return run_dir, metrics, run_dir.parent / "customers.csv", run_dir.parent / "schema.json"


def train_in_fresh_process(args, timeout=600):
    """Runs ``python -m purchase_intent.train *args`` in a fresh process and asserts it exited 0;
    returns ``(metrics, stderr)``: the metrics.json of its ``--output-dir`` and what it printed there."""
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.run([sys.executable, "-m", "purchase_intent.train", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return read_json(Path(args[args.index("--output-dir") + 1]) / "metrics.json"), proc.stderr


@pytest.fixture(scope="session")
def train_process():
    """:func:`train_in_fresh_process`, for the test modules."""
    return train_in_fresh_process


def max_abs_diff(a, b) -> float:
    """The largest absolute difference between paired arrays of two sequences (weights, say)."""
    import numpy as np

    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)), initial=0)) for x, y in zip(a, b, strict=True))


def read_json(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def exported(tmp_path_factory, worker_id):
    """A tiny untrained model exported as version 1 (with warm-up records), and its expected outputs.

    ``sample`` holds an empty session (row 0), an unseen category (1), a
    missing number (2) and sessions longer than the client's 200 events (3).
    The export is written once per test session (``build_once``); each worker
    builds the same model and preprocessor in memory (same seed, no export) and
    checks that they answer as the exported ones did.
    """
    import keras
    import numpy as np

    from purchase_intent.config import get_config
    from purchase_intent.data import load_splits
    from purchase_intent.export import export_model
    from purchase_intent.preprocessing import raw_batch
    from purchase_intent.task import build

    def model_and_data():
        cfg = get_config("tiny")
        cfg.data.synthetic_examples = 300
        keras.utils.set_random_seed(0)
        schema, splits = load_splits(cfg.data, seed=0)
        pre, model = build(cfg, schema, splits)
        return schema, splits, pre, model

    def awkward_sample(schema, splits):
        sample = splits["test"].head(24).copy().reset_index(drop=True)
        for col in schema.sequence_like:  # an empty session
            sample.at[0, col] = []
        sample.at[1, "device"] = "smart-fridge"  # an unseen category
        sample.at[2, "session_minutes"] = np.nan  # a missing number
        long = [f"sku{i}" for i in range(250)]  # longer than the client's 200 events and the model's 12
        sample.at[3, "item_id"] = long
        sample.at[3, "event_type"] = ["view"] * 250
        sample.at[3, "item_title"] = ["red mug sale"] * 250
        return sample

    here = {}  # the model and data of this worker, when it is the one that writes the export

    def write(folder):
        schema, splits, pre, model = here["built"] = model_and_data()
        # The exporter writes the warm-up records into the version before it becomes visible. Exported before
        # the preprocessor is first called: the exporter builds it (as for a model restored from weights).
        export_model(model, pre, folder / "models", SERVING_MODEL, 1,
                     extra_assets={"schema.json": schema.to_dict(), "threshold.json": {"threshold": 0.25}},
                     warmup_examples=splits["validation"].head(20), warmup_records=SERVING_WARMUP_RECORDS)
        sample = awkward_sample(schema, splits)
        np.save(folder / "expected.npy", model(pre(raw_batch(sample, schema)), training=False).numpy().reshape(-1))

    folder = build_once(tmp_path_factory, worker_id, "exported", write)
    schema, splits, pre, model = here.get("built") or model_and_data()
    sample = awkward_sample(schema, splits)
    expected = np.load(folder / "expected.npy")
    assert np.std(expected) > 1e-4, "the tiny model should not be constant"
    # This worker's model is the exported one: same seed, same weights, same answers.
    np.testing.assert_allclose(model(pre(raw_batch(sample, schema)), training=False).numpy().reshape(-1),
                               expected, atol=1e-6)
    base = folder / "models"
    return {"model": model, "pre": pre, "schema": schema, "sample": sample, "expected": expected,
            "base": base, "vdir": base / SERVING_MODEL / "1", "splits": splits}


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
