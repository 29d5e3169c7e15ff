"""Renders the targeting table of a run's report as a PNG (a screenshot check of the report).

Usage:

    python tools/render_targeting_table.py RUN_DIR docs/targeting_table.png

Reads ``metrics.json`` / ``predictions_test.csv`` of ``RUN_DIR`` as
``python -m purchase_intent.report`` does and draws the same rows with
matplotlib (no browser needed).
"""

import json
import sys
from pathlib import Path

from purchase_intent import evaluate, plots, report, targeting
from purchase_intent.report import narrative


def main(run_dir: str, out: str) -> Path:
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    schema = json.loads((run_dir / "schema.json").read_text()) if (run_dir / "schema.json").exists() else {}
    y, probs = report.load_predictions(run_dir / report.PREDICTIONS_FILE, schema.get("id", []))
    model = evaluate.MODEL_NAME if evaluate.MODEL_NAME in probs else next(iter(probs))
    summary = targeting.targeting_summary(y, probs, model, metrics["test"][model]["threshold"])
    header, rows = narrative.targeting_rows(summary)
    title = (f"Targeting table: {model}, test split ({summary['examples']:,} customers, "
             f"{summary['buyers']:,} buyers)")
    note = ("Customers sorted by predicted probability; contact the top share. "
            "Lift = buy rate of the contacted / overall buy rate (1.0 = random). "
            + narrative.label_sentence(schema).split(". ")[0].replace("`", "") + ".")
    return plots.plot_table(header, rows, out, title=title, note=note)


if __name__ == "__main__":
    print(main(*sys.argv[1:3]))
