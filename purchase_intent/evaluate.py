"""Evaluation: metrics at a validation-chosen threshold, calibration, plots.

Every model (the fusion model and the baselines of :mod:`purchase_intent.baselines`)
is scored the same way:

* ROC-AUC, PR-AUC (average precision) and log loss on the test split;
* accuracy, precision, recall and F1 at the threshold that maximises F1 on
  the *validation* split (never on test);
* expected calibration error (ECE, 10 equal-width bins) on the test split.

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

logger = logging.getLogger(__name__)

MODEL_NAME = "purchase_intent"
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


def beside_baselines(data, p_val: np.ndarray, p_test: np.ndarray, seed: int = 0,
                     name: str = "purchase_intent") -> dict:
    """The model's test metrics beside the baselines', each at the threshold chosen on validation.

    Args:
        data: the run's :class:`~purchase_intent.data.source.Splits`. The baselines
            are fitted on its training frame and score its validation and test
            frames: whole splits in memory, the first examples of a streamed one.
        p_val, p_test: the model's probabilities of every example of the
            validation and test splits (in the order of ``data.columns``).
        seed: the baselines' seed.
        name: the model's name in the tables.

    Returns:
        ``{"results"`` (model -> test metrics: the model on its whole splits,
        with the baselines when they scored the same rows), ``"comparison"``
        (None, or when the baselines scored a sample: every model on the sample's
        rows, ``metrics.json``'s ``baseline_comparison``), ``"table"`` (text),
        ``"skipped"`` (baseline -> error), ``"sample"`` (rows the baselines
        scored per split), ``"y_test"``, ``"p_test"`` (model -> test probabilities)}.

    Raises:
        RuntimeError: the sample's labels are not those of the first examples of the splits.
    """
    from purchase_intent.baselines import baseline_predictions

    label = data.schema.label
    y_val, y_test = (data.columns(s, ids=False)[label].to_numpy() for s in ("validation", "test"))
    frames = data.frames()
    baseline_probs, skipped = baseline_predictions(frames, data.schema, seed=seed)
    sample = {s: len(frames[s]) for s in ("validation", "test")}
    pv, pt = {name: p_val}, {name: p_test}
    comparison = None
    if sample["validation"] == len(y_val) and sample["test"] == len(y_test):  # every model on whole splits
        pv.update(baseline_probs["validation"])
        pt.update(baseline_probs["test"])
        results = evaluate_all(y_val, pv, y_test, pt)
        table = format_table(results)
    else:  # the model on whole splits; the comparison: every model on the baselines' rows
        nv, nt = sample["validation"], sample["test"]
        if not (np.array_equal(y_val[:nv], frames["validation"][label].to_numpy())
                and np.array_equal(y_test[:nt], frames["test"][label].to_numpy())):
            raise RuntimeError("the baselines' sample rows are not the first rows of the streamed splits")
        results = evaluate_all(y_val, pv, y_test, pt)
        comparison = {"examples": dict(sample), "rows": "the first examples of each split, in shard order",
                      "test": evaluate_all(y_val[:nv], {name: p_val[:nv]} | baseline_probs["validation"],
                                           y_test[:nt], {name: p_test[:nt]} | baseline_probs["test"])}
        table = (format_table(results) + f"\n\nBeside the baselines, every model on the same first {nv:,} "
                 f"validation and {nt:,} test examples (of {len(y_val):,} and {len(y_test):,}; the "
                 f"baselines score a sample):\n" + format_table(comparison["test"]))
        logger.info("The baselines scored the first %d validation and %d test examples (of %d and %d); "
                    "metrics.json's baseline_comparison holds every model on those rows",
                    nv, nt, len(y_val), len(y_test))
    return {"results": results, "comparison": comparison, "table": table, "skipped": skipped,
            "sample": sample, "y_test": y_test, "p_test": pt}


# -- plots (the backend: purchase_intent.plots._pyplot) ------------------
def plot_calibration(y: np.ndarray, probs: dict[str, np.ndarray], path: str | Path,
                     bins: int = 10) -> Path:
    """Reliability diagram (observed rate per predicted-probability bin) with each model's ECE."""
    from purchase_intent.plots import _pyplot

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

    from purchase_intent.plots import _pyplot

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


def fit_summary(histories: list[dict], epoch_seconds: list[float], fit_seconds: float, examples: int,
                resumed_from: list[int]) -> dict:
    """``metrics.json``'s figures of a fit: epochs run, timings, best validation ROC-AUC and epoch per member.

    ``epoch_seconds``: the training part of each epoch (no validation); ``resumed_from``:
    the epoch a resumed run started from, if any.
    """
    epoch_s = float(np.median(epoch_seconds)) if epoch_seconds else float("nan")
    best = [(max(h["val_auc"]), int(np.argmax(h["val_auc"])) + 1) for h in histories if h.get("val_auc")]
    return {"examples": examples, "epochs_run": len(histories[0].get("loss", [])),
            "resumed_from_epoch": resumed_from[0] if resumed_from else None,
            "fit_seconds": fit_seconds, "median_epoch_seconds": epoch_s, "examples_per_second": examples / epoch_s,
            "ensemble_members": len(histories), "best_epochs": [e for _, e in best],
            "best_val_auc": [float(a) for a, _ in best]}


def describe_fit(training: dict) -> str:
    """The stage line of a fit (:func:`fit_summary`)."""
    best = ", ".join(f"{a:.4f} (epoch {e})" for a, e in zip(training["best_val_auc"], training["best_epochs"]))
    return (f"Trained: {training['epochs_run']} epoch(s) in {training['fit_seconds']:.1f} s (median "
            f"{training['median_epoch_seconds']:.2f} s of training per epoch, {training['examples_per_second']:.0f} "
            f"examples/s); best validation ROC-AUC {best or 'none'}")


def describe_results(results: dict[str, dict[str, float]], examples: int, name: str = "purchase_intent") -> str:
    """The stage line of the test evaluation: the model's ROC-AUC beside each baseline's, and the threshold."""
    others = "".join(f", {other} {r['roc_auc']:.4f}" for other, r in results.items() if other != name)
    return (f"Evaluation on test ({examples:,} examples): ROC-AUC {results[name]['roc_auc']:.4f}{others}; "
            f"threshold {results[name]['threshold']:.4f} chosen on validation")


def reference_scores(p_val: np.ndarray, size: int = 5_000, seed: int = 0) -> dict:
    """The validation scores an export keeps as the reference of score drift: a sample and their mean.

    ``{"split": "validation", "examples", "mean"`` (the predicted base rate), ``"sample"``
    (at most ``size`` probabilities, seeded uniform sample, sorted)}.
    """
    p = np.asarray(p_val, np.float64).reshape(-1)
    sample = p if len(p) <= size else np.random.default_rng(seed).choice(p, size, replace=False)
    return {"split": "validation", "examples": int(len(p)), "mean": float(p.mean()) if len(p) else float("nan"),
            "sample": [round(float(v), 7) for v in np.sort(sample)]}


def save_figures(y: np.ndarray, probs: dict[str, np.ndarray], run_dir: str | Path) -> None:
    """``calibration.png`` and ``curves.png`` of the test split in ``run_dir``; a failing figure is logged, skipped."""
    for plot, file_name in ((plot_calibration, "calibration.png"), (plot_curves, "curves.png")):
        try:
            plot(y, probs, Path(run_dir) / file_name)
        except Exception as err:  # a figure is not worth the trained model
            logger.warning("Figure %s skipped: %s: %s", file_name, type(err).__name__, err)
