"""The report's words: plain names, a glossary and the sentences built from a run's files.

Metric and model names (:data:`METRIC_NAMES`, :data:`MODEL_NAMES`), the
:data:`GLOSSARY`, what label 1 means (:func:`label_sentence`), how the model
compares with the baselines (:func:`comparison_sentence`,
:func:`sample_sentence`), the final calibration step
(:func:`calibration_sentence`), the epochs run and kept
(:func:`epochs_sentence`), the rows of the targeting and metrics tables and
the commands that serve an export (:func:`serving_commands`); the decision
block: the buyers expected among the top 10-30 % (:func:`expected_buyers_rows`,
:func:`expected_buyers_sentence`), the model against the best baseline with a
paired bootstrap interval (:func:`bootstrap_sentence`), the next step
(:func:`campaign_command`) and when the data is from (:func:`period_sentence`).
Strings only: :mod:`purchase_intent.report.page` lays them out.

The rows of an event-log run are sessions (cut after one of their events), of
any other run customers: :func:`unit_of` tells which, and the sentences take
that ``unit``.
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


def glossary(unit: str = "customer", resamples: int = 1000) -> list[tuple[str, str]]:
    """The glossary of the metrics, speaking of ``unit`` (``customer`` or ``session``); ``resamples``: of the
    paired bootstrap."""
    units = plural(unit)
    return [
        ("ranking quality (ROC-AUC)", "the chance that a random buyer gets a higher probability than a "
         "random non-buyer: 0.5 is random ordering, 1.0 is perfect. It decides how good a top-X % "
         "contact list is."),
        ("precision-recall area (PR-AUC)", "average precision over all list lengths; compare it with "
         "the share of buyers (what random targeting gets)."),
        ("log loss", "how far the probabilities are from the outcomes (lower is better)."),
        ("calibration error (ECE)", "the average gap between predicted probability and the observed buy "
         "rate, in probability points (0.05 = predictions off by 5 points on average; lower is better)."),
        ("precision", f"of the {units} labelled buyers (probability >= threshold), the share who bought."),
        ("recall", "of all buyers, the share labelled buyers (the share of buyers reached)."),
        ("F1", "the harmonic mean of precision and recall; the threshold maximises it on validation."),
        ("accuracy", f"the share of {units} whose 0/1 label is right at the threshold."),
        ("lift", "precision of a contact list divided by the overall buy rate: 2.0 = twice as many "
         "buyers as contacting at random."),
        ("paired bootstrap", f"the test {units} drawn again at random with replacement {resamples:,} times; both "
         "models are scored on the same draws, and the middle 95 % of the differences is the interval."),
    ]


def plural(unit: str) -> str:
    return f"{unit}s"


def unit_of(cfg: dict | None, schema: dict | None) -> str:
    """``"session"`` for a run on an event log (``data.format=events``, the synthetic clickstream, or a
    schema with the derived prefix features), else ``"customer"``."""
    from purchase_intent.data.clickstream import DERIVED_NUMERIC

    data = (cfg or {}).get("data") or {}
    if data.get("format") == "events" or data.get("name") == "synthetic_clickstream":
        return "session"
    return "session" if set((schema or {}).get("numeric") or []) & set(DERIVED_NUMERIC) else "customer"


GLOSSARY = glossary()
MODEL_NAMES = {"purchase_intent": "purchase_intent (this model)",
               "logistic_regression": "logistic_regression (baseline)",
               "hist_gradient_boosting": "hist_gradient_boosting (gradient-boosting baseline)"}


def _model_name(name: str) -> str:
    return MODEL_NAMES.get(name, name)


def label_sentence(schema: dict | None, unit: str = "customer") -> str:
    """What label 1 means, from the schema's ``description`` (else the label column's name)."""
    schema = schema or {}
    label = schema.get("label", "label")
    description = (schema.get("description") or "").strip().rstrip(".")
    if description:
        return (f"Label 1 means: {description} (column `{label}`). The model gives each {unit} "
                "the probability of that.")
    return (f"Label 1 means: the column `{label}` is 1 (the schema has no `description`; add one "
            "sentence there, e.g. \"buys within 30 days\", and this report quotes it). The model "
            f"gives each {unit} the probability of label 1.")


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


def targeting_rows(targeting: dict[str, Any], unit: str = "customer") -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows of the report's targeting table (from :func:`~purchase_intent.targeting.targeting_summary`).

    One row per share of customers (or sessions: ``unit``) contacted, then the
    row of everyone above the decision threshold when the summary has it.
    """
    header = ["contact the top", plural(unit), "buyers reached", "share of all buyers reached",
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


def serving_commands(version_dir: str | Path, model_name: str = "purchase_intent",
                     unit: str = "customer") -> dict[str, str]:
    """Shell commands to serve an exported version locally and to score with it (a file of ``unit`` rows)."""
    version_dir = Path(version_dir)
    base = version_dir.parent
    table = f"{plural(unit)}.csv"
    return {
        "offline scoring": (f"python -m purchase_intent.predict --model {version_dir} "
                            f"--input {table} --output scored.csv"),
        "local server (gRPC, REST)": (f"python -m purchase_intent.serving.local --model-base-path {base} "
                                      f"--model-name {model_name} --port 8500 --rest-port 8501"),
        # --schema gives the id columns and the delimiter; the threshold.json beside it is the default.
        "score over gRPC": (f"python -m purchase_intent.serving.score --target localhost:8500 "
                            f"--input {table} --output scored.csv "
                            f"--schema {version_dir / 'assets.extra' / 'schema.json'}"),
    }


# -- the decision block ------------------------------------------------------------
def expected_buyers_rows(expected, observed, unit: str = "customer") -> tuple[list[str], list[list[str]]]:
    """Header and rows of the decision table: per top share, the buyers expected (with their interval)
    and, beside them, the buyers the test split really had among the same rows.

    Args:
        expected: :func:`purchase_intent.targeting.expected_buyers` (a frame).
        observed: :func:`purchase_intent.targeting.targeting_table` for the same shares, or None.
        unit: ``customer`` or ``session``.
    """
    header = ["contact the top", plural(unit), "expected buyers", "95 % interval", "expected buy rate"]
    if observed is not None:
        header.append("buyers it reached on the test split")
    body = []
    for i, r in enumerate(expected.itertuples()):
        row = [_pct(r.share_contacted), f"{r.customers_contacted:,}", f"{r.expected_buyers:,.0f}",
               f"{r.low:,.0f} to {r.high:,.0f}", _pct(r.expected_buyers / r.customers_contacted)]
        if observed is not None:
            row.append(f"{int(observed['buyers_reached'].iloc[i]):,}")
        body.append(row)
    return header, body


def expected_buyers_sentence(expected, observed=None, ece: float | None = None, unit: str = "customer") -> str:
    """How the expected buyers and their interval are computed, and whether the test split agreed."""
    exact = set(expected["method"]) == {"exact"}
    law = "exact Poisson-binomial law" if exact else "normal approximation of the Poisson-binomial law"
    text = (f"Expected buyers: the sum of the model's calibrated probabilities of the contacted test {plural(unit)}. "
            f"The interval is the middle 95 % of the number of buyers if each buys with its probability ({law}): "
            "the chance in who buys, the probabilities taken as right")
    text += (f"; a calibration error (test ECE {ece:.3f}) comes on top." if ece is not None and np.isfinite(ece)
             else ".")
    if observed is None:
        return text
    outside = [(r, int(b)) for r, b in zip(expected.itertuples(), observed["buyers_reached"])
               if not r.low <= b <= r.high]
    if not outside:
        return text + " The buyers the test split really had fall inside every interval."
    r, b = outside[0]
    more = b > r.high
    return text + (f" The test split had {'more' if more else 'fewer'} buyers than expected in {len(outside)} of "
                   f"{len(expected)} rows (top {_pct(r.share_contacted)}: {b:,}, interval {r.low:,.0f} to "
                   f"{r.high:,.0f}): the probabilities {'under' if more else 'over'}-stated that period's buying "
                   "(see the warnings and the calibration figure), and can again when the buy rate moves.")


def bootstrap_sentence(result: dict[str, float], baseline: str, unit: str = "customer") -> str:
    """The model against the best baseline in words, from :func:`purchase_intent.targeting.auc_difference`.

    The interval containing 0 reads "not distinguishable"; otherwise "better
    (or worse) than the best baseline by D ROC-AUC, ± half the interval's width".
    """
    d, low, high, n = result["difference"], result["low"], result["high"], result["rows"]
    where = f"{n:,} test {plural(unit)}"
    scores = (f"ranking quality {result['model_auc']:.3f} against {result['baseline_auc']:.3f}; "
              "0.5 = random, 1.0 = perfect")
    if low <= 0 <= high:
        return (f"Ranking: the model is not distinguishable from the best baseline, {baseline}, on {where} "
                f"(difference {d:+.3f} ROC-AUC, 95 % interval {low:+.3f} to {high:+.3f}, paired bootstrap; "
                f"{scores}). The simpler baseline would rank these {plural(unit)} about as well.")
    verdict = "better" if low > 0 else "worse"
    text = (f"Ranking: the model is {verdict} than the best baseline ({baseline}) by {abs(d):.3f} ROC-AUC, "
            f"±{(high - low) / 2:.3f} (95 % paired bootstrap over {where}; {scores}).")
    if verdict == "worse":
        text += " The simpler baseline is the safer choice unless the model wins on another run."
    return text


def campaign_command(export: str | Path, unit: str = "customer") -> str:
    """The campaign tool's command on the run's export (the model folder: it picks the highest version),
    over three lines joined by ``\\`` (the shell reads one command)."""
    export = Path(export)
    model = export.parent if export.name.isdigit() else export
    return (f"python -m purchase_intent.campaign --model {model} \\\n"
            f"    --input {plural(unit)}.csv --output campaign \\\n"
            "    --cost-per-contact 1 --value-per-purchase 20")


def period_sentence(dates: tuple[str, str, str] | None, cfg: dict | None, unit: str = "customer") -> str:
    """When the test data is from: a date id column of the predictions (``(column, first, last)``).

    The built-in Online Retail data's ``cutoff`` also gives the label window
    (``data.horizon_days`` after it). None: the run's files do not say.
    """
    data = (cfg or {}).get("data") or {}
    if not dates:
        return ("Data period: not in the run's files (no date among the id columns of "
                "predictions_test.csv).")
    column, first, last = dates
    span = first if first == last else f"{first} to {last}"
    if column == "cutoff" and data.get("name") == "online_retail" and data.get("horizon_days"):
        import datetime

        days = int(data["horizon_days"])
        end = datetime.date.fromisoformat(last[:10]) + datetime.timedelta(days=days)
        return (f"Data period: test {plural(unit)} as at the cut-off {span} (column `cutoff`), their purchases "
                f"counted over the next {days} days, to {end.isoformat()}.")
    return f"Data period: test rows dated {span} (column `{column}`)."


def drivers_blocks(drivers: dict[str, Any], unit: str = "customer", top: int = 8
                   ) -> list[tuple[str, list[str], list[list[str]]]]:
    """The drivers section: ``(sentence, header, rows)`` per table of
    :func:`~purchase_intent.report.files.load_drivers`."""
    n = f"{drivers['rows']:,} " if drivers.get("rows") else ""
    where = (f"`{drivers['folder'].name}/`, written after the export (`train.explain_rows`) or by "
             f"`python -m purchase_intent.explain`, on {n}labelled rows")
    out = []
    imp = drivers.get("importance")
    if imp is not None and "importance" in imp:
        imp = imp.sort_values("importance", ascending=False)
        shown = imp.head(top)
        sentence = (f"What the model leans on ({where}): the drop in ranking quality (ROC-AUC) when one "
                    f"feature's values are shuffled across the {plural(unit)}; the larger, the more the model "
                    "relies on it (± the spread over the shuffles). A driver is not a cause: a feature can "
                    "matter because it goes with the real cause.")
        if len(imp) > top:
            sentence += f" The top {top} of {len(imp)} features; the rest: `importance.csv`."
        out.append((sentence, ["feature", "drop in ROC-AUC when shuffled", "±"],
                    [[str(f), f"{r['importance']:.4f}", f"{r['std']:.4f}" if "std" in r else ""]
                     for f, r in shown.iterrows()]))
    mods = drivers.get("modalities")
    if mods is not None and "mean_abs_contribution" in mods:
        mods = mods.drop(index="all", errors="ignore").sort_values("mean_abs_contribution", ascending=False)
        out.append((f"Per kind of input ({where}): how far the probability moves, on average, when that input "
                    f"is emptied, and the share of {plural(unit)} it pushes up.",
                    ["input", "mean change of the probability (points)", f"share of {plural(unit)} pushed up"],
                    [[str(m), f"{100 * r['mean_abs_contribution']:.1f}", _pct(r["share_pushed_up"])]
                     for m, r in mods.iterrows()]))
    return out
