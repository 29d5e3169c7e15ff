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
MIN_GAIN = 1e-4  # out-of-fold log loss the stacking must gain over Platt scaling to be kept


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
    """``(a, c, b)`` of the logistic regression of ``y`` on ``logit(p)`` and ``margin``, with ``a, c >= 0``.

    Platt scaling with a second input: the margin of another model (the
    boosted trees). Both weights are kept non-negative (a negative weight
    would turn a better score of either model into a lower probability: an
    artefact of a small validation set, never a finding). Returns
    ``(1.0, 0.0, 0.0)`` when ``y`` has a single class.
    """
    from scipy.optimize import minimize

    y = np.asarray(y).astype(np.float64).reshape(-1)
    if y.min() == y.max():
        return 1.0, 0.0, 0.0
    x = np.column_stack([logit(p).reshape(-1), np.asarray(margin, np.float64).reshape(-1)])
    a0, b0 = fit_platt(y, p)

    def loss(w):  # mean log loss and its gradient
        z = x @ w[:2] + w[2]
        q = 1.0 / (1.0 + np.exp(-z))
        value = np.mean(np.logaddexp(0.0, z) - y * z)
        g = q - y
        return value, np.array([np.mean(g * x[:, 0]), np.mean(g * x[:, 1]), np.mean(g)])

    start = np.array([max(a0, 0.0), 0.0, b0])
    res = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=[(0.0, None), (0.0, None), (None, None)])
    a, c, b = (float(v) for v in res.x)
    return a, c, b


def out_of_fold(y: np.ndarray, fit, predict, folds: int = 5, seed: int = 0) -> np.ndarray | None:
    """Each row's prediction by a model fitted on the other folds (stratified): never on its own label.

    Args:
        y: the labels (0/1) of the rows.
        fit: ``fit(rows, y[rows]) -> params`` for an index array of rows.
        predict: ``predict(params, rows) -> probabilities`` of those rows.
        folds: folds (fewer when a class has fewer rows).

    Returns:
        One probability per row, or None when a class has fewer than 2 rows.
    """
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y).astype(int).reshape(-1)
    n = min(folds, int(y.sum()), int(len(y) - y.sum()))
    if n < 2:
        return None
    out = np.zeros(len(y))
    for train, held in StratifiedKFold(n, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        out[held] = predict(fit(train, y[train]), held)
    return out


def choose_output(y: np.ndarray, p: np.ndarray, margin: np.ndarray, folds: int = 5, seed: int = 0) -> dict:
    """Stacking of the network with the trees' margin, or Platt scaling of the network alone: cross-validated.

    Both are fitted on the validation rows; which one the model keeps is
    decided by their out-of-fold log loss on those rows (:func:`out_of_fold`:
    each row scored by a fit on the other folds), so a stacking that only
    fits the validation set's noise (a few dozen buyers) is not kept: the
    network alone, Platt-scaled, is.

    Returns:
        ``{"method": "stack" | "platt", "a", "b", ("c"), "cv": {"platt": {"log_loss", "roc_auc"},
        "stack": {...}}, "folds"}``.
    """
    from sklearn.metrics import log_loss, roc_auc_score

    y = np.asarray(y).astype(int).reshape(-1)
    z, m = logit(p).reshape(-1), np.asarray(margin, np.float64).reshape(-1)

    def sigmoid(v):
        return 1.0 / (1.0 + np.exp(-v))

    def platt_fit(rows, yr):
        return fit_platt(yr, p[rows])

    def stack_fit(rows, yr):
        return fit_stacking(yr, p[rows], m[rows])

    oof = {"platt": out_of_fold(y, platt_fit, lambda w, rows: sigmoid(w[0] * z[rows] + w[1]), folds, seed),
           "stack": out_of_fold(y, stack_fit, lambda w, rows: sigmoid(w[0] * z[rows] + w[1] * m[rows] + w[2]),
                                folds, seed)}
    a, c, b = fit_stacking(y, p, m)
    stack = {"method": "stack", "a": a, "b": b, "c": c}
    if oof["platt"] is None:  # too few rows of a class to cross-validate: the stacking as fitted
        return {**stack, "cv": None, "folds": 0}
    cv = {k: {"log_loss": float(log_loss(y, np.clip(v, 1e-7, 1 - 1e-7))), "roc_auc": float(roc_auc_score(y, v))}
          for k, v in oof.items()}
    folds_used = min(folds, int(y.sum()), int(len(y) - y.sum()))
    if cv["stack"]["log_loss"] < cv["platt"]["log_loss"] - MIN_GAIN:
        return {**stack, "cv": cv, "folds": folds_used}
    a, b = fit_platt(y, p)
    return {"method": "platt", "a": a, "b": b, "cv": cv, "folds": folds_used}


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
