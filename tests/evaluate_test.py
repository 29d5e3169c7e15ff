"""purchase_intent.evaluate: the threshold is chosen on validation, the metrics at it on test."""

import numpy as np
import pytest

from purchase_intent import evaluate


def test_each_model_is_scored_on_test_at_its_validation_threshold():
    y_val = np.array([0, 0, 1, 1, 0, 1])
    p_val = {"a": np.array([0.1, 0.3, 0.6, 0.8, 0.2, 0.7])}
    y_test = np.array([0, 1, 1, 0])
    p_test = {"a": np.array([0.5, 0.55, 0.9, 0.05])}
    threshold = evaluate.best_f1_threshold(y_val, p_val["a"])
    assert threshold == pytest.approx(0.6)  # the lowest positive: F1 = 1 on validation
    m = evaluate.evaluate_all(y_val, p_val, y_test, p_test)["a"]
    assert m["threshold"] == pytest.approx(threshold) and m["val_roc_auc"] == 1.0
    assert m["recall"] == 0.5 and m["precision"] == 1.0  # 0.55 < 0.6 <= 0.9: one buyer of two found
    assert m["roc_auc"] == 1.0 and m["examples"] == 4


def test_expected_calibration_error_is_zero_when_rates_match():
    y = np.array([0, 1] * 50)
    assert evaluate.expected_calibration_error(y, np.full(100, 0.5)) == pytest.approx(0.0)
    assert evaluate.expected_calibration_error(y, np.full(100, 0.9)) == pytest.approx(0.4)
