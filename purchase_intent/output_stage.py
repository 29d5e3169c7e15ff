"""The output stage: the boosted-tree branch, and the stacking or Platt calibration fitted on validation.

After the network is fitted, :func:`fit_output` fits gradient-boosted trees
(:mod:`purchase_intent.trees`, ``train.boosted_trees``) on the features the
graph computes for them (:func:`purchase_intent.model.tree_features`), then on
the validation split either stacks the trees' margin with the network's logit
(:func:`purchase_intent.calibration.fit_stacking`, non-negative weights) or
applies Platt scaling (``train.calibration``): without trees, or when the
stacking does not beat the network alone out of fold on validation
(:func:`purchase_intent.calibration.choose_output`: a small validation set). :func:`apply_calibration` puts the same
layers on another model of the same network (the exportable twin): the export
evaluates the trees in its graph, raw inputs in, final probability out.

Knows the data only as a :class:`~purchase_intent.data.source.Splits` (or frames)
and the model as Keras models; no files, no training loop.
"""

from __future__ import annotations

import logging

from purchase_intent.data.source import as_splits

logger = logging.getLogger(__name__)


def fit_trees(cfg, schema, preprocessor, data):
    """The boosted-tree branch (``train.boosted_trees``): a :class:`~purchase_intent.trees.TreeEnsemble`.

    Fitted on the tree features (:func:`purchase_intent.model.tree_features`) of
    the training frame of ``data`` (a ``Splits`` or frames; from a prepared
    directory, its bounded sample), as the graph computes them (a seeded sample of ``train.boosted_trees_max_examples`` rows
    when larger). None when off, or when the schema has no numeric,
    categorical or sequence features.
    """
    from purchase_intent.pipeline import eval_dataset, predict_batches
    from purchase_intent.trees import LAYER_NAME, TreeEnsemble, fit_trees as fit, tree_tables

    t = cfg.train
    if not t.boosted_trees:
        return None
    features = tree_feature_model(preprocessor)
    if features is None:
        return None
    train_data = as_splits(data, schema).frame("train")
    if len(train_data) > t.boosted_trees_max_examples:
        train_data = train_data.sample(t.boosted_trees_max_examples, random_state=t.seed)
    x = predict_batches(features, eval_dataset(cfg, schema, preprocessor, train_data, "train"))
    y = train_data[schema.label].to_numpy()
    clf = fit(x, y, seed=t.seed, learning_rate=t.boosted_trees_learning_rate,
              max_leaf_nodes=t.boosted_trees_max_leaf_nodes, max_iter=t.boosted_trees_max_iter)
    return TreeEnsemble(**tree_tables(clf), name=LAYER_NAME)


def tree_feature_model(preprocessor):
    """``preprocessed inputs -> tree features`` (:func:`purchase_intent.model.tree_features`), or None."""
    import keras

    from purchase_intent.model import model_inputs, tree_features

    inputs = model_inputs(preprocessor)
    x = tree_features(preprocessor, inputs)
    return None if x is None else keras.Model(inputs, x, name="tree_features")


def tree_margins(trees, cfg, schema, preprocessor, data, split: str):
    """The boosted margins of ``trees`` on ``split`` of ``data`` (a ``Splits`` or one frame), in order."""
    import keras

    from purchase_intent.pipeline import eval_dataset, predict_batches

    features = tree_feature_model(preprocessor)
    margin = keras.Model(features.input, trees(features.output), name="tree_margin")
    return predict_batches(margin, eval_dataset(cfg, schema, preprocessor, data, split)).reshape(-1)


def with_trees(model, preprocessor, trees):
    """``model`` with a second output: the boosted margin of ``trees`` on the same inputs."""
    import keras

    from purchase_intent.model import tree_features

    inputs = model.input  # the functional model's own inputs (a dict by name)
    return keras.Model(inputs, [model.output, trees(tree_features(preprocessor, inputs))], name=model.name)


def fit_output(model, cfg, schema, preprocessor, data, y_val, p_val):
    """The boosted-tree branch (:func:`fit_trees`, if on) and the calibration (:func:`calibrate`).

    ``data``: the run's ``Splits`` (or ``{"train", "validation"}`` frames): the
    trees fit its training frame and are stacked on its whole validation
    split, ``y_val`` its labels and ``p_val`` the network's probabilities of it.

    Returns:
        ``(model, info, trees)``: the model with its final output, the
        calibration's description, the trees (None when off or left out), for
        :func:`apply_calibration` on another model of the same network.
    """
    data = as_splits(data, schema)
    trees = fit_trees(cfg, schema, preprocessor, data)
    m_val = None if trees is None else tree_margins(trees, cfg, schema, preprocessor, data, "validation")
    model, info = calibrate(model, cfg.train, y_val, p_val, trees, m_val, preprocessor)
    return model, info, trees if info["method"] == "stack" else None


