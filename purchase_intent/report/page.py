"""The run report page (``report.md`` and ``report.html``), the end-of-training summary and the command line.

:func:`build_report` rebuilds the figures it can from a run directory's files
and writes the page; :func:`run_summary` is what ``train`` prints at the end;
:func:`main` is ``python -m purchase_intent.report RUN_DIR``.
"""

from __future__ import annotations

import argparse
import datetime
import html
import logging
from pathlib import Path
from typing import Any

import numpy as np

from purchase_intent import cli
from purchase_intent.contract import PREDICTED_LABEL_COLUMN, TRUE_LABEL_COLUMN
from purchase_intent.data.split_checks import split_warnings
from purchase_intent.plots import plot_learning_curves, plot_lift_gain
from purchase_intent.report.files import (EXPLAIN_DIR, PREDICTIONS_FILE, _read_json, check_run_dir, date_span,
                                          load_drivers, load_ids, load_predictions)
from purchase_intent.report.narrative import (_METRIC_COLUMNS, METRIC_NAMES, _config_summary, _metrics_rows,
                                              _model_name, _pct, bootstrap_sentence, calibration_sentence,
                                              campaign_command, comparison_sentence, drivers_blocks,
                                              epochs_sentence, expected_buyers_rows, expected_buyers_sentence,
                                              glossary, label_sentence, period_sentence, plural, sample_sentence,
                                              serving_commands, targeting_rows, unit_of)
from purchase_intent.targeting import (DECISION_SHARES, auc_difference, expected_buyers, lift_table,
                                       targeting_summary, targeting_table)

logger = logging.getLogger(__name__)

DECISION_HEADING = "Decision: whom to contact"
NEXT_HEADING = "What to do next"
APPENDIX_HEADING = "Technical appendix"
BOOTSTRAP_RESAMPLES = 1000


FIGURES = {
    "learning_curves.png": "Learning curves (loss and ROC-AUC, train vs validation)",
    "curves.png": "ROC and precision-recall curves on the test split",
    "calibration.png": "Calibration (reliability diagram) on the test split",
    "lift.png": "Cumulative gain and lift per decile on the test split",
}


