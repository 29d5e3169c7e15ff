"""The report's words: plain names, a glossary and the sentences built from a run's files.

Metric and model names (:data:`METRIC_NAMES`, :data:`MODEL_NAMES`), the
:data:`GLOSSARY`, what label 1 means (:func:`label_sentence`), how the model
compares with the baselines (:func:`comparison_sentence`,
:func:`sample_sentence`), the final calibration step
(:func:`calibration_sentence`), the epochs run and kept
(:func:`epochs_sentence`), the rows of the targeting and metrics tables and
the commands that serve an export (:func:`serving_commands`). Strings only:
:mod:`purchase_intent.report.page` lays them out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from purchase_intent.data.split_checks import SMALL_SPLIT_ROWS


_METRIC_COLUMNS = ["roc_auc", "pr_auc", "log_loss", "accuracy", "precision", "recall", "f1", "ece",
                   "threshold"]


METRIC_NAMES = {
    "roc_auc": "ranking quality (ROC-AUC)",
    "pr_auc": "precision-recall area (PR-AUC)",
    "log_loss": "log loss",
    "accuracy": "accuracy",
    "precision": "precision",
    "recall": "recall",
    "f1": "F1",
    "ece": "calibration error (ECE)",
    "threshold": "threshold",
}
GLOSSARY = [
    ("ranking quality (ROC-AUC)", "the chance that a random buyer gets a higher probability than a "
     "random non-buyer: 0.5 is random ordering, 1.0 is perfect. It decides how good a top-X % "
     "contact list is."),
    ("precision-recall area (PR-AUC)", "average precision over all list lengths; compare it with "
     "the share of buyers (what random targeting gets)."),
    ("log loss", "how far the probabilities are from the outcomes (lower is better)."),
    ("calibration error (ECE)", "the average gap between predicted probability and the observed buy "
     "rate, in probability points (0.05 = predictions off by 5 points on average; lower is better)."),
    ("precision", "of the customers labelled buyers (probability >= threshold), the share who bought."),
    ("recall", "of all buyers, the share labelled buyers (the share of buyers reached)."),
    ("F1", "the harmonic mean of precision and recall; the threshold maximises it on validation."),
    ("accuracy", "the share of customers whose 0/1 label is right at the threshold."),
    ("lift", "precision of a contact list divided by the overall buy rate: 2.0 = twice as many "
     "buyers as contacting at random."),
]
MODEL_NAMES = {"purchase_intent": "purchase_intent (this model)",
               "logistic_regression": "logistic_regression (baseline)",
               "hist_gradient_boosting": "hist_gradient_boosting (gradient-boosting baseline)"}


def _model_name(name: str) -> str:
    return MODEL_NAMES.get(name, name)


def label_sentence(schema: dict | None) -> str:
    """What label 1 means, from the schema's ``description`` (else the label column's name)."""
    schema = schema or {}
    label = schema.get("label", "label")
    description = (schema.get("description") or "").strip().rstrip(".")
    if description:
        return (f"Label 1 means: {description} (column `{label}`). The model gives each customer "
                "the probability of that.")
    return (f"Label 1 means: the column `{label}` is 1 (the schema has no `description`; add one "
            "sentence there, e.g. \"buys within 30 days\", and this report quotes it). The model "
            "gives each customer the probability of label 1.")


def comparison_sentence(test: dict[str, dict], model: str, n_test: int | None = None) -> str:
    """How ``model`` compares with the other models of ``test`` on ranking quality, in words."""
    if model not in test:
        return ""
    others = {k: v for k, v in test.items() if k != model and np.isfinite(v.get("roc_auc", np.nan))}
    if not others:
        return "No baseline was evaluated beside the model."
    best = max(others, key=lambda k: others[k]["roc_auc"])
    a, b = test[model]["roc_auc"], others[best]["roc_auc"]
    diff = a - b
    if abs(diff) < 0.01:
        verdict = "about as well as"
    elif diff > 0:
        verdict = "better than"
    else:
        verdict = "worse than"
    text = (f"On the test split, the model ranks buyers {verdict} the best baseline, "
            f"{_model_name(best)}: ranking quality {a:.3f} against {b:.3f} "
            f"(0.5 = random, 1.0 = perfect).")
    if abs(diff) < 0.01:
        text += " A difference under 0.01 is within the noise of one test split."
    elif diff < 0:
        text += " The simpler baseline is the safer choice unless the model wins on another run."
    if n_test is not None and n_test < SMALL_SPLIT_ROWS and abs(diff) >= 0.01:
        text += f" With {n_test:,} test rows, a difference of this size may not hold on new data."
    return text


def sample_sentence(comparison: dict, splits: dict) -> str:
    """Which rows ``metrics.json``'s ``baseline_comparison`` is on (baselines scored a sample)."""
    n = comparison.get("examples") or {}
    total = {k: (splits.get(k) or {}).get("examples") for k in ("validation", "test")}
    return (f"The baselines scored a sample: the first {n.get('validation', 0):,} validation and "
            f"{n.get('test', 0):,} test examples (of {total['validation'] or 0:,} and {total['test'] or 0:,}). "
            "The comparison puts every model, this one included, on those same rows (thresholds chosen on "
            "the validation rows), in the table below; the table above is this model on the whole test split.")


