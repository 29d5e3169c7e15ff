"""purchase_intent.task: build (wide warm-up, cached frozen text), datasets, fit with callbacks passed in, predict,
the dtype policy (mixed bfloat16 through to the export)."""


def _tiny_task(n: int = 240, seed: int = 3):
    from purchase_intent.config import get_config
    from purchase_intent.data.synthetic import SCHEMA, make_synthetic

    cfg = get_config("tiny", overrides=["train.epochs=2", "data.batch_size=64", "train.calibration=none"])
    schema = SCHEMA.subset(["sequence", "numeric"])
    df = SCHEMA.validate(make_synthetic(n, seed=seed))[[*schema.feature_names, schema.label]]
    splits = {"train": df.iloc[:160], "validation": df.iloc[160:200], "test": df.iloc[200:]}
    return cfg, schema, splits


def test_fit_runs_the_callbacks_passed_in_after_early_stopping_and_predict_scores_each_row():
    import keras
    import numpy as np

    from purchase_intent import task

    cfg, schema, splits = _tiny_task()
    keras.utils.set_random_seed(0)
    pre, model = task.build(cfg, schema, splits)
    train_ds, val_ds = task.datasets(cfg, schema, pre, splits)
    steps = []
    counter = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: steps.append(batch))
    timer = task.EpochTimer.make()
    history = task.fit(model, cfg, train_ds, val_ds, steps_per_epoch=3, callbacks=[counter, timer])
    assert steps == [0, 1, 2, 0, 1, 2]  # 160 examples, batch 64, 2 epochs
    assert len(timer.train_seconds) == 2
    assert set(history) >= {"loss", "auc", "val_auc"} and all(len(v) == 2 for v in history.values())
    assert all(isinstance(v, float) for vs in history.values() for v in vs)
    p = task.predict(model, cfg, schema, pre, splits["test"])
    assert p.shape == (40,) and np.all((p > 0) & (p < 1))


def test_dtype_policy_sets_and_restores_the_global_policy():
    import keras

    from purchase_intent import task

    before = keras.mixed_precision.dtype_policy().name
    with task.dtype_policy("mixed_bfloat16") as name:
        assert name == keras.mixed_precision.dtype_policy().name == "mixed_bfloat16"
    assert keras.mixed_precision.dtype_policy().name == before
    assert task.dtype_policy_name("off") == "float32"


def _graph_has_bfloat16(version_dir):
    """True if any op of the SavedModel graph computes in bfloat16."""
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((version_dir / "saved_model.pb").read_bytes())
    nodes = [n for mg in sm.meta_graphs for f in mg.graph_def.library.function for n in f.node_def]
    return any(a.type == types_pb2.DT_BFLOAT16 for n in nodes for a in n.attr.values())


def test_mixed_bfloat16_trains_and_exports_a_float32_probability(tmp_path):
    """train.mixed_precision=mixed_bfloat16 on CPU, as train.main runs it (the task under ``task.dtype_policy``):
    two training steps, an export whose body computes in bfloat16 and whose output is float32, the policy
    restored afterwards. A wiring test (one epoch of two steps)."""
    from pathlib import Path

    import keras
    import numpy as np

    from purchase_intent import task
    from purchase_intent.config import get_config
    from purchase_intent.data.source import open_splits
    from purchase_intent.exactness import export_and_check
    from purchase_intent.export import load_serving_fn
    from purchase_intent.preprocessing import raw_batch

    cfg = get_config("tiny", overrides=["data.synthetic_examples=150", "data.batch_size=64",
                                        "train.mixed_precision=mixed_bfloat16"])
    keras.utils.set_random_seed(0)
    with task.dtype_policy(cfg.train.mixed_precision):
        data = open_splits(cfg.data, seed=cfg.train.seed)
        t = task.PurchaseIntentTask(cfg, data)
        assert t.describe()[1].endswith("dtype policy mixed_bfloat16")
        steps = []
        t.fit(lambda i: [keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: steps.append(b))],
              epochs=1)
        assert steps == [0, 1]  # two training steps
        model, pre = t.exportable_model(), t.preprocessor
        sample = data.frame("test")
        expected = np.asarray(model(pre(raw_batch(sample, data.schema)), training=False), np.float32).reshape(-1)
        checked = export_and_check(model, pre, cfg.export, tmp_path, {}, warmup=sample.head(8), sample=sample,
                                   expected=expected)
    assert keras.mixed_precision.dtype_policy().name == "float32"  # restored for whatever runs next
    vdir = Path(checked["path"])
    assert _graph_has_bfloat16(vdir)  # the body computes in bfloat16 ...
    served = load_serving_fn(vdir)(**raw_batch(sample, data.schema))["purchase_probability"]
    assert served.dtype.name == "float32"  # ... the served probability is float32
    p = served.numpy()
    assert np.all(np.isfinite(p)) and np.all((p > 0) & (p < 1))
    # Same graph, other batching: equal within bfloat16 resolution (8 mantissa bits, 2^-8 = 0.004).
    assert checked["max_abs_diff"] < 0.02


