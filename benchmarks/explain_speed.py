"""Time ``python -m purchase_intent.explain`` end to end on N labelled rows against an export; print JSON.

Each run is a fresh process (TensorFlow import, export load, reading the table, occlusion,
permutation importance, writing the tables), as a user runs the command; its stage times are the
``timings.json`` the command writes. The figure reported is the median of ``--runs`` runs.

The table: ``--input`` (a CSV/Parquet of raw examples with the label, named as in the export's
schema), or by default one made from the export's own data: the data configuration the export
carries (``assets.extra/config.json``) is loaded with ``purchase_intent.data.load_splits`` (with
``data.max_examples=0``: every example), and ``--rows`` rows are drawn (seed 0) from its test split,
then validation, then train if the test split is shorter; sequences are written ``|``-joined, as a
user's CSV holds them. The table is kept in ``runs/explain_bench/`` and reused.

Examples:

    python benchmarks/explain_speed.py                      # runs/default/export/purchase_intent, 1,000 rows
    python benchmarks/explain_speed.py --model runs/<run>/export/purchase_intent --rows 1000 --runs 3
    python benchmarks/explain_speed.py --unbatched          # one model call per perturbed frame (the old path)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "runs" / "default" / "export" / "purchase_intent"
TABLES = ROOT / "runs" / "explain_bench"
TARGET_SECONDS = 60.0


def version_dir(model: Path) -> Path:
    from purchase_intent.contract import existing_versions

    if not (model / "saved_model.pb").exists() and existing_versions(model):
        return model / str(existing_versions(model)[-1])
    return model


def make_table(model: Path, rows: int) -> Path:
    """A CSV of ``rows`` labelled raw examples of the export's data (see the module docstring)."""
    import pandas as pd

    from purchase_intent.config import get_config
    from purchase_intent.data import load_splits

    cfg = get_config(config_file=str(model / "assets.extra" / "config.json"), overrides=["data.max_examples=0"])
    path = TABLES / f"{Path(cfg.data.name).stem}_{rows}.csv"
    if path.exists():
        return path
    schema, frames = load_splits(cfg.data, seed=cfg.train.seed)
    pool = pd.concat([frames[s].sample(frac=1.0, random_state=0) for s in ("test", "validation", "train")],
                     ignore_index=True)
    if len(pool) < rows:
        raise SystemExit(f"{cfg.data.name} has only {len(pool)} examples, fewer than --rows {rows}")
    table = pool.head(rows).copy()
    for name in schema.sequence_like:
        table[name] = table[name].map(schema.sequence_delimiter.join)
    TABLES.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return path


def run_once(model: Path, table: Path, rows: int, repeats: int | None, unbatched: bool) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "purchase_intent.explain", "--model", str(model), "--input", str(table),
               "--output-dir", out, "--max-rows", str(rows), "--no-progress"]
        if repeats is not None:
            cmd += ["--repeats", str(repeats)]
        if unbatched:
            cmd += ["--unbatched"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(f"explain failed with status {done.returncode}")
        timings = json.loads((Path(out) / "timings.json").read_text())
        importance = Path(out) / "importance.csv"
        ranked = importance.read_text().splitlines()[1:] if importance.exists() else []
    return {"seconds": seconds, "cpu_seconds": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "timings": timings, "ranked": [line.split(",")[0] for line in ranked]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="export (model or version folder)")
    p.add_argument("--input", default=None, help="labelled table (default: made from the export's data)")
    p.add_argument("--rows", type=int, default=1000, help="rows explained (default: 1,000)")
    p.add_argument("--runs", type=int, default=1, help="fresh-process runs; the median is reported")
    p.add_argument("--repeats", type=int, default=None, help="shuffles per feature (default: the command's)")
    p.add_argument("--unbatched", action="store_true", help="time the one-call-per-frame path instead")
    args = p.parse_args(argv)

    from purchase_intent.schema import FeatureSchema

    model = version_dir(Path(args.model))
    schema = FeatureSchema.load(model / "assets.extra" / "schema.json")
    config = json.loads((model / "assets.extra" / "config.json").read_text())
    table = Path(args.input) if args.input else make_table(model, args.rows)
    load = os.getloadavg()[0]
    runs = [run_once(model, table, args.rows, args.repeats, args.unbatched) for _ in range(args.runs)]
    median = statistics.median(r["seconds"] for r in runs)
    chosen = min(runs, key=lambda r: abs(r["seconds"] - median))
    timings = chosen["timings"]
    includes_text = bool(schema.text or schema.event_text)
    print(json.dumps({
        "rows": timings["rows"], "seconds": round(median, 1), "runs": [round(r["seconds"], 1) for r in runs],
        "cpu_seconds": round(chosen["cpu_seconds"], 1),
        "per_stage": {k.removesuffix("_seconds"): v for k, v in timings.items() if k.endswith("_seconds")},
        "rows_scored": timings.get("rows_scored"), "rows_perturbed": timings.get("rows_requested"),
        "includes_text": includes_text,
        "text": {"scalar": list(schema.text), "per_event": list(schema.event_text),
                 "encoder": config.get("model", {}).get("text_encoder")},
        "text_ranked": [f for f in chosen["ranked"] if f in list(schema.text) + list(schema.event_text)],
        "target_seconds": TARGET_SECONDS, "met": median < TARGET_SECONDS,
        "path": "unbatched (one call per frame)" if args.unbatched else "batched (distinct rows once)",
        "model": str(model), "input": str(table), "load_average_1min_at_start": round(load, 2),
        "cpu_count": os.cpu_count(),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