def build_report(run_dir: str | Path, *, bootstrap: int = BOOTSTRAP_RESAMPLES) -> Path:
    """Rebuilds every figure it can from the run directory's files, then ``report.md`` / ``report.html``.

    Missing inputs are skipped with a log line (e.g. no ``history.json``: no
    learning curves); existing figures that cannot be rebuilt are still linked.
    The page leads with the decision, then what qualifies it, then the detail:

    1. when it was built and when the data is from;
    2. **Decision**: what label 1 means; the buyers expected among the top
       10, 20, 30 % by probability, each with a 95 % Poisson-binomial interval
       (from the model's calibrated test probabilities), beside the buyers
       the test split really had; the model against the best baseline with a
       paired bootstrap interval of the ROC-AUC difference, in words;
    3. **What to do next**: the campaign command on the run's export;
    4. the warnings (``metrics.json`` ``warnings``: leakage across the
       splits, base-rate and feature shift, small splits; a threshold that
       labels most rows buyers);
    5. the drivers, when the training run (``train.explain_rows``) or
       ``python -m purchase_intent.explain`` wrote their tables into ``RUN_DIR/explain/``;
    6. the technical appendix: the comparison and threshold in figures, the
       targeting table, the test metrics and glossary, training, figures,
       the lift table, the configuration, the predictions file and the export.

    An event-log run (:func:`~purchase_intent.report.narrative.unit_of`)
    speaks of sessions, any other of customers.

    Args:
        run_dir: a run directory written by ``python -m purchase_intent.train``.
        bootstrap: resamples of the paired bootstrap.

    Returns:
        The path of ``report.html``.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist.
    """
    from purchase_intent import evaluate

    run_dir = check_run_dir(run_dir)
    history = _read_json(run_dir / "history.json")
    metrics = _read_json(run_dir / "metrics.json") or {}
    cfg = _read_json(run_dir / "config.json")
    schema = _read_json(run_dir / "schema.json")
    unit = unit_of(cfg, schema)
    units = plural(unit)
    if history:
        plot_learning_curves(history, run_dir / "learning_curves.png")
    else:
        logger.info("No history.json in %s: no learning curves", run_dir)
    test = metrics.get("test") or {}
    predictions = run_dir / PREDICTIONS_FILE
    targeting = metrics.get("targeting")
    y = probs = None
    ids = (schema or {}).get("id") or []
    if predictions.exists():
        y, probs = load_predictions(predictions, ids)
        evaluate.plot_curves(y, probs, run_dir / "curves.png")
        evaluate.plot_calibration(y, probs, run_dir / "calibration.png")
        plot_lift_gain(y, probs, run_dir / "lift.png")
        model = evaluate.MODEL_NAME if evaluate.MODEL_NAME in probs else next(iter(probs))
        lift = lift_table(y, probs[model])
        targeting = targeting_summary(y, probs, model, (test.get(model) or {}).get("threshold"))
        id_frame = load_ids(predictions, ids)
    else:
        logger.info("No %s in %s: ROC/PR, calibration and lift figures not rebuilt",
                    PREDICTIONS_FILE, run_dir)
        model = (targeting or {}).get("model") or (evaluate.MODEL_NAME if evaluate.MODEL_NAME in test
                                                    else next(iter(test), None))
        lift = None
        id_frame = None
    figures = [(f, caption) for f, caption in FIGURES.items() if (run_dir / f).exists()]
    export = (metrics.get("export") or {}).get("path")
    model_name = (cfg or {}).get("export", {}).get("model_name", "purchase_intent")
    commands = serving_commands(export, model_name, unit) if export else {}
    splits = metrics.get("splits") or {}
    page = _Page(run_dir.name)

    # When: the page's date, the data's period, the run's.
    trained = next((run_dir / f for f in ("metrics.json", PREDICTIONS_FILE, "history.json")
                    if (run_dir / f).exists()), run_dir)
    page.paragraph(f"Report built {_now()}; run trained {_stamp(trained.stat().st_mtime)} (time of "
                   f"`{trained.name}`); run directory: `{run_dir.resolve()}`.", "meta")
    page.paragraph(period_sentence(date_span(id_frame) if id_frame is not None else None, cfg, unit), "meta")
    if unit == "session":
        page.paragraph("This run is on an event log: each row is a session cut after one of its events (a "
                       "session can give several rows), so the figures below count sessions.", "meta")

    warnings = list(metrics.get("warnings") or split_warnings(splits))  # older runs: the small-split ones
    at = (targeting or {}).get("at_threshold")
    if at and at["share_contacted"] > 0.5:
        warnings.append(
            f"The threshold labels {_pct(at['share_contacted'])} of the test {units} as buyers: "
            "best F1 favours reaching buyers over precision. For a campaign of a fixed size, "
            "use a row of the targeting table (sort predictions_test.csv by probability) instead.")

    # 1. The decision.
    page.open("decision")
    page.heading(DECISION_HEADING)
    page.paragraph(label_sentence(schema, unit))
    if probs is not None and model in probs:
        expected = expected_buyers(probs[model])
        observed = targeting_table(y, probs[model], DECISION_SHARES)
        page.paragraph(f"Contacting the top of the list, ranked by the model's probability, on the {len(y):,} "
                       f"test {units} (held out from training):")
        page.table(*expected_buyers_rows(expected, observed, unit))
        page.paragraph(expected_buyers_sentence(expected, observed, (test.get(model) or {}).get("ece"), unit))
        baselines = {k: v for k, v in probs.items() if k != model and np.isfinite(v).any()}
        scores = {k: _auc(y, v) for k, v in baselines.items()}
        scores = {k: v for k, v in scores.items() if np.isfinite(v)}
        if scores:
            best = max(scores, key=scores.get)
            try:
                page.paragraph(bootstrap_sentence(auc_difference(y, probs[model], probs[best], n=bootstrap),
                                                  best, unit))
            except ValueError as e:  # one class among the test rows
                page.paragraph(f"Ranking: no comparison with the baselines ({e}).")
        elif model in test:
            page.paragraph(comparison_sentence((metrics.get("baseline_comparison") or {}).get("test") or test,
                                               model) + " (No baseline probabilities in "
                           f"{PREDICTIONS_FILE}: no interval.)")
    elif targeting:
        page.paragraph(f"No {PREDICTIONS_FILE} in the run folder: no expected buyers; the targeting table of "
                       "metrics.json is in the appendix.")
    if warnings:
        page.paragraph(f"Read the {len(warnings)} warning(s) below before acting on these figures.")
    page.subheading(NEXT_HEADING)
    if export:
        page.paragraph(
            f"Score the current {units} (a CSV or Parquet file, one row per {unit}, the schema's input columns; "
            "no label) with the campaign tool. Put your cost of a contact and profit of a purchase in place of "
            "1 and 20: it contacts everyone worth a contact (or `--budget` / `--contacts`), and writes "
            "`contacts.csv` (ranked, with three reasons each), `campaign.html` and `campaign.json`, with the "
            "expected buyers and profit and their intervals.")
        page.code(campaign_command(export, unit))
    else:
        page.paragraph("This run has no export to score with: train with the export on "
                       "(`export.enabled=true`), then run `python -m purchase_intent.campaign`.")
    page.close()

    # 2. What can make the figures mislead.
    if warnings:
        page.heading("Warnings")
        for w in warnings:
            page.warning(w)

    # 3. The drivers, when explain wrote them into the run folder.
    drivers = load_drivers(run_dir)
    if drivers:
        blocks = drivers_blocks(drivers, unit)
        if blocks:
            page.heading("Drivers")
            for sentence, header, body in blocks:
                page.paragraph(sentence)
                page.table(header, body)

    # 4. The technical appendix.
    page.heading(APPENDIX_HEADING)
    page.paragraph("How the model did on the test split, how it was trained, and how to serve it.")
    page.subheading("Model against the baselines")
    comparison = metrics.get("baseline_comparison") or {}  # baselines scored a sample of big splits
    if model in test:
        n_compared = (comparison.get("examples") or {}).get("test")
        page.paragraph(comparison_sentence(comparison.get("test") or test, model,
                                           n_compared or (splits.get("test") or {}).get("examples")))
        if n_compared:
            page.paragraph(f"(Every model on the same first {n_compared:,} test examples: the baselines "
                           "scored a sample; see Test metrics.)")
    if targeting:
        rows = targeting["table"]
        top20 = next((r for r in rows if abs(r["share_contacted"] - 0.2) < 1e-9), rows[len(rows) // 2])
        page.paragraph(
            f"Contacting the top {_pct(top20['share_contacted'])} of the {targeting['examples']:,} test "
            f"{units} by probability reaches {_pct(top20['share_of_buyers_reached'])} of the "
            f"{targeting['buyers']:,} buyers, {top20['lift']:.1f} times as many as contacting "
            f"{_pct(top20['share_contacted'])} at random.")
    if at:
        page.paragraph(
            f"Decision threshold {at['threshold']:.3f} (chosen on validation for the best F1): "
            f"contacting everyone above it means contacting the top {_pct(at['share_contacted'])} "
            f"({at['customers_contacted']:,} of {targeting['examples']:,} test {units}) and reaches "
            f"{_pct(at['share_of_buyers_reached'])} of the buyers, at precision "
            f"{_pct(at['precision'])} (lift {at['lift']:.2f}). This is the `purchase_label` column of "
            "the predictions files.")
    if targeting:
        page.subheading(f"Targeting table: {targeting['model']} on the test split")
        page.paragraph(f"{units.capitalize()} sorted by predicted probability, most likely buyers first; "
                       f"contact the top share. Random targeting reaches the same share of buyers as of {units} "
                       "(lift 1.0).")
        header, body = targeting_rows(targeting, unit)
        page.table(header, body)
        reach = targeting.get("share_of_buyers_reached_by_model") or {}
        if len(reach) > 1:
            keys = list(next(iter(reach.values())))
            page.paragraph("Share of all buyers reached by each model's top list:")
            page.table(["model"] + [k.replace("_", " ") for k in keys],
                       [[_model_name(m)] + [_pct(v[k]) for k in keys] for m, v in reach.items()])

    rows = _metrics_rows(metrics)
    if rows:
        page.subheading("Test metrics")
        page.paragraph("Each model at the decision threshold chosen on the validation split (best F1). "
                       "Higher is better except log loss and calibration error.")
        page.table(["model"] + [METRIC_NAMES[c] for c in _METRIC_COLUMNS],
                   [[_model_name(r[0])] + r[1:] for r in rows])
        if comparison.get("test"):
            page.paragraph(sample_sentence(comparison, splits))
            page.table(["model"] + [METRIC_NAMES[c] for c in _METRIC_COLUMNS],
                       [[_model_name(r[0])] + r[1:] for r in _metrics_rows(comparison)])
        page.paragraph("Glossary:")
        page.table(["term", "meaning"], [[k, v] for k, v in glossary(unit, bootstrap)], align_left=True)
    training = metrics.get("training")
    page.subheading("Training")
    epochs = epochs_sentence(history, metrics, cfg)
    if epochs:
        page.paragraph(epochs)
    final_step = calibration_sentence(metrics)
    if final_step:
        page.paragraph(final_step)
    if training:
        page.paragraph(
            f"Training: {training.get('examples', 0):,} examples, "
            f"{training.get('fit_seconds', float('nan')):.1f} s in fit "
            f"({training.get('examples_per_second', float('nan')):.0f} examples/s, "
            f"{training.get('replicas')} replica(s)).")
    if splits:
        page.table(["split", "examples", "buyers", "positive rate"],
                   [[k, f"{v['examples']:,}", f"{int(round(v['examples'] * v['positive_rate'])):,}",
                     f"{v['positive_rate']:.1%}"] for k, v in splits.items()])
    for name, caption in figures:
        page.subheading(caption)
        page.image(name, caption)
    if lift is not None:
        page.subheading(f"Lift table ({model}, test, deciles)")
        page.table(["group", units, "buyers", "buy rate", "lift", "share contacted", "gain"],
                   [[str(r.group), str(r.customers), str(r.buyers), f"{r.buy_rate:.1%}", f"{r.lift:.2f}",
                     f"{r.cumulative_share_contacted:.0%}", f"{r.cumulative_gain:.1%}"]
                    for r in lift.itertuples()])
    summary = _config_summary(cfg)
    if summary:
        page.subheading("Configuration")
        page.table(["setting", "value"], [list(kv) for kv in summary])
        page.paragraph("Full configuration: `config.json`; feature schema: `schema.json`.")
    page.subheading("Predictions and export")
    page.paragraph(predictions_sentence(ids, unit, cfg))
    if export:
        page.paragraph(f"SavedModel: `{export}` (max |served - in-memory| = "
                       f"{metrics['export'].get('max_abs_diff', float('nan')):.1e}).")
        page.code("\n".join(f"# {k}\n{v}" for k, v in commands.items()))
        if not drivers:
            page.paragraph(f"Drivers: `python -m purchase_intent.explain --model {export} --input "
                           f"<labelled test rows> --output-dir {run_dir / EXPLAIN_DIR}`, then rebuild this "
                           "report; it shows them after the warnings.")
    else:
        page.paragraph("No export in this run.")
    (run_dir / "report.md").write_text(page.markdown())
    out = run_dir / "report.html"
    out.write_text(page.html())
    logger.info("Report: %s (and report.md, %d figures)", out, len(figures))
    return out


def predictions_sentence(ids: list[str], unit: str, cfg: dict | None) -> str:
    """What ``predictions_test.csv`` holds: one row per test customer or session, with its ids."""
    session = ((cfg or {}).get("data") or {}).get("session_column") or "session_id"
    if ids:
        named = ", ".join(f"`{c}`" for c in ids)
        lead = (f"the session id {named}, " if unit == "session" and session in ids else
                f"the id column(s) {named}, ")
        if unit == "session" and session not in ids:
            lead += (f"but not the session id (list `{session}` under `id` in the schema file and the "
                     "predictions carry it), ")
    elif unit == "session":
        lead = (f"no session id (list the log's session column under `id` in the schema file, e.g. "
                f"`id: [{session}]`, and the predictions carry it), ")
    else:
        lead = "no id column (name them in the schema: `id: [customer_id]`), "
    return (f"`{PREDICTIONS_FILE}`: one row per test {unit}: " + lead
            + f"`{TRUE_LABEL_COLUMN}` (what happened), each model's probability and `{PREDICTED_LABEL_COLUMN}` "
              "(1 = above the threshold). Sort by the model's column to get the contact list.")


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    keep = np.isfinite(p)
    return float(roc_auc_score(y[keep], p[keep])) if len(np.unique(y[keep])) == 2 else float("nan")


def _now() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def _stamp(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds).astimezone().strftime("%Y-%m-%d %H:%M %Z")


class _Page:
    """A tiny document model written both as Markdown and as standalone HTML."""

    def __init__(self, title: str):
        self.title = f"Purchase-intent run {title}"
        self.blocks: list[tuple[str, Any]] = []

    def heading(self, text: str) -> None:
        self.blocks.append(("h", text))

    def subheading(self, text: str) -> None:
        self.blocks.append(("h3", text))

    def open(self, css_class: str) -> None:
        """Starts a box (HTML only: a ``div`` of ``css_class``), up to :meth:`close`."""
        self.blocks.append(("open", css_class))

    def close(self) -> None:
        self.blocks.append(("close", None))

    def paragraph(self, text: str, css_class: str = "") -> None:
        self.blocks.append(("p", (text, css_class)))

    def table(self, header: list[str], rows: list[list[str]], align_left: bool = False) -> None:
        self.blocks.append(("table", (header, rows, align_left)))

    def warning(self, text: str) -> None:
        self.blocks.append(("warning", text))

    def image(self, src: str, alt: str) -> None:
        self.blocks.append(("img", (src, alt)))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "h":
                out += [f"## {value}", ""]
            elif kind == "h3":
                out += [f"### {value}", ""]
            elif kind == "p":
                out += [value[0], ""]
            elif kind == "warning":
                out += [f"> **Warning:** {value}", ""]
            elif kind == "table":
                header, rows, left = value
                out.append("| " + " | ".join(header) + " |")
                out.append("|" + "|".join("---" if i == 0 or left else "---:" for i in range(len(header)))
                           + "|")
                out += ["| " + " | ".join(r) + " |" for r in rows]
                out.append("")
            elif kind == "img":
                src, alt = value
                out += [f"![{alt}]({src})", ""]
            elif kind == "code":
                out += ["```bash", value, "```", ""]
        return "\n".join(out)

    def html(self) -> str:
        def inline(text: str) -> str:
            parts = html.escape(text).split("`")
            return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))

        out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
               f"<title>{html.escape(self.title)}</title>",
               "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
               "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
               "text-align:right}td:first-child,th:first-child{text-align:left}table.left td{text-align:left}"
               ".warning{background:#fff3cd;border-left:4px solid #e0a800;padding:.5em 1em}img{max-width:100%}"
               "pre{background:#f4f4f4;padding:1em;white-space:pre-wrap;overflow-wrap:anywhere}"
               ".decision{border:2px solid #2b6cb0;border-radius:6px;background:#f5f9ff;padding:0 1em;margin:1em 0}"
               ".decision h2{margin-top:.6em}.meta{color:#555;font-size:90%}</style></head><body>",
               f"<h1>{html.escape(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind == "h":
                out.append(f"<h2>{html.escape(value)}</h2>")
            elif kind == "h3":
                out.append(f"<h3>{html.escape(value)}</h3>")
            elif kind == "open":
                out.append(f"<div class='{html.escape(value)}'>")
            elif kind == "close":
                out.append("</div>")
            elif kind == "p":
                text, css = value
                out.append(f"<p class='{html.escape(css)}'>{inline(text)}</p>" if css else f"<p>{inline(text)}</p>")
            elif kind == "warning":
                out.append(f"<p class='warning'><b>Warning:</b> {inline(value)}</p>")
            elif kind == "table":
                header, rows, left = value
                style = " class='left'" if left else ""
                out.append(f"<table{style}><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header)
                           + "</tr>")
                out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows]
                out.append("</table>")
            elif kind == "img":
                src, alt = value
                out.append(f"<img src='{html.escape(src)}' alt='{html.escape(alt)}'>")
            elif kind == "code":
                out.append(f"<pre>{html.escape(value)}</pre>")
        out.append("</body></html>")
        return "\n".join(out) + "\n"


