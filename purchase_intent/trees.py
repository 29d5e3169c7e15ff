"""Gradient-boosted trees inside the model: a boosted-tree branch that TF Serving evaluates.

On tabular and count features a shop's first comparison is LightGBM, and a
network trained by gradient descent often trails it there by a little. This
module lets the fusion model contain such a model: :func:`fit_trees` fits
scikit-learn's ``HistGradientBoostingClassifier`` on the features the
network itself reads (the preprocessed numbers, their missing flags, the
categorical ids and the event counts, as :func:`purchase_intent.model.tree_features`
computes them in the graph), and :class:`TreeEnsemble` evaluates the fitted
trees with core TensorFlow ops only (gather, compare, select, sum), so the
export keeps taking raw features and the boosted margin is the same in
Python, gRPC and REST. How the margin joins the network's logit is
:mod:`purchase_intent.calibration` (a stacking fitted on validation).

The trees are flattened into one node table: ``feature``, ``threshold``,
``left``, ``right`` and ``value`` per node, leaves pointing to themselves;
evaluation walks every tree of every example one level per step, ``depth``
steps in all.

Examples:

>>> import numpy as np
>>> from sklearn.ensemble import HistGradientBoostingClassifier
>>> rng = np.random.default_rng(0); x = rng.normal(size=(500, 3)).astype("float32")
>>> y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(int)
>>> clf = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(x, y)
>>> layer = TreeEnsemble(**tree_tables(clf))
>>> bool(np.allclose(layer(x).numpy().ravel(), clf.decision_function(x), atol=1e-4))
True
"""

from __future__ import annotations

import logging

import keras
import numpy as np
from keras import ops

logger = logging.getLogger(__name__)


def _float32_at_most(x: np.ndarray) -> np.ndarray:
    """The largest float32 ``<=`` each float64 of ``x`` (so ``v32 <= t32`` iff ``v32 <= t64``)."""
    x = np.asarray(x, np.float64)
    t = x.astype(np.float32)
    up = t.astype(np.float64) > x
    t[up] = np.nextafter(t[up], np.float32(-np.inf))
    return t


def tree_tables(clf) -> dict:
    """The node tables of a fitted binary ``HistGradientBoostingClassifier``, for :class:`TreeEnsemble`.

    Only numeric splits (fit it without categorical features) on inputs
    without NaN: the preprocessed features have none (missing values are
    imputed and flagged).

    Returns:
        ``{"feature", "threshold", "left", "right", "value", "roots", "depth",
        "baseline", "n_features"}``: int32 / float32 arrays over all nodes,
        child indices global, leaves their own children.
    """
    predictors = [p[0] for p in clf._predictors]  # binary: one tree per iteration
    feature, threshold, left, right, value, roots = [], [], [], [], [], []
    depth, offset = 0, 0
    for tree in predictors:
        nodes = tree.nodes
        if np.any(nodes["is_categorical"]):
            raise ValueError("tree_tables takes numeric splits only (no categorical_features)")
        n = len(nodes)
        leaf = nodes["is_leaf"].astype(bool)
        idx = np.arange(n)
        feature.append(np.where(leaf, 0, nodes["feature_idx"]).astype(np.int32))
        threshold.append(np.where(leaf, np.inf, nodes["num_threshold"]))
        left.append(np.where(leaf, idx, nodes["left"]) + offset)
        right.append(np.where(leaf, idx, nodes["right"]) + offset)
        value.append(np.where(leaf, nodes["value"], 0.0))
        roots.append(offset)
        depth = max(depth, int(nodes["depth"].max()))
        offset += n
    baseline = float(np.ravel(clf._baseline_prediction)[0])
    return {"feature": np.concatenate(feature).astype(np.int32),
            "threshold": _float32_at_most(np.concatenate(threshold)),
            "left": np.concatenate(left).astype(np.int32), "right": np.concatenate(right).astype(np.int32),
            "value": np.concatenate(value).astype(np.float32), "roots": np.asarray(roots, np.int32),
            "depth": depth, "baseline": baseline, "n_features": int(clf.n_features_in_)}


class TreeEnsemble(keras.layers.Layer):
    """The boosted margin ``baseline + sum of leaf values`` of flattened trees, one per example.

    Input ``[batch, n_features]`` float32, output ``[batch, 1]`` float32. The
    node tables are non-trainable weights (saved with the model).

    Args:
        feature, threshold, left, right, value: per node (see :func:`tree_tables`).
        roots: first node of each tree.
        depth: int. The deepest leaf's depth (evaluation steps).
        baseline: float. The initial raw prediction.
        n_features: int. Width of the input.
    """

    def __init__(self, feature, threshold, left, right, value, roots, depth, baseline, n_features, **kwargs):
        kwargs.setdefault("dtype", "float32")
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        self.tables = {"feature": np.asarray(feature, np.int32), "threshold": np.asarray(threshold, np.float32),
                       "left": np.asarray(left, np.int32), "right": np.asarray(right, np.int32),
                       "value": np.asarray(value, np.float32), "roots": np.asarray(roots, np.int32)}
        self.depth, self.baseline, self.n_features = int(depth), float(baseline), int(n_features)
        for key, array in self.tables.items():
            setattr(self, f"_{key}", self.add_weight(
                name=key, shape=array.shape, dtype=array.dtype.name, trainable=False,
                initializer=keras.initializers.Constant(array)))

    def build(self, input_shape):
        self.built = True

    def call(self, x):
        x = ops.cast(x, "float32")
        node = ops.broadcast_to(ops.expand_dims(self._roots, 0), (ops.shape(x)[0], self.tables["roots"].size))
        for _ in range(self.depth):
            value = ops.take_along_axis(x, ops.take(self._feature, node), axis=1)
            go_left = ops.less_equal(value, ops.take(self._threshold, node))
            node = ops.where(go_left, ops.take(self._left, node), ops.take(self._right, node))
        margin = ops.sum(ops.take(self._value, node), axis=1, keepdims=True)
        return margin + self.baseline

    def compute_output_shape(self, shape):
        return (shape[0], 1)

    def get_config(self):
        config = super().get_config()
        config.update({k: v.tolist() for k, v in self.tables.items()})
        config.update({"depth": self.depth, "baseline": self.baseline, "n_features": self.n_features})
        return config


def fit_trees(x: np.ndarray, y: np.ndarray, *, seed: int = 0, learning_rate: float = 0.05,
              max_leaf_nodes: int = 31, max_iter: int = 500, min_samples_leaf: int = 20):
    """A ``HistGradientBoostingClassifier`` on ``(x, y)``, early-stopped on 15 % of these rows.

    Every column numeric (the categorical ids are ordinal: the preprocessor
    numbers them by training frequency). Returns the fitted classifier.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    y = np.asarray(y).astype(int).reshape(-1)
    clf = HistGradientBoostingClassifier(
        learning_rate=learning_rate, max_leaf_nodes=max_leaf_nodes, max_iter=max_iter,
        min_samples_leaf=min_samples_leaf, early_stopping=True, validation_fraction=0.15,
        n_iter_no_change=20, random_state=seed)
    clf.fit(np.asarray(x, np.float32), y)
    logger.info("Boosted trees: %d trees on %d features (%d rows)", clf.n_iter_, x.shape[1], len(y))
    return clf
