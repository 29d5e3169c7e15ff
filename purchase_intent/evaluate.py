"""Evaluation: metrics at a validation-chosen threshold, calibration, baselines, plots.

Every model (the fusion model and the baselines) is scored the same way:

* ROC-AUC, PR-AUC (average precision) and log loss on the test split;
* accuracy, precision, recall and F1 at the threshold that maximises F1 on
  the *validation* split (never on test);
* expected calibration error (ECE, 10 equal-width bins) on the test split.

Baselines, trained on the same training split: logistic regression and
scikit-learn's ``HistGradientBoostingClassifier`` on the numeric features,
the categorical features and simple aggregates of the other modalities
(sequence length, distinct values, text length), see :func:`tabular_features`.
:func:`baseline_predictions` fits and predicts each baseline on its own, so
that one failing baseline is skipped with a warning instead of stopping a run.

Examples:

>>> import numpy as np
>>> y = np.array([0, 0, 1, 1]); p = np.array([0.1, 0.4, 0.35, 0.8])
>>> round(binary_metrics(y, p, threshold=0.3)["roc_auc"], 2)
0.75
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from purchase_intent.schema import FeatureSchema

logger = logging.getLogger(__name__)

MODEL_NAME = "purchase_intent"
BASELINES = ("logistic_regression", "hist_gradient_boosting")
# HistGradientBoosting takes at most 255 levels per categorical feature (missing values included).
HGB_MAX_LEVELS = 254
_EPS = 1e-7


# -- metrics -------------------------------------------------------------
def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE: the bin-size weighted mean of |mean predicted - observed rate| over equal-width bins."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            ece += sel.mean() * abs(p[sel].mean() - y[sel].mean())
    return float(ece)


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability threshold with the highest F1 on ``(y, p)`` (ties: the higher threshold)."""
    from sklearn.metrics import precision_recall_curve

    y = np.asarray(y)
    if y.min() == y.max():  # one class only: F1 is not informative
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y, p)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], _EPS)
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)[-1]
    return float(thresholds[best])


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """All metrics of one model on one split, at a given threshold."""
    from sklearn import metrics as skm

    y = np.asarray(y).astype(int)
    p = np.clip(np.asarray(p, np.float64).reshape(-1), _EPS, 1 - _EPS)
    pred = (p >= threshold).astype(int)
    two_classes = y.min() != y.max()
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)) if two_classes else float("nan"),
        "pr_auc": float(skm.average_precision_score(y, p)) if two_classes else float("nan"),
        "log_loss": float(skm.log_loss(y, p, labels=[0, 1])),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "ece": expected_calibration_error(y, p),
        "threshold": float(threshold),
        "examples": int(len(y)),
        "positive_rate": float(y.mean()),
    }