def calibrate(model, train_cfg, y_val, p_val, trees=None, m_val=None, preprocessor=None):
    """The model whose output is recalibrated on validation (``train.calibration``), and the fit.

    Args:
        model: the trained network.
        train_cfg: ``cfg.train``.
        y_val, p_val: validation labels and the network's probabilities.
        trees: the boosted-tree branch (:func:`fit_trees`) or None; then also
            ``m_val``, its margins on validation, and the ``preprocessor``.

    Returns:
        ``(model, info)``. Without trees and with ``train.calibration=platt``:
        ``model`` followed by a Platt layer fitted on ``(y_val, p_val)``, ``info`` =
        ``{"method": "platt", "a": ..., "b": ...}``. With trees: the stacking
        ``sigmoid(a * logit(p) + c * margin + b)`` fitted on validation
        (``"method": "stack"``, also ``"c"`` and the trees' size), unless its
        out-of-fold log loss on validation is no better than Platt scaling's
        (:func:`purchase_intent.calibration.choose_output`; then Platt, the
        trees left out; ``"cv"`` holds both figures). Otherwise
        ``model`` unchanged. ``apply_calibration(other, info, trees, preprocessor)``
        puts the same layers on another model.
    """
    from purchase_intent.calibration import choose_output, fit_platt

    if trees is not None:
        info = choose_output(y_val, p_val, m_val, seed=train_cfg.seed)
        info.update({"trees": int(trees.tables["roots"].size), "tree_nodes": int(trees.tables["value"].size)})
        cv = info["cv"]
        if info["method"] == "stack":
            logger.info("Stacking (fitted on validation): p' = sigmoid(%.3f * logit(p) + %.3f * trees + %.3f); "
                        "%d trees%s", info["a"], info["c"], info["b"], info["trees"],
                        "" if cv is None else f"; out-of-fold log loss {cv['stack']['log_loss']:.4f} vs "
                                              f"{cv['platt']['log_loss']:.4f} for the network alone")
            return apply_calibration(model, info, trees, preprocessor), info
        logger.info("The boosted trees are left out: stacked with the network they do not beat it on validation "
                    "out of fold (log loss %.4f vs %.4f, ROC-AUC %.4f vs %.4f over %d folds); Platt scaling of "
                    "the network: p' = sigmoid(%.3f * logit(p) + %.3f)", cv["stack"]["log_loss"],
                    cv["platt"]["log_loss"], cv["stack"]["roc_auc"], cv["platt"]["roc_auc"], info["folds"],
                    info["a"], info["b"])
        return apply_calibration(model, info), info
    if train_cfg.calibration != "platt":
        return model, {"method": "none"}
    a, b = fit_platt(y_val, p_val)
    logger.info("Calibration (Platt, fitted on validation): p' = sigmoid(%.3f * logit(p) + %.3f)", a, b)
    info = {"method": "platt", "a": a, "b": b}
    return apply_calibration(model, info), info


def apply_calibration(model, info: dict, trees=None, preprocessor=None):
    """``model`` followed by the calibration ``info`` of :func:`calibrate` (unchanged for "none")."""
    from purchase_intent.calibration import calibrated_model, stacked_model

    if info["method"] == "stack":
        return stacked_model(with_trees(model, preprocessor, trees), info["a"], info["c"], info["b"])
    return calibrated_model(model, info["a"], info["b"]) if info["method"] == "platt" else model


def describe(info: dict) -> str:
    """The output stage of ``info`` (``metrics.json``'s ``training.calibration``) in a few words."""
    cv = info.get("cv")
    if info["method"] == "stack":
        return (f"the network stacked with {info['trees']} boosted trees"
                + (f" (out-of-fold log loss {cv['stack']['log_loss']:.4f} vs {cv['platt']['log_loss']:.4f} "
                   f"for the network alone)" if cv else ""))
    if info["method"] == "platt":
        return "Platt scaling of the network" + (
            f"; the {info['trees']} boosted trees left out, no better out of fold (log loss "
            f"{cv['stack']['log_loss']:.4f} stacked vs {cv['platt']['log_loss']:.4f})" if cv and "trees" in info else "")
    return "none (train.calibration=none)"
