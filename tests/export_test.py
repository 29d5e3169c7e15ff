"""The export: same probabilities in a fresh process, TF Serving layout, portable ops."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from purchase_intent.export import existing_versions, graph_op_types

DATA = Path(__file__).parent / "data"

FRESH_PROCESS = r"""
import json, sys
import numpy as np, pandas as pd
from purchase_intent.export import load_serving_fn
from purchase_intent.preprocessing import raw_batch
from purchase_intent.schema import FeatureSchema
version_dir, frame_path = sys.argv[1], sys.argv[2]
schema = FeatureSchema.load(f"{version_dir}/assets.extra/schema.json")
df = schema.validate(pd.read_json(frame_path), require_label=False)
fn = load_serving_fn(version_dir)
print(json.dumps(fn(**raw_batch(df, schema))["purchase_probability"].numpy().tolist()))
"""


def _score_in_fresh_process(vdir, df, tmp_path):
    """Probabilities of ``df`` from the export loaded by a new Python process."""
    frame = tmp_path / "frame.json"
    df.drop(columns=["label"]).to_json(frame)
    proc = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(vdir), str(frame)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.array(json.loads(proc.stdout.strip().splitlines()[-1]))


def _version_dir(run_dir):
    model_dir = run_dir / "export" / "purchase_intent"
    versions = existing_versions(model_dir)
    assert versions == [1]
    return model_dir / "1"


def test_version_folder_is_readable_by_other_users(tiny_run):
    import stat

    run_dir, _ = tiny_run
    vdir = _version_dir(run_dir)
    assert stat.S_IMODE(vdir.stat().st_mode) == 0o755  # not mkdtemp's 0700: TF Serving may run as another user


def metrics_schema_names(extra):
    from purchase_intent.schema import FeatureSchema

    return FeatureSchema.load(extra / "schema.json").feature_names


def test_export_layout_and_assets(tiny_run):
    run_dir, metrics = tiny_run
    vdir = _version_dir(run_dir)
    assert (vdir / "saved_model.pb").exists() and (vdir / "variables").is_dir()
    extra = vdir / "assets.extra"
    threshold = json.loads((extra / "threshold.json").read_text())["threshold"]
    assert threshold == metrics["test"]["purchase_intent"]["threshold"]
    assert json.loads((extra / "schema.json").read_text())["label"] == "label"
    assert "test" in json.loads((extra / "metrics.json").read_text())
    from purchase_intent.serving.warmup import read_warmup_requests

    warmup = read_warmup_requests(extra / "tf_serving_warmup_requests")
    assert len(warmup) == 32
    assert all(set(log.predict_log.request.inputs) == set(metrics_schema_names(extra)) for log in warmup)
    # No temporary folder left behind.
    assert [p.name for p in vdir.parent.iterdir()] == ["1"]


def test_fresh_process_matches_in_memory_model(tiny_run, tmp_path):
    import tensorflow as tf  # noqa: F401

    from purchase_intent.config import get_config
    from purchase_intent.data import load_splits
    from purchase_intent.export import load_serving_fn
    from purchase_intent.preprocessing import raw_batch

    run_dir, _ = tiny_run
    vdir = _version_dir(run_dir)
    cfg = get_config("tiny")
    schema, splits = load_splits(cfg.data, seed=cfg.train.seed)
    df = splits["test"].head(40).copy()
    df.at[df.index[0], "item_id"] = []  # an empty session
    df.at[df.index[0], "event_type"] = []
    df.at[df.index[0], "item_title"] = []
    df.at[df.index[1], "device"] = "smart-fridge"  # unseen category
    fresh = _score_in_fresh_process(vdir, df, tmp_path)
    in_process = load_serving_fn(vdir)(**raw_batch(df, schema))["purchase_probability"].numpy()
    assert fresh.shape == (40,)
    np.testing.assert_allclose(fresh, in_process, atol=1e-5)
    assert np.all(np.isfinite(fresh)) and len(np.unique(np.round(fresh, 4))) > 5


def test_optional_parts_export_and_reload(tmp_path):
    """The Transformer encoder, numeric bins, the wide bag of words and the focal loss: one epoch through the
    task, then the export checked as every run checks it (``tf.saved_model.load`` and TF Serving's path,
    on awkward rows and an empty session through the Transformer). A wiring test: tiny_run learns."""
    import keras

    from purchase_intent.config import get_config
    from purchase_intent.data.source import open_splits
    from purchase_intent.exactness import export_and_check
    from purchase_intent.preprocessing import raw_batch
    from purchase_intent.task import PurchaseIntentTask

    cfg = get_config("tiny", overrides=["model.sequence_encoder=lstm+cnn+transformer", "model.numeric_bins=4",
                                        "train.loss=focal", "model.text_bag_of_words=30",
                                        "data.synthetic_examples=400"])
    keras.utils.set_random_seed(0)
    data = open_splits(cfg.data, seed=cfg.train.seed)
    task = PurchaseIntentTask(cfg, data)
    (history,) = task.fit(epochs=1)
    assert np.isfinite(history["loss"][0])
    df = data.frame("test").head(16).copy()
    df.at[df.index[0], "item_id"] = []  # an empty session through the Transformer
    df.at[df.index[0], "event_type"] = []
    df.at[df.index[0], "item_title"] = []
    model, pre = task.exportable_model(), task.preprocessor
    expected = model(pre(raw_batch(df, data.schema)), training=False).numpy().reshape(-1)
    assert np.all(np.isfinite(expected)) and np.all((expected > 0) & (expected < 1))
    checked = export_and_check(model, pre, cfg.export, tmp_path, {"schema.json": data.schema.to_dict()},
                               warmup=df, sample=df, expected=expected)
    assert checked["max_abs_diff"] < 1e-5
    assert checked["max_abs_diff_serving"] <= 1e-6 and checked["serving_rows_checked"] > len(df)
    vdir = Path(checked["path"])
    assert "StringNGrams" in graph_op_types(vdir)  # the bag of words is in the serving graph
    _assert_ops_portable(vdir)


def test_in_memory_model_matches_export(tiny_run):
    """serving_default(raw) == model(preprocessor(raw)) for the run's own objects."""
    run_dir, metrics = tiny_run
    assert metrics["export"]["max_abs_diff"] < 1e-5