def evaluate_all(y_val: np.ndarray, p_val: dict[str, np.ndarray], y_test: np.ndarray,
                 p_test: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Test metrics per model, each at the threshold chosen on its validation predictions.

    Args:
        y_val: validation labels.
        p_val: model name -> validation probabilities.
        y_test: test labels.
        p_test: model name -> test probabilities (same keys as ``p_val``).

    Returns:
        model name -> metrics dict (see :func:`binary_metrics`), plus the
        validation ROC-AUC under ``val_roc_auc``.
    """
    from sklearn.metrics import roc_auc_score

    results = {}
    for name, pv in p_val.items():
        threshold = best_f1_threshold(y_val, pv)
        results[name] = binary_metrics(y_test, p_test[name], threshold)
        two = np.min(y_val) != np.max(y_val)
        results[name]["val_roc_auc"] = float(roc_auc_score(y_val, pv)) if two else float("nan")
    return results


def format_table(results: dict[str, dict[str, float]]) -> str:
    """A fixed-width text table of the main metrics, one row per model."""
    cols = ["roc_auc", "pr_auc", "log_loss", "accuracy", "precision", "recall", "f1", "ece", "threshold"]
    name_w = max(len(n) for n in results) + 2
    head = "model".ljust(name_w) + "".join(c.rjust(10) for c in cols)
    lines = [head, "-" * len(head)]
    for name, m in results.items():
        lines.append(name.ljust(name_w) + "".join(f"{m[c]:10.4f}" for c in cols))
    return "\n".join(lines)


# -- baselines -----------------------------------------------------------
def tabular_features(df: pd.DataFrame, schema: FeatureSchema) -> tuple[pd.DataFrame, list[str]]:
    """Numeric/aggregate features for the baselines.

    Numeric columns as they are (NaN kept), categorical columns as strings,
    and for the other modalities simple aggregates: events per sequence,
    distinct values per sequence column, characters and words per text.

    Returns:
        ``(frame, categorical_column_names)``.
    """
    out = {}
    for name in schema.numeric:
        out[name] = df[name].to_numpy(np.float64)
    if schema.sequence_like:
        first = schema.sequence_like[0]
        out["n_events"] = df[first].map(len).to_numpy(np.float64)
    for name in schema.sequences:
        out[f"{name}_distinct"] = df[name].map(lambda s: len(set(s))).to_numpy(np.float64)
    for name in schema.text:
        out[f"{name}_chars"] = df[name].str.len().to_numpy(np.float64)
        out[f"{name}_words"] = df[name].str.split().map(len).to_numpy(np.float64)
    for name in schema.categorical:
        out[name] = df[name].astype(str).to_numpy(dtype=object)
    return pd.DataFrame(out, index=df.index), list(schema.categorical)


def category_levels(train: pd.DataFrame, columns: list[str],
                    max_levels: int | None = None) -> dict[str, list[str]]:
    """The levels of each categorical column: its training values, as strings.

    Args:
        train: the training frame.
        columns: categorical column names.
        max_levels: keep only this many of the most frequent training values
            (ties broken by value); ``None`` keeps them all.

    Returns:
        column -> sorted levels, for :func:`to_categories`.
    """
    levels = {}
    for c in columns:
        counts = train[c].astype(str).value_counts()
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        levels[c] = sorted(v for v, _ in ranked[:max_levels])
    return levels


def to_categories(frame: pd.DataFrame, levels: dict[str, list[str]]) -> pd.DataFrame:
    """A copy of ``frame`` whose ``levels`` columns are pandas categoricals of those levels.

    A value that is not a level (unseen in training, or beyond ``max_levels``
    of :func:`category_levels`) becomes missing (NaN), which the tree models
    treat as its own branch.
    """
    out = frame.copy()
    for c, cats in levels.items():
        out[c] = pd.Categorical(frame[c].astype(str), categories=cats)
    return out


def linear_tabular_parts(nums: list[str], cats: list[str]) -> list[tuple]:
    """``ColumnTransformer`` parts of the linear baselines and peers over :func:`tabular_features`.

    Numeric columns: mean-imputed with a missing indicator, signed log1p,
    standardised; categorical columns: one-hot (levels seen fewer than 5 times
    pooled, unseen ignored).
    """
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    signed_log = FunctionTransformer(lambda x: np.sign(x) * np.log1p(np.abs(x)),
                                     feature_names_out="one-to-one")
    parts = []
    if nums:
        parts.append(("num", make_pipeline(SimpleImputer(add_indicator=True), signed_log,
                                           StandardScaler()), nums))
    if cats:
        parts.append(("cat", OneHotEncoder(handle_unknown="ignore", min_frequency=5), cats))
    return parts


def fit_baselines(train_df: pd.DataFrame, val_df: pd.DataFrame | None, schema: FeatureSchema,
                  seed: int = 0, names: tuple[str, ...] | list[str] = BASELINES) -> dict:
    """Fits logistic regression and HistGradientBoosting on :func:`tabular_features`.

    HistGradientBoosting gets each categorical column as the
    :data:`HGB_MAX_LEVELS` most frequent training values (the rest missing),
    see :func:`category_levels`.

    Args:
        train_df: the training split.
        val_df: unused (HistGradientBoosting early-stops on a fraction of the
            training split); kept for callers that pass it.
        schema: the features.
        seed: random seed of HistGradientBoosting.
        names: the baselines to fit, a subset of :data:`BASELINES`.

    Returns:
        name -> fitted scikit-learn pipeline (takes :func:`tabular_features` frames).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    unknown = set(names) - set(BASELINES)
    if unknown:
        raise ValueError(f"Unknown baselines {sorted(unknown)}; choose from {list(BASELINES)}")
    x_train, cats = tabular_features(train_df, schema)
    nums = [c for c in x_train.columns if c not in cats]
    y_train = train_df[schema.label].to_numpy()
    fitted = {}
    if "logistic_regression" in names:
        lr = make_pipeline(ColumnTransformer(linear_tabular_parts(nums, cats)),
                           LogisticRegression(max_iter=2000, C=1.0, class_weight="balanced"))
        fitted["logistic_regression"] = lr.fit(x_train, y_train)
    if "hist_gradient_boosting" in names:
        levels = category_levels(x_train, cats, max_levels=HGB_MAX_LEVELS)
        gb = make_pipeline(
            FunctionTransformer(to_categories, kw_args={"levels": levels}),
            HistGradientBoostingClassifier(
                learning_rate=0.05, max_iter=500, early_stopping=True, validation_fraction=0.15,
                n_iter_no_change=20, random_state=seed, categorical_features="from_dtype"))
        fitted["hist_gradient_boosting"] = gb.fit(x_train, y_train)
    return fitted


def predict_baselines(baselines: dict, df: pd.DataFrame, schema: FeatureSchema) -> dict[str, np.ndarray]:
    """Purchase probabilities of each fitted baseline on ``df``."""
    x, _ = tabular_features(df, schema)
    return {name: model.predict_proba(x)[:, 1] for name, model in baselines.items()}


def baseline_predictions(splits: dict[str, pd.DataFrame], schema: FeatureSchema, seed: int = 0,
                         names: tuple[str, ...] | list[str] = BASELINES
                         ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, str]]:
    """Fits each baseline on ``splits["train"]`` and predicts every other split; fails soft.

    Each baseline is fitted and predicted on its own: if that raises (or
    gives non-finite probabilities), a warning names the baseline and the
    error, and the baseline is left out. A baseline is never worth losing
    the model trained before it.

    Args:
        splits: split name -> frame; ``"train"`` is fitted on, the others are predicted.
        schema: the features.
        seed: random seed of the baselines.
        names: the baselines, a subset of :data:`BASELINES`.

    Returns:
        ``(split -> baseline -> probabilities, skipped baseline -> "ErrorType: message")``;
        a skipped baseline is in no split.
    """
    targets = [k for k in splits if k != "train"]
    probs: dict[str, dict[str, np.ndarray]] = {k: {} for k in targets}
    skipped: dict[str, str] = {}
    for name in names:
        step = "fitting"
        try:
            model = fit_baselines(splits["train"], splits.get("validation"), schema, seed=seed,
                                  names=[name])
            out = {}
            for k in targets:
                step = f"predicting the {k} split"
                p = predict_baselines(model, splits[k], schema)[name]
                if not np.all(np.isfinite(p)):
                    raise ValueError(f"{int(np.sum(~np.isfinite(p)))} non-finite probabilities")
                out[k] = p
        except Exception as err:  # any baseline failure must not stop the run
            skipped[name] = f"{type(err).__name__}: {err}"
            logger.warning("Baseline %s skipped: %s failed with %s", name, step, skipped[name])
            continue
        for k in targets:
            probs[k][name] = out[k]
    return probs, skipped


