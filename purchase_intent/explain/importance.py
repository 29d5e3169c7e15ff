"""Occlusion and permutation importance (:func:`occlusion`, :func:`permutation_importance`), what they shuffle
(:func:`default_features`, :func:`describe_shuffles`) and their bar chart (:func:`plot_importance`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from purchase_intent.explain.perturb import MODALITIES, _occlusion_perturbation, _permutation_plan, modality_columns
from purchase_intent.explain.scorer import _one_by_one, _scorer
from purchase_intent.schema import FeatureSchema

logger = logging.getLogger(__name__)


def occlusion(predict_fn, df: pd.DataFrame, schema: FeatureSchema,
              modalities: list[str] | None = None, *, batched: bool = True,
              progress: bool | None = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-example contribution of each modality by occlusion.

    The contribution of a modality to an example is ``p(all inputs) -
    p(that modality emptied)``: positive when the modality pushes the
    example towards buying.

    Args:
        predict_fn: validated frame -> probabilities; or a
            ``purchase_intent.predict.Predictor`` (scored on its serving arrays,
            see :class:`PerturbationScorer`); or a :class:`PerturbationScorer` of ``df``.
        df: frame validated by ``schema.validate`` (the label column, if any, is ignored).
        schema: the feature schema.
        modalities: the modalities to occlude; default every one present, plus "all".
        batched: bool. Score every occluded frame together, each distinct row
            once (:class:`PerturbationScorer`); False: one call per frame.
        progress: bool or None. Progress on stderr (None: a bar at a terminal,
            else one line per stage).

    Returns:
        ``(per_example, summary)``. ``per_example`` has ``probability`` and,
        per modality, ``p_without_<m>`` and ``contribution_<m>``, one row per
        example (index of ``df``). ``summary`` has one row per modality:
        ``mean_contribution``, ``mean_abs_contribution``, ``share_pushed_up``.
    """
    present = list(modality_columns(schema))
    modalities = modalities or present + ["all"]
    kept = []
    for m in modalities:
        if m != "all" and m not in present:
            if m not in MODALITIES:
                raise ValueError(f"Unknown modality {m!r}; use one of {MODALITIES + ('all',)}")
            logger.info("Occlusion: the schema has no %s inputs; skipped", m)
            continue
        kept.append(m)
    perturbations = [{}] + [_occlusion_perturbation(df, schema, m) for m in kept]
    desc = "occlusion"
    if batched:
        probs = _scorer(predict_fn, df, schema, progress).score(perturbations, desc)
    else:
        probs = _one_by_one(predict_fn, df, schema, perturbations, desc, progress)
    base = probs[0]
    per_example = pd.DataFrame({"probability": base}, index=df.index)
    rows = []
    for m, p in zip(kept, probs[1:]):
        per_example[f"p_without_{m}"] = p
        per_example[f"contribution_{m}"] = base - p
        rows.append({"modality": m, "mean_contribution": float(np.mean(base - p)),
                     "mean_abs_contribution": float(np.mean(np.abs(base - p))),
                     "share_pushed_up": float(np.mean(base > p))})
    summary = pd.DataFrame(rows).set_index("modality")
    return per_example, summary


def default_features(schema: FeatureSchema) -> list[str]:
    """What :func:`permutation_importance` shuffles by default: every text, per-event text,
    numeric and categorical column, and "sequence" (whole histories) when the schema has sequences."""
    return (list(schema.text) + list(schema.event_text) + list(schema.numeric) + list(schema.categorical)
            + (["sequence"] if schema.sequence_like else []))


def describe_shuffles(schema: FeatureSchema, features: list[str]) -> str:
    """One line saying how each kind of feature in ``features`` was shuffled, and what was left out."""
    parts = []
    scalar = [f for f in features if f in list(schema.text) + list(schema.numeric) + list(schema.categorical)]
    if scalar:
        texts = [f for f in scalar if f in schema.text]
        parts.append("each column's values moved between rows"
                     + (f" (text columns too: {', '.join(texts)})" if texts else ""))
    event_text = [f for f in features if f in schema.event_text]
    if event_text:
        parts.append(f"per-event text ({', '.join(event_text)}): each event's text swapped with another "
                     "event's, every row keeping its events")
    seqs = [f for f in features if f in schema.sequences]
    if seqs:
        parts.append(f"{', '.join(seqs)}: that column's histories moved between rows, the other "
                     "per-event columns kept")
    if "sequence" in features:
        parts.append(f"sequence: whole histories ({', '.join(schema.sequence_like)}) moved between rows")
    left = [f for f in default_features(schema) if f not in features]
    line = "Shuffled: " + "; ".join(parts) + "."
    if left:
        line += f" Not shuffled: {', '.join(left)}."
    return line