def test_exported_ops_exist_in_tf_text_2_12(tiny_run):
    """Every op is a core TF op or a tensorflow-text op that TF Text 2.12 has."""
    run_dir, _ = tiny_run
    _assert_ops_portable(_version_dir(run_dir))


@functools.cache
def _core_ops() -> frozenset:
    """The ops registered in a process that imported TensorFlow only (no tensorflow_text); listed once."""
    probe = ("from tensorflow.core.framework import op_def_pb2\n"
             "from tensorflow.python.client import pywrap_tf_session as c\n"
             "l = op_def_pb2.OpList(); l.ParseFromString(c.TF_GetBuffer(c.TF_GetAllOpList()))\n"
             "print('\\n'.join(o.name for o in l.op))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    core = frozenset(proc.stdout.split())
    assert len(core) > 1000, proc.stderr[-2000:]
    return core


def _assert_ops_portable(vdir):
    allowed = {l.strip() for l in (DATA / "tf_text_2_12_ops.txt").read_text().splitlines()
               if l.strip() and not l.startswith("#")}
    core = _core_ops()
    ops = graph_op_types(vdir)
    non_core = ops - core
    assert non_core, "the tiny model has text: WordPiece ops were expected in the graph"
    assert non_core <= allowed, f"ops missing from TF Text 2.12: {sorted(non_core - allowed)}"
    assert "RoundRobinTrim" not in ops and "FastBertNormalize" not in ops


def test_lora_trains_only_the_adapters_and_exports_them(tmp_path):
    """model.text_lora_rank: no text cache, base encoder weights unchanged by fit, adapters exported."""
    import keras

    from purchase_intent import task
    from purchase_intent.config import get_config
    from purchase_intent.data.synthetic import SCHEMA, make_synthetic
    from purchase_intent.exactness import export_check
    from purchase_intent.export import export_model, load_serving_fn
    from purchase_intent.pipeline import make_dataset
    from purchase_intent.preprocessing import raw_batch

    cfg = get_config("tiny", overrides=["model.text_trainable_layers=0", "model.text_lora_rank=4",
                                        "model.text_lora_alpha=8", "data.batch_size=32",
                                        "model.tiny_num_layers=2"])
    df = SCHEMA.validate(make_synthetic(300, seed=5))
    splits = {"train": df.iloc[:200], "validation": df.iloc[200:250], "test": df.iloc[250:]}
    keras.utils.set_random_seed(0)
    preprocessor, (model,), exportable = task.build_members(cfg, SCHEMA, splits, members=1, text_cache=True)
    # The encoder changes in training: it runs in every step (nothing cached).
    assert "BertBackbone" in {type(layer).__name__ for layer in model.layers}
    backbone = next(layer for layer in model.layers if type(layer).__name__ == "BertBackbone")
    trainable = {w.path for w in backbone.trainable_weights}
    assert trainable and all("lora_kernel" in p for p in trainable), sorted(trainable)
    assert {p.rsplit("/", 2)[-2] for p in trainable} == {"query", "value"}
    before = {w.path: w.numpy().copy() for w in backbone.weights}
    head_before = model.get_layer("query_projection").kernel.numpy().copy()

    model.fit(make_dataset(splits["train"], SCHEMA, preprocessor, cfg.data, training=True), epochs=1, verbose=0)
    after = {w.path: w.numpy() for w in backbone.weights}
    changed = {p for p in before if not np.array_equal(before[p], after[p])}
    assert changed and changed <= trainable, sorted(changed - trainable)  # base weights bit-identical
    assert any(p.endswith("lora_kernel_b") for p in changed)  # B starts at zero: it moved
    assert not np.allclose(head_before, model.get_layer("query_projection").kernel.numpy())  # the rest trains

    (served_model,) = exportable([model])
    assert served_model is model
    test_ds = make_dataset(splits["test"], SCHEMA, preprocessor, cfg.data, training=False)
    p_model = model.predict(test_ds, verbose=0).reshape(-1)
    vdir = export_model(model, preprocessor, tmp_path, version=1)
    served = load_serving_fn(vdir)(**raw_batch(splits["test"], SCHEMA))["purchase_probability"].numpy()
    np.testing.assert_allclose(served, p_model, atol=1e-5)
    check = export_check(vdir, model, preprocessor, splits["test"].head(8))  # TF Serving's path, awkward rows
    assert check["max_abs_diff_in_memory_serving"] <= 1e-6 and check["rows"] > 20, check
    # Without the trained adapters the encoder (and the probabilities) would differ: the export has them.
    for w in backbone.weights:
        if w.path.endswith("lora_kernel_b"):
            w.assign(np.zeros(w.shape, "float32"))
    assert np.max(np.abs(model.predict(test_ds, verbose=0).reshape(-1) - served)) > 1e-6
    _assert_ops_portable(vdir)


def test_default_save_signatures_are_hidden_only_while_writing():
    """The writer does not trace a default signature per Keras model (benchmarks/export_speed.py: Keras's
    write_out 9-22 % faster, same answers); every model has its own back afterwards, after an error too."""
    import keras
    import pytest

    from purchase_intent.export import without_default_save_signatures

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert model._default_save_signature is not None  # Keras offers one: a tf.function of the model's inputs
    with without_default_save_signatures():
        assert model._default_save_signature is None
    assert model._default_save_signature is not None and "_default_save_signature" not in vars(keras.Model)
    with pytest.raises(RuntimeError), without_default_save_signatures():
        raise RuntimeError("while writing")
    assert model._default_save_signature is not None
