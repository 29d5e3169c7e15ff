"""Time ``python -m purchase_intent.campaign`` on N synthetic customers against an export; print JSON.

The customers are synthetic sessions (:func:`purchase_intent.data.synthetic.make_synthetic`, the
schema of the ``tiny`` / synthetic runs) with a ``customer_id`` column, written as a CSV; the export
must have been trained on that schema. The run is :func:`purchase_intent.campaign.run_campaign`, the
command's own code: reading and validation, scoring, the reasons (occlusion per feature group) and
the files.

Example:

    python benchmarks/campaign_speed.py --model runs/<run>/export/purchase_intent/1 --rows 100000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="export version folder trained on the synthetic schema")
    p.add_argument("--rows", type=int, default=100_000, help="synthetic customers (default: 100,000)")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--reasons", choices=("all", "contacted", "none"), default="all")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from purchase_intent import cli

    cli.quiet_tensorflow()
    from purchase_intent.campaign import run_campaign
    from purchase_intent.data.synthetic import SCHEMA, make_synthetic

    with tempfile.TemporaryDirectory() as tmp:
        df = make_synthetic(args.rows, seed=args.seed).drop(columns=[SCHEMA.label])
        for col in SCHEMA.sequence_like:
            df[col] = df[col].map("|".join)
        df.insert(0, "customer_id", [f"C{i:07d}" for i in range(len(df))])
        csv = Path(tmp) / "customers.csv"
        df.to_csv(csv, index=False)
        start = time.perf_counter()
        report = run_campaign(args.model, csv, Path(tmp) / "out", value=20.0, cost=1.0, reasons=args.reasons,
                              batch_size=args.batch_size, progress=False)
        seconds = time.perf_counter() - start
    t = report["timings"]
    print(json.dumps({
        "rows": args.rows, "seconds": round(seconds, 2), "rows_per_second": round(args.rows / seconds, 1),
        "load_seconds": round(t["load_seconds"], 2), "read_seconds": round(t["read_seconds"], 2),
        "scoring_seconds": round(t["scoring_seconds"], 2), "reasons_seconds": round(t["reasons_seconds"], 2),
        "reasons_for": args.reasons, "feature_groups": len(report["reasons"]["groups"]),
        "contacts": report["decision"]["contacts"], "batch_size": args.batch_size,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