def permutation_importance(predict_fn, df: pd.DataFrame, schema: FeatureSchema,
                           features: list[str] | None = None, n_repeats: int = 3,
                           seed: int = 0, *, batched: bool = True,
                           progress: bool | None = False) -> pd.DataFrame:
    """Drop in ROC-AUC when one feature is shuffled across the rows of a split.

    Args:
        predict_fn: validated frame -> probabilities; or a
            ``purchase_intent.predict.Predictor``; or a :class:`PerturbationScorer` of ``df``.
        df: frame validated by ``schema.validate``, with the label column.
        schema: the feature schema.
        features: feature names; default :func:`default_features` (text,
            per-event text, numeric, categorical, "sequence"). A scalar column
            (text too) has its values moved between rows; a per-event text
            column has each event's text swapped with another event's (the
            events and their number stay: :func:`shuffle_event_text`); the name
            "sequence" shuffles all sequence columns together (whole histories
            move between rows, keeping events aligned).
        n_repeats: int. Shuffles per feature (the mean and std are reported).
        seed: int. Random seed.
        batched: bool. Score every shuffled frame together, each distinct row
            once (:class:`PerturbationScorer`); False: one call per frame. Both
            draw the same shuffles.
        progress: bool or None. Progress on stderr (None: a bar at a terminal,
            else one line per stage).

    Returns:
        One row per feature, largest drop first: ``importance`` (mean ROC-AUC
        drop), ``std`` and ``baseline_roc_auc``.

    Raises:
        ValueError: unknown feature, or a split with one class only.
    """
    from sklearn.metrics import roc_auc_score

    y = df[schema.label].to_numpy()
    if y.min() == y.max():
        raise ValueError("permutation_importance needs both classes in the split")
    features = list(features or default_features(schema))
    known = set(schema.feature_names) | ({"sequence"} if schema.sequence_like else set())
    unknown = [f for f in features if f not in known]
    if unknown:
        raise ValueError(f"Unknown features {unknown}; known: {sorted(known)}")
    plan = _permutation_plan(df, schema, features, n_repeats, seed)
    perturbations = [{}] + [p for _, p in plan]
    desc = "permutation importance"
    if batched:
        probs = _scorer(predict_fn, df, schema, progress).score(perturbations, desc)
    else:
        probs = _one_by_one(predict_fn, df, schema, perturbations, desc, progress)
    base = roc_auc_score(y, probs[0])
    drops: dict[str, list[float]] = {f: [] for f in features}
    for (feature, _), p in zip(plan, probs[1:]):
        drops[feature].append(base - roc_auc_score(y, p))
    rows = [{"feature": f, "importance": float(np.mean(d)), "std": float(np.std(d)),
             "baseline_roc_auc": float(base)} for f, d in drops.items()]
    return pd.DataFrame(rows).set_index("feature").sort_values("importance", ascending=False)


def plot_importance(table: pd.DataFrame, path: str | Path | None = None, *, column: str | None = None,
                    title: str | None = None):
    """Bar chart of :func:`permutation_importance` or of an :func:`occlusion` summary.

    Args:
        table: the output of :func:`permutation_importance` (plots ``importance``
            with ``std`` error bars) or the ``summary`` of :func:`occlusion`
            (plots ``mean_abs_contribution``).
        path: PNG to write; None returns the figure.
        column: the column to plot (default as above).
        title: figure title.

    Returns:
        The path written, or the figure when ``path`` is None.
    """
    from purchase_intent.plots import plot_bars

    if column is None:
        column = "importance" if "importance" in table else "mean_abs_contribution"
    errors = table["std"] if column == "importance" and "std" in table else None
    default_title = ("Permutation importance (drop in ROC-AUC)" if column == "importance"
                     else f"Occlusion: {column.replace('_', ' ')} to the probability")
    return plot_bars(table[column], path, title=title or default_title,
                     xlabel=column.replace("_", " "), errors=errors)