def run_summary(run_dir: str | Path) -> str:
    """The end-of-training summary: where the model, report and export are, and how to try them."""
    run_dir = Path(run_dir)
    metrics = _read_json(run_dir / "metrics.json") or {}
    cfg = _read_json(run_dir / "config.json") or {}
    model_name = cfg.get("export", {}).get("model_name", "purchase_intent")
    unit = unit_of(cfg, _read_json(run_dir / "schema.json"))
    lines = ["", "Run summary", "-----------",
             f"run directory:  {run_dir}",
             f"model weights:  {run_dir / 'best.weights.h5'}",
             f"report:         {run_dir / 'report.html'}  (and report.md; rebuild with "
             f"python -m purchase_intent.report {run_dir})"]
    export = (metrics.get("export") or {}).get("path")
    if export:
        cmds = serving_commands(export, model_name, unit)
        lines += [f"SavedModel:     {export}", "",
                  "Score a CSV offline (no server):", f"  {cmds['offline scoring']}",
                  "Start the local server, gRPC and REST (development stand-in for TF Serving):",
                  f"  {cmds['local server (gRPC, REST)']}",
                  "Then score over gRPC, from the shell:", f"  {cmds['score over gRPC']}",
                  "or from Python:",
                  "  from purchase_intent.serving import PurchaseIntentClient",
                  f"  PurchaseIntentClient('localhost:8500', '{model_name}', timeout=5).predict(frame)"]
    else:
        lines.append("SavedModel:     none (export disabled)")
    return "\n".join(lines) + "\n"


# -- command line ----------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m purchase_intent.report",
        description="Rebuild the figures (learning curves, ROC/PR, calibration, lift) and "
                    "report.md / report.html of a training run from the files in its directory; "
                    "the model is not needed.",
        formatter_class=cli.HelpFormatter)
    p.add_argument("run_dir", help="run directory written by python -m purchase_intent.train")
    cli.add_common_flags(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cli.setup_logging()
    try:
        out = build_report(args.run_dir)
    except (FileNotFoundError, ValueError) as e:
        return cli.fail(e)
    print(f"Report: {out}\nMarkdown: {out.with_suffix('.md')}", flush=True)
    return 0
