"""Recalibrating a trained export on later rows: ECE and log loss before/after on the rows held back.

The export's output stage was fitted on the validation split; Online Retail's
test split is a later cut-off date (another season). This script scores the
test rows through the export as TF Serving runs it, fits the recalibration
of :mod:`purchase_intent.recalibrate` on the first part of them and measures
the rest, before and after, through the new version it writes (into a
temporary folder: the export is left as it is). The test split is one
cut-off date, so its row order is no time order: the rows are shuffled
(``--seed``) before the cut, unless ``--file-order``.

Writes ``recalibration`` into ``benchmarks/quality.json`` (the other keys kept)::

    {"recalibration": {"online_retail": {"ece_before", "ece_after", "log_loss_before", "log_loss_after",
                       "roc_auc_before", "roc_auc_after", "rows_fit", "rows_held_back", "a", "b",
                       "max_abs_diff_serving", "order", "model", "measured", "command"}}}

Usage::

    .venv/bin/python benchmarks/recalibration.py --model runs/<online_retail run>/export/purchase_intent
        [--holdout-fraction 0.5] [--seed 0 | --file-order] [--json benchmarks/quality.json]
    .venv/bin/python benchmarks/recalibration.py --model EXPORT --input labelled.csv --key my_shop

Without ``--input`` the test split is rebuilt from the export's
``assets.extra/config.json`` (the raw file must be there: ``$PURCHASE_INTENT_DATA``,
``../shared/data`` or the package's copy).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def test_rows(version_dir: Path):
    """``(schema, validated test split)`` rebuilt from the export's ``config.json``."""
    from purchase_intent.config import get_config
    from purchase_intent.data import load_splits

    config_file = version_dir / "assets.extra" / "config.json"
    if not config_file.is_file():
        raise SystemExit(f"{config_file} is missing: give the labelled rows with --input")
    cfg = get_config("default", config_file=str(config_file))
    schema, splits = load_splits(cfg.data, seed=cfg.train.seed)
    return schema, splits["test"]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="export: model folder (highest version) or version folder")
    p.add_argument("--input", default=None, help="labelled CSV/Parquet instead of the export's test split")
    p.add_argument("--key", default="online_retail", help="dataset key in quality.json")
    p.add_argument("--holdout-fraction", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0, help="seed of the row shuffle before the cut")
    p.add_argument("--file-order", action="store_true", help="cut the rows in their order, no shuffle")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "quality.json"))
    args = p.parse_args(argv)

    from purchase_intent import cli
    from purchase_intent.recalibrate import format_table, read_labelled, recalibrate, resolve_source
    from purchase_intent.schema import FeatureSchema

    cli.setup_logging()
    source = resolve_source(args.model)
    if args.input:
        schema = FeatureSchema.load(source / "assets.extra" / "schema.json")
        frame, _ = read_labelled(args.input, schema)
        where = str(args.input)
    else:
        schema, frame = test_rows(source)
        where = "the test split"
    order = "file order" if args.file_order else f"shuffled (seed {args.seed})"
    if not args.file_order:
        frame = frame.sample(frac=1.0, random_state=args.seed).reset_index(drop=True)
    version = int(source.name) + 1 if source.name.isdigit() else 0
    with tempfile.TemporaryDirectory(prefix="recalibration-") as tmp:  # the export itself is not touched
        report = recalibrate(source, frame, holdout_fraction=args.holdout_fraction, version=version,
                             model_dir=Path(tmp) / source.parent.name, input_name=f"{where}, {order}")
    print(format_table(report), flush=True)
    before, after = report["held_back"]["before"], report["held_back"]["after"]
    out = {f"{m}_{when}": figures[m] for m in ("ece", "log_loss", "roc_auc")
           for when, figures in (("before", before), ("after", after))}
    out.update({"rows_fit": report["rows_fit"], "rows_held_back": report["rows_held_back"],
                "a": report["a"], "b": report["b"],
                "positive_rate_held_back": before["positive_rate"],
                "mean_probability_before": before["mean_probability"],
                "mean_probability_after": after["mean_probability"],
                "max_abs_diff_serving": report["exactness"]["max_abs_diff_serving"],
                "serving_rows_checked": report["exactness"]["rows"], "rows": where, "order": order,
                "model": str(source), "measured": time.strftime("%Y-%m-%d"),
                "command": "benchmarks/recalibration.py " + " ".join(sys.argv[1:] if argv is None else argv)})
    path = Path(args.json)
    summary = json.loads(path.read_text()) if path.exists() else {}
    summary.setdefault("recalibration", {})[args.key] = out
    path.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    print(json.dumps({args.key: out}, indent=2, default=float))
    return out


if __name__ == "__main__":
    main()
