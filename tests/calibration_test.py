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


def test_out_of_fold_never_scores_a_row_with_a_fit_on_its_own_label():
    from purchase_intent.calibration import out_of_fold

    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.2).astype(int)
    fitted_on = []

    def fit(rows, yr):
        assert np.array_equal(yr, y[rows])
        fitted_on.append(set(rows.tolist()))
        return len(fitted_on) - 1

    def predict(k, rows):
        assert not fitted_on[k] & set(rows.tolist()), "a row scored by a fit that saw its label"
        return np.full(len(rows), float(k))

    oof = out_of_fold(y, fit, predict, folds=5)
    assert len(fitted_on) == 5 and sorted(set(oof)) == [0, 1, 2, 3, 4]
    assert out_of_fold(np.array([0, 0, 0, 1]), fit, predict) is None  # one positive: nothing to cross-fit


def test_stacking_weights_are_non_negative():
    from purchase_intent.calibration import fit_stacking

    rng = np.random.default_rng(1)
    y = (rng.random(2000) < 0.3).astype(int)
    p = np.clip(0.3 + 0.3 * (y - 0.3) + 0.1 * rng.standard_normal(2000), 0.01, 0.99)
    against = -2.0 * y + rng.standard_normal(2000)  # a margin that ranks backwards
    a, c, b = fit_stacking(y, p, against)
    assert a > 0 and c == 0.0


def test_choose_output_keeps_trees_that_help_and_drops_them_on_a_small_noisy_validation():
    from purchase_intent.calibration import choose_output

    rng = np.random.default_rng(2)
    n = 3000
    y = (rng.random(n) < 0.2).astype(int)
    p = 1 / (1 + np.exp(-(-1.5 + 1.0 * y + rng.standard_normal(n))))  # a weak network
    helpful = 2.0 * y + rng.standard_normal(n)  # trees that know more
    info = choose_output(y, p, helpful)
    assert info["method"] == "stack" and info["c"] > 0.5
    assert info["cv"]["stack"]["roc_auc"] > info["cv"]["platt"]["roc_auc"]
    # 300 validation rows, 18 buyers, a margin of noise: the network alone, Platt-scaled, is kept.
    small = np.r_[np.ones(18, int), np.zeros(282, int)]
    p_small = 1 / (1 + np.exp(-(-2.5 + 1.5 * small + rng.standard_normal(300))))
    info = choose_output(small, p_small, 3.0 * rng.standard_normal(300))
    assert info["method"] == "platt" and "c" not in info
    assert info["cv"]["stack"]["log_loss"] >= info["cv"]["platt"]["log_loss"] - 1e-4
