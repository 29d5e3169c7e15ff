"""Keras serialisation: every custom layer registered, the whole model through a ``.keras`` file.

The per-layer config round trips are in the test file of each layer's module
(``run_layer_test`` of ``layer_test_case.py``).
"""

import importlib
import inspect
import pkgutil
import warnings

import numpy as np


def _package_layer_classes():
    """Every ``keras.layers.Layer`` subclass defined in a module of ``purchase_intent``."""
    import keras

    import purchase_intent

    classes = []
    for info in pkgutil.walk_packages(purchase_intent.__path__, "purchase_intent."):
        if info.name.rsplit(".", 1)[-1] == "__main__":  # runs a command when imported
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError as e:  # an optional dependency (e.g. Apache Beam) not installed
            if (e.name or "").startswith("purchase_intent"):
                raise
            continue
        classes += [obj for _, obj in inspect.getmembers(module, inspect.isclass)
                    if obj.__module__ == module.__name__ and issubclass(obj, keras.layers.Layer)]
    return classes


def test_every_layer_of_the_package_is_registered():
    """A new layer without ``@keras.saving.register_keras_serializable(package="purchase_intent")`` fails here."""
    import keras

    classes = _package_layer_classes()
    names = {cls.__name__ for cls in classes}
    assert {"Preprocessor", "TreeEnsemble", "EnsembleMean", "PlattScaling", "Stacking", "BehaviourLSTM",
            "CachedTextEncoder", "ExactGeluBertBackbone"} <= names, names
    unregistered = [f"{cls.__module__}.{cls.__name__}" for cls in classes
                    if keras.saving.get_registered_name(cls) != f"purchase_intent>{cls.__name__}"]
    assert not unregistered, f"not registered under purchase_intent>: {unregistered}"
    # A constructor with arguments of its own needs a get_config that returns them.
    for cls in classes:
        own = (set(inspect.signature(cls.__init__).parameters) - {"self", "args", "kwargs"}
               if "__init__" in vars(cls) else set())
        assert not own or "get_config" in vars(cls), f"{cls.__name__}({', '.join(sorted(own))}) has no get_config"


def test_the_fusion_model_round_trips_through_a_keras_file(tmp_path):
    """Every block, a two-member ensemble sharing the text encoder, the boosted trees and the stacking:
    ``model.save("m.keras")`` and ``keras.saving.load_model`` give the same predictions, without a warning."""
    import keras

    from purchase_intent import output_stage, task
    from purchase_intent.config import get_config
    from purchase_intent.data import load_splits
    from purchase_intent.model import EnsembleMean, average_models
    from purchase_intent.preprocessing import raw_batch
    from purchase_intent.trees import TreeEnsemble

    cfg = get_config("tiny", overrides=[
        "train.ensemble=2", "train.boosted_trees_max_iter=20", "model.sequence_encoder=lstm+cnn+transformer",
        "model.transformer_units=8", "model.attention_pooling=true", "model.attention_units=4",
        "model.item_dropout=0.1", "model.numeric_bins=4", "model.text_bag_of_words=50",
        "model.wide_tabular=true", "model.wide_idf=true"])
    cfg.data.synthetic_examples = 300
    keras.utils.set_random_seed(0)
    schema, splits = load_splits(cfg.data, seed=0)
    pre, members, _ = task.build_members(cfg, schema, splits)
    model = average_models(members, pre)
    y_val = splits["validation"][schema.label].to_numpy()
    p_val = task.predict(model, cfg, schema, pre, splits["validation"])
    model, info, trees = output_stage.fit_output(model, cfg, schema, pre, splits,
                                         y_val, p_val)
    assert info["method"] == "stack" and isinstance(trees, TreeEnsemble)
    kinds = {type(layer).__name__ for m in members for layer in m.layers}
    assert {"BehaviourLSTM", "BehaviourCNN", "BehaviourTransformer", "AttentionPool", "IdDropout",
            "BagLinear", "CrossIds", "SequenceStats", "MaskedMeanPool"} <= kinds, kinds

    df = splits["test"].head(40).copy().reset_index(drop=True)
    df.at[0, "session_minutes"] = np.nan  # a missing number
    for col in schema.sequence_like:  # an empty session
        df.at[1, col] = []
    x = pre(raw_batch(df, schema))
    expected = model(x, training=False).numpy()
    assert np.std(expected) > 1e-4

    path = tmp_path / "model.keras"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.save(path)
        loaded = keras.saving.load_model(path)
    keras_warnings = [str(w.message) for w in caught if "keras" in w.filename or "keras_hub" in w.filename]
    keras_warnings = [w for w in keras_warnings if "__array__" not in w]  # numpy 2's copy notice
    assert not keras_warnings, keras_warnings

    np.testing.assert_allclose(loaded(x, training=False).numpy(), expected, rtol=0, atol=1e-6)
    ensemble = next(layer for layer in loaded.layers if isinstance(layer, EnsembleMean))
    backbones = {id(layer) for m in ensemble.members for layer in m.layers if type(layer).__name__.endswith("Backbone")}
    assert len(ensemble.members) == 2 and len(backbones) == 1  # still one shared text encoder
    assert len(loaded.weights) == len(model.weights)