def test_wide_warmup_fits_the_wide_part_first_and_freezes_it_on_request():
    import keras
    import numpy as np

    from purchase_intent.config import get_config
    from purchase_intent.data.synthetic import SCHEMA, make_synthetic
    from purchase_intent.model import wide_layers
    from purchase_intent.pipeline import make_dataset
    from purchase_intent.task import build, warm_up_wide

    cfg = get_config("tiny", overrides=["train.wide_warmup_epochs=3", "train.wide_warmup_freeze=true",
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
    assert all(np.allclose(a, b) for a, b in zip(warmed, after)), "frozen wide weights moved"


def _layer_types(model):
    return {type(layer).__name__ for layer in model.layers}


def test_frozen_text_fits_on_cached_embeddings_and_exports_the_backbone(tmp_path):
    """Fit without BERT; the exported model runs BERT on raw strings, unseen ones included."""
    import numpy as np

    from purchase_intent import task
    from purchase_intent.config import get_config
    from purchase_intent.data.synthetic import SCHEMA, make_synthetic
    from purchase_intent.export import export_model, load_serving_fn
    from purchase_intent.pipeline import make_dataset
    from purchase_intent.preprocessing import raw_batch

    cfg = get_config("tiny", overrides=["model.text_trainable_layers=0", "data.batch_size=32"])
    df = SCHEMA.validate(make_synthetic(300, seed=5))
    splits = {"train": df.iloc[:200], "validation": df.iloc[200:250], "test": df.iloc[250:]}
    preprocessor, (model,), exportable = task.build_members(cfg, SCHEMA, splits, members=1, text_cache=True)
    # Training never calls the backbone: it is not in the model, the cached lookup is.
    assert "CachedTextEncoder" in _layer_types(model) and "BertBackbone" not in _layer_types(model)
    model.fit(make_dataset(splits["train"], SCHEMA, preprocessor, cfg.data, training=True), epochs=1, verbose=0)

    (served_model,) = exportable([model])
    assert "BertBackbone" in _layer_types(served_model) and "CachedTextEncoder" not in _layer_types(served_model)
    test_ds = make_dataset(splits["test"], SCHEMA, preprocessor, cfg.data, training=False)
    p_cached = model.predict(test_ds, verbose=0).reshape(-1)
    p_model = served_model.predict(test_ds, verbose=0).reshape(-1)
    np.testing.assert_allclose(p_model, p_cached, atol=1e-5)  # same weights, texts of every split cached

    serve = load_serving_fn(export_model(served_model, preprocessor, tmp_path, version=1))
    served = serve(**raw_batch(splits["test"], SCHEMA))["purchase_probability"].numpy()
    np.testing.assert_allclose(served, p_model, atol=1e-5)

    # A query no split has: the export encodes it; the cached lookup would give the zero vector.
    unseen = splits["test"].head(8).assign(query="mug mug lamp garden cheap kitchen vintage")
    p_unseen = serve(**raw_batch(unseen, SCHEMA))["purchase_probability"].numpy()
    p_zero = model.predict(make_dataset(unseen, SCHEMA, preprocessor, cfg.data, training=False),
                           verbose=0).reshape(-1)
    assert np.all(np.isfinite(p_unseen)) and np.all((p_unseen > 0) & (p_unseen < 1))
    assert np.max(np.abs(p_unseen - p_zero)) > 1e-4
    np.testing.assert_allclose(p_unseen, served_model.predict(
        make_dataset(unseen, SCHEMA, preprocessor, cfg.data, training=False), verbose=0).reshape(-1), atol=1e-5)
