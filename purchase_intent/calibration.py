"""Calibrated probabilities: a logistic (Platt) recalibration fitted on validation, inside the model.

Early stopping, class weights and a wide part trained with a large input
scale all bend a network's probabilities; ranking (ROC-AUC) is untouched by a
monotone map, calibration is not. :func:`fit_platt` fits
``p' = sigmoid(a * logit(p) + b)`` on the validation predictions (two
parameters: little room to overfit the split the threshold and early stopping
already use), and :func:`calibrated_model` appends it to the model as a
:class:`PlattScaling` layer, so the SavedModel takes raw inputs and returns the
calibrated probability: every caller gets the same answer.

Examples:

>>> import numpy as np
>>> y = np.array([0, 0, 0, 1] * 50); p = np.where(y == 1, 0.9, 0.6)  # too high for class 0
>>> a, b = fit_platt(y, p)
>>> round(float(PlattScaling(a, b)(np.array([[0.6]], "float32"))[0, 0]), 2)
0.0
"""

from __future__ import annotations

import logging

import keras
import numpy as np
from keras import ops

logger = logging.getLogger(__name__)

_EPS = 1e-6


def logit(p):
    """``log(p / (1 - p))`` of probabilities clipped to ``[1e-6, 1 - 1e-6]`` (numpy)."""
    p = np.clip(np.asarray(p, np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def fit_platt(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of the logistic regression of ``y`` on ``logit(p)`` (unpenalised).

    Returns ``(1.0, 0.0)`` (the identity) when ``y`` has a single class.
    """
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(y).astype(int).reshape(-1)
    if y.min() == y.max():
        return 1.0, 0.0
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(logit(p).reshape(-1, 1), y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


@keras.saving.register_keras_serializable(package="purchase_intent")
class PlattScaling(keras.layers.Layer):
    """``sigmoid(a * logit(p) + b)`` of probabilities ``p``; ``a``, ``b`` fixed (not trained).

    Args:
        a: float. Slope on the logit.
        b: float. Intercept.
    """

    def __init__(self, a=1.0, b=0.0, **kwargs):
        kwargs.pop("trainable", None)  # from_config: always fixed
        super().__init__(trainable=False, **kwargs)
        self.a, self.b = float(a), float(b)

    def call(self, p):
        p = ops.clip(ops.cast(p, "float32"), _EPS, 1 - _EPS)
        return ops.sigmoid(self.a * ops.log(p / (1 - p)) + self.b)

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        config = super().get_config()
        config.update({"a": self.a, "b": self.b})
        return config


def fit_stacking(y: np.ndarray, p: np.ndarray, margin: np.ndarray) -> tuple[float, float, float]:
    """``(a, c, b)`` of the logistic regression of ``y`` on ``logit(p)`` and ``margin`` (unpenalised).

    Platt scaling with a second input: the margin of another model (the
    boosted trees). Returns ``(1.0, 0.0, 0.0)`` when ``y`` has a single class.
    """
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(y).astype(int).reshape(-1)
    if y.min() == y.max():
        return 1.0, 0.0, 0.0
    x = np.column_stack([logit(p).reshape(-1), np.asarray(margin, np.float64).reshape(-1)])
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(x, y)
    return float(lr.coef_[0, 0]), float(lr.coef_[0, 1]), float(lr.intercept_[0])


@keras.saving.register_keras_serializable(package="purchase_intent")
class Stacking(keras.layers.Layer):
    """``sigmoid(a * logit(p) + c * margin + b)`` of probabilities ``p`` and margins; fixed weights.

    Called on ``[p, margin]`` (each ``[batch, 1]``).
    """

    def __init__(self, a=1.0, c=0.0, b=0.0, **kwargs):
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        self.a, self.c, self.b = float(a), float(c), float(b)

    def call(self, inputs):
        p, margin = inputs
        p = ops.clip(ops.cast(p, "float32"), _EPS, 1 - _EPS)
        return ops.sigmoid(self.a * ops.log(p / (1 - p)) + self.c * ops.cast(margin, "float32") + self.b)

    def compute_output_shape(self, shapes):
        return shapes[0]

    def get_config(self):
        config = super().get_config()
        config.update({"a": self.a, "c": self.c, "b": self.b})
        return config


def stacked_model(model: keras.Model, a: float, c: float, b: float) -> keras.Model:
    """A two-output ``model`` (probability, margin) followed by :class:`Stacking`: one probability."""
    out = Stacking(a, c, b, name="calibration", dtype="float32")(model.outputs)
    return keras.Model(model.inputs, out, name=model.name)


def calibrated_model(model: keras.Model, a: float, b: float) -> keras.Model:
    """``model`` followed by :class:`PlattScaling` (same inputs, same weights, shared layers)."""
    # float32 under a mixed-precision policy too: the served probability is float32.
    out = PlattScaling(a, b, name="calibration", dtype="float32")(model.output)
    return keras.Model(model.inputs, out, name=model.name)
