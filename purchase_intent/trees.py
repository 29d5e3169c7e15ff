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
``left`` and ``value`` per node (breadth first, so the right child is
``left + 1``), leaves pointing to themselves; evaluation walks every tree of
every example one level per step, ``depth`` steps in all.

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

logger = logging.getLogger(__name__)

LAYER_NAME = "boosted_trees"  # the branch's layer in a model (and its variables' prefix in an export)


def _float32_at_most(x: np.ndarray) -> np.ndarray:
    """The largest float32 ``<=`` each float64 of ``x`` (so ``v32 <= t32`` iff ``v32 <= t64``)."""
    x = np.asarray(x, np.float64)
    t = x.astype(np.float32)
    up = t.astype(np.float64) > x
    t[up] = np.nextafter(t[up], np.float32(-np.inf))
    return t


def _breadth_first(nodes) -> np.ndarray:
    """New index of each node of one tree, breadth first: the two children of a node are adjacent."""
    order, queue = [0], [0]
    while queue:
        i = queue.pop(0)
        if not nodes["is_leaf"][i]:
            order += [int(nodes["left"][i]), int(nodes["right"][i])]
            queue += [int(nodes["left"][i]), int(nodes["right"][i])]
    new = np.empty(len(nodes), np.int64)
    new[np.asarray(order)] = np.arange(len(order))
    return new


def tree_tables(clf) -> dict:
    """The node tables of a fitted binary ``HistGradientBoostingClassifier``, for :class:`TreeEnsemble`.

    Only numeric splits (fit it without categorical features) on inputs
    without NaN: the preprocessed features have none (missing values are
    imputed and flagged). Nodes are numbered breadth first within each tree,
    so a node's right child is its left child + 1.

    Returns:
        ``{"feature", "threshold", "left", "value", "roots", "depth",
        "baseline", "n_features"}``: int32 / float32 arrays over all nodes,
        child indices global, leaves their own (left) child with threshold +inf.
    """
    predictors = [p[0] for p in clf._predictors]  # binary: one tree per iteration
    feature, threshold, left, value, roots = [], [], [], [], []
    depth, offset = 0, 0
    for tree in predictors:
        nodes = tree.nodes
        if np.any(nodes["is_categorical"]):
            raise ValueError("tree_tables takes numeric splits only (no categorical_features)")
        new = _breadth_first(nodes)
        inverse = np.argsort(new)  # old index of each new position
        nodes = nodes[inverse]
        leaf = nodes["is_leaf"].astype(bool)
        idx = np.arange(len(nodes))
        feature.append(np.where(leaf, 0, nodes["feature_idx"]))
        threshold.append(np.where(leaf, np.inf, nodes["num_threshold"]))
        left.append(np.where(leaf, idx, new[nodes["left"]]) + offset)
        value.append(np.where(leaf, nodes["value"], 0.0))
        roots.append(offset)
        depth = max(depth, int(nodes["depth"].max()))
        offset += len(nodes)
    baseline = float(np.ravel(clf._baseline_prediction)[0])
    return {"feature": np.concatenate(feature).astype(np.int32),
            "threshold": _float32_at_most(np.concatenate(threshold)),
            "left": np.concatenate(left).astype(np.int32), "value": np.concatenate(value).astype(np.float32),
            "roots": np.asarray(roots, np.int32), "depth": depth, "baseline": baseline,
            "n_features": int(clf.n_features_in_)}


@keras.saving.register_keras_serializable(package="purchase_intent")
class TreeEnsemble(keras.layers.Layer):
    """The boosted margin ``baseline + sum of leaf values`` of flattened trees, one per example.

    Input ``[batch, n_features]`` float32, output ``[batch, 1]`` float32. The
    node tables are non-trainable weights (saved with the model). Each step
    moves every tree of every example one level down: to ``left`` if its
    feature is ``<= threshold``, else to ``left + 1``; a leaf stays (threshold
    +inf). Three gathers per level: the node's (feature, left child), its
    threshold, the example's value of that feature.

    Args:
        feature, threshold, left, value: per node (see :func:`tree_tables`).
        roots: first node of each tree.
        depth: int. The deepest leaf's depth (evaluation steps).
        baseline: float. The initial raw prediction.
        n_features: int. Width of the input.
    """

    def __init__(self, feature, threshold, left, value, roots, depth, baseline, n_features, **kwargs):
        kwargs.setdefault("dtype", "float32")
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        self.tables = {"feature": np.asarray(feature, np.int32), "threshold": np.asarray(threshold, np.float32),
                       "left": np.asarray(left, np.int32), "value": np.asarray(value, np.float32),
                       "roots": np.asarray(roots, np.int32)}
        self.depth, self.baseline, self.n_features = int(depth), float(baseline), int(n_features)
        arrays = {"feature_left": np.stack([self.tables["feature"], self.tables["left"]], axis=1),
                  "threshold": self.tables["threshold"], "value": self.tables["value"],
                  "roots": self.tables["roots"]}
        for key, array in arrays.items():
            setattr(self, f"_{key}", self.add_weight(
                name=key, shape=array.shape, dtype=array.dtype.name, trainable=False,
                initializer=keras.initializers.Constant(array)))

    def build(self, input_shape):
        self.built = True

    def call(self, x):
        # tf.gather, not keras.ops.take: the indices are never negative, and take's
        # negative-index handling doubles the ops of each level.
        import tensorflow as tf

        x = tf.cast(x, tf.float32)
        batch = tf.shape(x)[0]
        flat = tf.reshape(x, (-1,))
        row = tf.expand_dims(tf.range(batch) * self.n_features, 1)  # [batch, 1]
        node = tf.broadcast_to(tf.expand_dims(tf.convert_to_tensor(self._roots), 0),
                               (batch, self.tables["roots"].size))
        for _ in range(self.depth):
            feature_left = tf.gather(self._feature_left, node)  # [batch, trees, 2]
            value = tf.gather(flat, row + feature_left[..., 0])
            right = tf.greater(value, tf.gather(self._threshold, node))
            node = feature_left[..., 1] + tf.cast(right, tf.int32)
        margin = tf.reduce_sum(tf.gather(self._value, node), axis=1, keepdims=True)
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