def calibration_sentence(metrics: dict) -> str:
    """How the network's output became the final probability (``metrics.json``'s ``training.calibration``)."""
    info = (metrics.get("training") or {}).get("calibration") or {}
    method = info.get("method")
    if method == "stack":
        return (f"Final step: {info.get('trees', 0):,} boosted trees on the numbers, categories and event "
                f"counts, blended with the network by weights fitted on the validation split (network "
                f"{info['a']:.2f}, trees {info['c']:.2f}), which also calibrates the probabilities.")
    if method == "platt" and info.get("cv"):  # boosted trees fitted, then left out
        cv = info["cv"]
        return (f"Final step: the probabilities are recalibrated on the validation split (Platt scaling). "
                f"The {info.get('trees', 0):,} boosted trees were left out: blended with the network they did "
                f"not beat it on validation out of fold (log loss {cv['stack']['log_loss']:.4f} against "
                f"{cv['platt']['log_loss']:.4f}), which happens when the validation split has few buyers.")
    if method == "platt":
        return "Final step: the probabilities are recalibrated on the validation split (Platt scaling)."
    return "Final step: none (the network's probabilities as trained, not recalibrated)." if method else ""


def epochs_sentence(history: dict | None, metrics: dict, cfg: dict | None) -> str:
    """Epochs run against epochs kept (early stopping restores the best validation epoch)."""
    training = metrics.get("training") or {}
    max_epochs = (cfg or {}).get("train", {}).get("epochs")
    ran = len((history or {}).get("loss", [])) or training.get("epochs_run")
    val_auc = (history or {}).get("val_auc")
    kept = int(np.nanargmax(val_auc)) + 1 if val_auc else (training.get("best_epochs") or [None])[0]
    if not ran:
        return ""
    text = f"Epochs: {ran} run" + (f" (at most {max_epochs})" if max_epochs else "")
    if kept:
        text += (f"; the weights of epoch {kept} are kept (best validation ranking quality"
                 + (f" {val_auc[kept - 1]:.3f}" if val_auc else "") + ")")
        if max_epochs and ran < max_epochs:
            text += "; early stopping ended training when validation stopped improving"
        elif max_epochs and kept == ran:
            text += "; the last epoch was the best, so more epochs (--epochs) may help"
    text += "."
    if kept == 1 and ran and ran > 1:
        text += (" Epoch 1 kept: every later epoch scored lower on validation (the model overfits "
                 "fast, the learning rate is high, or the validation split is small or noisy).")
    resumed = training.get("resumed_from_epoch")
    if resumed:
        text += f" (Resumed from a backup after epoch {resumed}; epochs count from the resume.)"
    return text


def targeting_rows(targeting: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows of the report's targeting table (from :func:`~purchase_intent.targeting.targeting_summary`).

    One row per share of customers contacted, then the row of everyone above
    the decision threshold when the summary has it.
    """
    header = ["contact the top", "customers", "buyers reached", "share of all buyers reached",
              "precision (buy rate)", "lift over random", "lowest probability contacted"]
    body = [[_pct(r["share_contacted"]), f"{r['customers_contacted']:,}", f"{r['buyers_reached']:,}",
             _pct(r["share_of_buyers_reached"]), _pct(r["precision"]), f"{r['lift']:.2f}",
             f"{r['min_probability']:.3f}"] for r in targeting["table"]]
    at = targeting.get("at_threshold")
    if at:
        body.append([f"above threshold ({_pct(at['share_contacted'])})",
                     f"{at['customers_contacted']:,}", f"{at['buyers_reached']:,}",
                     _pct(at["share_of_buyers_reached"]), _pct(at["precision"]),
                     "n/a" if not np.isfinite(at["lift"]) else f"{at['lift']:.2f}",
                     f"{at['threshold']:.3f}"])
    return header, body


def _pct(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.0%}"


def _metrics_rows(metrics: dict) -> list[list[str]]:
    rows = []
    for name, m in (metrics or {}).get("test", {}).items():
        rows.append([name] + [f"{m[c]:.4f}" if c in m else "" for c in _METRIC_COLUMNS])
    return rows


def _config_summary(cfg: dict | None) -> list[tuple[str, str]]:
    if not cfg:
        return []
    d, m, t = cfg.get("data", {}), cfg.get("model", {}), cfg.get("train", {})
    return [
        ("data", str(d.get("name"))),
        ("text encoder", f"{m.get('text_encoder')} (trainable layers {m.get('text_trainable_layers')}"
                         + (f", LoRA rank {m['text_lora_rank']})" if m.get("text_lora_rank") else ")")),
        ("sequence encoder", f"{m.get('sequence_encoder')} (LSTM {m.get('lstm_units')}, "
                             f"CNN {m.get('cnn_filters')}x{m.get('cnn_kernel_size')})"),
        ("fusion MLP", f"{m.get('hidden_units')}, dropout {m.get('dropout')}"),
        ("max events / batch size", f"{d.get('max_sequence_length')} / {d.get('batch_size')}"),
        ("max epochs / learning rate", f"{t.get('epochs')} / {t.get('learning_rate')}"),
        ("seed", str(t.get("seed"))),
    ]


def serving_commands(version_dir: str | Path, model_name: str = "purchase_intent") -> dict[str, str]:
    """Shell commands to serve an exported version locally and to score with it."""
    version_dir = Path(version_dir)
    base = version_dir.parent
    return {
        "offline scoring": (f"python -m purchase_intent.predict --model {version_dir} "
                            "--input customers.csv --output scored.csv"),
        "local server (gRPC, REST)": (f"python -m purchase_intent.serving.local --model-base-path {base} "
                                      f"--model-name {model_name} --port 8500 --rest-port 8501"),
        # --schema gives the id columns and the delimiter; the threshold.json beside it is the default.
        "score over gRPC": (f"python -m purchase_intent.serving.score --target localhost:8500 "
                            f"--input customers.csv --output scored.csv "
                            f"--schema {version_dir / 'assets.extra' / 'schema.json'}"),
    }
