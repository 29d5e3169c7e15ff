"""One table, saved the ways analysts' tools save it: does every variant train and score alike? Print JSON.

The table: customers with two monthly rows each (ids repeat), a day-first date, a money column, a visit
count, a device and a ``|``-delimited item history, label ``Yes``/``No``. Each variant is the same rows
written another way:

* ``plain``: comma-separated, ids as integers;
* ``semicolon``: ``;`` between cells and a decimal comma (Excel where the comma is the decimal mark);
* ``spaced_values``: ``", "`` between cells (values with a leading space);
* ``spaced_header``: ``", "`` in the header only;
* ``float_ids``: every other row's id written ``1042.0`` (a float column appended to an integer one);
* ``bom_crlf``: a UTF-8 byte-order mark and CRLF line ends;
* ``trailing_delimiter``: a comma at the end of every data row, none after the header.

For each variant, ``python -m purchase_intent.train --preset tiny`` (exit status, split sizes, test
ROC-AUC), then ``python -m purchase_intent.predict`` of the plain file with that variant's export:
``max_abs_diff_vs_plain_model`` is the largest difference from the plain model's probabilities on the
same rows. Equal splits, equal ROC-AUC and a difference of 0 mean the variant was read as meant.

Example:

    .venv/bin/python benchmarks/analyst_files.py [--customers 300] [--work-dir runs/analyst_files]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "label: bought\nnumeric: [spend, visits]\ncategorical: [device]\nsequences: [items]\nid: [customer_id]\n"


def table(customers: int, seed: int = 0) -> pd.DataFrame:
    """Two rows per customer; the label a noisy function of visits and spend."""
    rng = np.random.default_rng(seed)
    n = 2 * customers
    visits = rng.integers(0, 30, n)
    spend = np.round(rng.uniform(1, 500, n), 2)
    bought = (visits > 15) | (spend > 400) | (rng.random(n) < 0.1)
    return pd.DataFrame({
        "customer_id": np.repeat(np.arange(1000, 1000 + customers), 2).astype(str),
        "month": [f"{d:02d}/{m:02d}/2024" for d, m in zip(rng.integers(1, 29, n), rng.integers(1, 13, n))],
        "spend": spend, "visits": visits,
        "device": rng.choice(["mobile", "desktop", "tablet"], n),
        "items": ["|".join(rng.choice(["A1", "B2", "C3", "D4"], rng.integers(0, 7))) for _ in range(n)],
        "bought": np.where(bought, "Yes", "No")})


def variants(df: pd.DataFrame, out: Path) -> dict[str, Path]:
    """Writes each variant of ``df`` into ``out``; returns name -> file."""
    files = {name: out / f"{name}.csv" for name in
             ("plain", "semicolon", "spaced_values", "spaced_header", "float_ids", "bom_crlf",
              "trailing_delimiter")}
    df.to_csv(files["plain"], index=False)
    df.to_csv(files["semicolon"], index=False, sep=";", decimal=",")
    lines = files["plain"].read_text().splitlines()
    files["spaced_values"].write_text("\n".join([lines[0]] + [", ".join(r.split(",")) for r in lines[1:]]) + "\n")
    files["spaced_header"].write_text("\n".join([", ".join(lines[0].split(","))] + lines[1:]) + "\n")
    floats = df.assign(customer_id=np.where(np.arange(len(df)) % 2, df["customer_id"] + ".0", df["customer_id"]))
    floats.to_csv(files["float_ids"], index=False)
    files["bom_crlf"].write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    files["trailing_delimiter"].write_text("\n".join([lines[0]] + [r + "," for r in lines[1:]]) + "\n")
    return files


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env, cwd=ROOT)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, default=300)
    p.add_argument("--work-dir", default=str(ROOT / "runs" / "analyst_files"))
    args = p.parse_args(argv)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "schema.yaml").write_text(SCHEMA)
    files = variants(table(args.customers), work)
    report: dict[str, dict] = {}
    for name, path in files.items():
        t0 = time.perf_counter()
        run_dir = work / f"run_{name}"
        done = _run(["purchase_intent.train", "--preset", "tiny", "--data", str(path), "--set",
                     f"data.schema={work / 'schema.yaml'}", "--output-dir", str(run_dir)])
        row: dict = {"train_exit": done.returncode, "seconds": round(time.perf_counter() - t0, 1)}
        if done.returncode:
            row["error"] = done.stderr.strip().splitlines()[-1][:300]
        else:
            metrics = json.loads((run_dir / "metrics.json").read_text())
            row["splits"] = {k: v["examples"] for k, v in metrics["splits"].items()}
            row["test_roc_auc"] = round(metrics["test"]["purchase_intent"]["roc_auc"], 6)
            scored = work / f"scored_plain_by_{name}.csv"
            done = _run(["purchase_intent.predict", "--model", str(run_dir / "export" / "purchase_intent"),
                         "--input", str(files["plain"]), "--output", str(scored), "--no-progress"])
            row["predict_exit"] = done.returncode
        report[name] = row
    plain = pd.read_csv(work / "scored_plain_by_plain.csv")["purchase_probability"].to_numpy()
    for name, row in report.items():
        scored = work / f"scored_plain_by_{name}.csv"
        if row.get("predict_exit") == 0:
            other = pd.read_csv(scored)["purchase_probability"].to_numpy()
            row["max_abs_diff_vs_plain_model"] = float(np.max(np.abs(other - plain)))
    print(json.dumps({"customers": args.customers, "rows": 2 * args.customers, "variants": report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
