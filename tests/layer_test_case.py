"""``run_layer_test``: the serialisation checks of keras-hub's ``TestCase.run_layer_test``, for plain pytest.

A helper module, not a test module: test files import it as
``from layer_test_case import run_layer_test`` (pytest's default ``prepend``
import mode puts this folder, which has no ``__init__.py``, on ``sys.path``).
"""

from __future__ import annotations

import json

import keras
import numpy as np
from keras import tree

PACKAGE = "purchase_intent"


def _shapes(output):
    return tree.map_structure(lambda x: tuple(x.shape), output)


def _call(layer, input_data, call_kwargs):
    args = input_data if isinstance(input_data, tuple) else (input_data,)
    return layer(*args, **call_kwargs)


def _assert_same(actual, expected, atol, what):
    tree.assert_same_structure(actual, expected)
    for a, e in zip(tree.flatten(actual), tree.flatten(expected)):
        a, e = keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(e)
        if atol == 0:
            np.testing.assert_array_equal(a, e, err_msg=what)
        else:
            np.testing.assert_allclose(a, e, rtol=0, atol=atol, err_msg=what)


def _json(config):
    try:
        return json.dumps(config, sort_keys=True)
    except TypeError as e:
        raise AssertionError(f"get_config() is not JSON-serialisable: {e}") from e


def run_layer_test(cls, init_kwargs, input_data, expected_output_shape=None, *, call_kwargs=None,
                   expected_num_trainable_weights=None, expected_num_non_trainable_weights=None,
                   symbolic=True, atol=0.0):
    """Builds ``cls(**init_kwargs)`` on ``input_data`` and checks its serialisation.

    * the class is registered under ``purchase_intent>``;
    * the eager output has ``expected_output_shape`` (a tuple, or a structure
      of tuples like the output: a dict of shapes for a dict output);
    * with ``symbolic``, calling on ``keras.KerasTensor`` inputs of the same
      shapes and dtypes gives the same output shapes (or None where a
      dimension is not known statically);
    * ``get_config()`` is JSON-serialisable, and ``from_config`` of it (read
      back from JSON) gives a layer with the same config which, given the
      original's weights, returns the same outputs (to ``atol``; 0: equal);
    * the same through ``keras.saving.serialize_keras_object`` /
      ``deserialize_keras_object`` (the registered name, as a ``.keras`` file
      resolves it).

    Args:
        cls: the layer class.
        init_kwargs: dict. Constructor arguments.
        input_data: the call's input, or a tuple of its positional inputs.
        expected_output_shape: tuple or structure of tuples; None: not checked.
        call_kwargs: dict. Keyword arguments of every call (e.g. ``training=False``).
        expected_num_trainable_weights, expected_num_non_trainable_weights:
            int or None (not checked).
        symbolic: bool. Also call on symbolic inputs.
        atol: float. Tolerance between the original's and the revived layer's outputs.

    Returns:
        The built layer and its output: ``(layer, output)``.
    """
    call_kwargs = dict(call_kwargs or {})
    registered = keras.saving.get_registered_name(cls)
    assert registered == f"{PACKAGE}>{cls.__name__}", f"{cls.__name__} is not registered: {registered!r}"

    layer = cls(**init_kwargs)
    output = _call(layer, input_data, call_kwargs)
    assert layer.built
    if expected_output_shape is not None:
        assert _shapes(output) == expected_output_shape, (_shapes(output), expected_output_shape)
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights, layer.trainable_weights
    if expected_num_non_trainable_weights is not None:
        assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights, \
            layer.non_trainable_weights

    if symbolic:
        symbolic_inputs = tree.map_structure(
            lambda x: keras.KerasTensor(np.shape(x), keras.backend.standardize_dtype(x.dtype)), input_data)
        symbolic_output = _call(cls(**init_kwargs), symbolic_inputs, call_kwargs)
        tree.assert_same_structure(symbolic_output, output)
        for sym, real in zip(tree.flatten(symbolic_output), tree.flatten(output)):
            sym, real = tuple(sym.shape), tuple(real.shape)
            assert len(sym) == len(real) and all(s in (None, r) for s, r in zip(sym, real)), \
                (_shapes(symbolic_output), _shapes(output))

    config = layer.get_config()
    config_json = _json(config)
    revived = cls.from_config(json.loads(config_json))
    assert _json(revived.get_config()) == config_json, "from_config(get_config()) has another config"
    _check_outputs(layer, revived, input_data, call_kwargs, output, atol, "from_config")

    serialized = json.loads(_json(keras.saving.serialize_keras_object(layer)))
    assert serialized["registered_name"] == registered, serialized.get("registered_name")
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is cls
    assert _json(revived.get_config()) == config_json, "deserialize_keras_object gives another config"
    _check_outputs(layer, revived, input_data, call_kwargs, output, atol, "deserialize_keras_object")
    return layer, output


def _check_outputs(layer, revived, input_data, call_kwargs, expected, atol, how):
    _call(revived, input_data, call_kwargs)  # builds it
    assert len(revived.weights) == len(layer.weights), (how, revived.weights, layer.weights)
    revived.set_weights(layer.get_weights())
    _assert_same(_call(revived, input_data, call_kwargs), expected, atol, f"{how}: another output")