# -- plots ---------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_calibration(y: np.ndarray, probs: dict[str, np.ndarray], path: str | Path,
                     bins: int = 10) -> Path:
    """Reliability diagram (observed rate per predicted-probability bin) with each model's ECE."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    y = np.asarray(y)
    for name, p in probs.items():
        p = np.asarray(p).reshape(-1)
        idx = np.minimum((p * bins).astype(int), bins - 1)
        xs, ys = [], []
        for b in range(bins):
            sel = idx == b
            if sel.any():
                xs.append(p[sel].mean())
                ys.append(y[sel].mean())
        ax.plot(xs, ys, marker="o", label=f"{name} (ECE {expected_calibration_error(y, p):.3f})")
    ax.set(xlabel="mean predicted probability", ylabel="observed purchase rate",
           title="Calibration on the test split", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_curves(y: np.ndarray, probs: dict[str, np.ndarray], path: str | Path) -> Path:
    """ROC and precision-recall curves of every model, side by side."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    plt = _pyplot()
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(11, 4.8))
    y = np.asarray(y)
    for name, p in probs.items():
        fpr, tpr, _ = roc_curve(y, p)
        roc_ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, p):.3f})")
        precision, recall, _ = precision_recall_curve(y, p)
        pr_ax.plot(recall, precision, label=f"{name} (AP {average_precision_score(y, p):.3f})")
    roc_ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
    pr_ax.axhline(y.mean(), color="grey", linestyle="--", linewidth=1, label=f"base rate {y.mean():.2f}")
    pr_ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test)", ylim=(0, 1.02))
    roc_ax.legend(loc="lower right", fontsize=8)
    pr_ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
