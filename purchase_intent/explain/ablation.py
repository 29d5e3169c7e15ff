"""Modality ablation: one model per modality subset, trained briefly and scored on the test split
(:func:`modality_ablation` over :func:`modality_subsets`).
"""

from __future__ import annotations

import logging

import pandas as pd

from purchase_intent.schema import FeatureSchema

logger = logging.getLogger(__name__)


def modality_subsets(schema: FeatureSchema) -> dict[str, FeatureSchema]:
    """Every distinct non-empty modality subset of ``schema`` (``FeatureSchema.subset``), named "a+b"."""
    import itertools

    from purchase_intent.schema import SchemaError

    mods = schema.modalities
    out: dict[str, FeatureSchema] = {}
    seen = []
    for k in range(1, len(mods) + 1):
        for combo in itertools.combinations(mods, k):
            try:
                sub = schema.subset(list(combo))
            except SchemaError:  # e.g. per-event text alone needs the sequence modality too
                continue
            if sub.to_dict() not in seen:
                seen.append(sub.to_dict())
                out["+".join(combo)] = sub
    return out  # a subset equal to a smaller one (text+numeric without scalar text) is kept once


def modality_ablation(cfg, schema: FeatureSchema, splits: dict[str, pd.DataFrame],
                      subsets: dict[str, FeatureSchema] | None = None,
                      epochs: int | None = None) -> pd.DataFrame:
    """Trains one model per modality subset, briefly, and scores each on the test split.

    Args:
        cfg: a ``Config`` (``cfg.train.epochs`` unless ``epochs`` is given); each
            model is the product's (:class:`purchase_intent.task.PurchaseIntentTask`: early
            stopping on validation ROC-AUC, class weights, wide warm-up, output stage).
        schema: the full feature schema.
        splits: "train", "validation", "test" frames validated by ``schema``.
        subsets: name -> schema; default :func:`modality_subsets`.
        epochs: int or None. Maximum epochs per subset.

    Returns:
        One row per subset, best first: ``test_roc_auc``, ``test_pr_auc``,
        ``val_roc_auc``, ``epochs_run``, ``seconds``, ``features``. Each model is
        built and trained under the dtype policy of ``train.mixed_precision``.
    """
    from purchase_intent.task import dtype_policy

    with dtype_policy(cfg.train.mixed_precision):
        return _modality_ablation(cfg, schema, splits, subsets, epochs)


def _modality_ablation(cfg, schema, splits, subsets, epochs):
    import time

    import keras
    from sklearn.metrics import average_precision_score, roc_auc_score

    from purchase_intent.task import PurchaseIntentTask

    subsets = subsets or modality_subsets(schema)
    y_val, y_test = splits["validation"][schema.label].to_numpy(), splits["test"][schema.label].to_numpy()
    rows = []
    for name, sub in subsets.items():
        t0 = time.perf_counter()
        keras.utils.set_random_seed(cfg.train.seed)
        model = PurchaseIntentTask(cfg, splits, sub, members=1)  # the product on these features only
        history = model.fit(epochs=epochs)[0]
        model.fit_output()  # with its output stage (trees + stacking, or Platt), as train runs it
        p_val, p_test = model.predict("validation"), model.predict("test")
        rows.append({"subset": name, "test_roc_auc": roc_auc_score(y_test, p_test),
                     "test_pr_auc": average_precision_score(y_test, p_test),
                     "val_roc_auc": roc_auc_score(y_val, p_val),
                     "epochs_run": len(history["loss"]),
                     "seconds": time.perf_counter() - t0, "features": ", ".join(sub.feature_names)})
        logger.info("Ablation %s: test ROC-AUC %.4f (%.1f s)", name, rows[-1]["test_roc_auc"],
                    rows[-1]["seconds"])
        keras.backend.clear_session()
    return pd.DataFrame(rows).set_index("subset").sort_values("test_roc_auc", ascending=False)
