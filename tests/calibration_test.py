"""Platt recalibration: fitted on validation, inside the model, fixes class-weighted probabilities."""

import numpy as np

from purchase_intent.calibration import PlattScaling, calibrated_model, fit_platt, logit
from purchase_intent.evaluate import expected_calibration_error


def _imbalanced(n, rng):
    """5 % positives; a 'balanced class weight' model's probabilities: log-odds shifted by log(19)."""
    score = rng.normal(size=n)
    true_logit = -3.4 + 1.5 * score
    y = (rng.random(n) < 1 / (1 + np.exp(-true_logit))).astype(int)
    p_weighted = 1 / (1 + np.exp(-(true_logit + np.log(19))))
    return y, p_weighted


def test_platt_on_validation_brings_test_ece_under_the_bar():
    rng = np.random.default_rng(0)
    y_val, p_val = _imbalanced(5000, rng)
    y_test, p_test = _imbalanced(20000, rng)
    assert expected_calibration_error(y_test, p_test) > 0.2  # what class weighting does
    a, b = fit_platt(y_val, p_val)
    calibrated = PlattScaling(a, b)(p_test.reshape(-1, 1).astype("float32")).numpy().ravel()
    assert expected_calibration_error(y_test, calibrated) < 0.01
    # A monotone map: the ranking (ROC-AUC) is unchanged.
    assert (np.argsort(calibrated, kind="stable") == np.argsort(p_test, kind="stable")).mean() > 0.999


def test_single_class_gives_the_identity_and_logit_is_finite():
    assert fit_platt(np.zeros(10), np.linspace(0, 1, 10)) == (1.0, 0.0)
    assert np.isfinite(logit([0.0, 1.0])).all()


def test_calibrated_model_shares_weights_and_applies_the_map():
    import keras

    inp = keras.Input((2,), name="x")
    model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(inp))
    wrapped = calibrated_model(model, 2.0, -0.5)
    x = np.random.default_rng(0).normal(size=(8, 2)).astype("float32")
    p = model(x).numpy()
    expected = 1 / (1 + np.exp(-(2.0 * logit(p) - 0.5)))
    np.testing.assert_allclose(wrapped(x).numpy(), expected, rtol=1e-5)
    assert wrapped.trainable_weights[0] is model.trainable_weights[0]


def test_calibration_layers_pass_the_layer_test():
    from layer_test_case import run_layer_test

    from purchase_intent.calibration import Stacking

    p = np.array([[0.1], [0.5], [0.97]], "float32")
    margin = np.array([[-1.0], [0.0], [2.5]], "float32")
    layer, out = run_layer_test(PlattScaling, {"a": 1.7, "b": -0.3, "name": "calibration", "dtype": "float32"},
                                p, (3, 1), expected_num_trainable_weights=0)
    np.testing.assert_allclose(out.numpy(), 1 / (1 + np.exp(-(1.7 * logit(p) - 0.3))), rtol=1e-5)
    layer, out = run_layer_test(Stacking, {"a": 0.8, "c": 0.4, "b": 0.1}, [p, margin], (3, 1))
    np.testing.assert_allclose(out.numpy(), 1 / (1 + np.exp(-(0.8 * logit(p) + 0.4 * margin + 0.1))), rtol=1e-5)
    assert not layer.trainable
