"""Does TF Serving's execution path give the trained probabilities? Every validation and test row, JSON out.

    .venv/bin/python benchmarks/serving_exactness.py                       # trains the default run first
    .venv/bin/python benchmarks/serving_exactness.py --set data.name=online_shoppers
    .venv/bin/python benchmarks/serving_exactness.py --run runs/<run>      # an existing run directory

Loads the run's export twice, as ``predict`` does (``tf.saved_model.load``) and
as TF Serving does (the TF1 loader in a Session with Grappler on:
:class:`purchase_intent.serving.session.SessionModel`), rebuilds every
validation and test row with the package's own loaders and contract, and
prints the largest difference; also between the run's in-memory test
probabilities (``predictions_test.csv``) and the Session path, and on the
awkward rows of :mod:`purchase_intent.exactness` (every split threshold of the
trees, extremes, odd sequences).
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
sys.path.insert(0, str(ROOT))


def train(run_dir: Path, overrides: list[str]) -> None:
    cmd = [sys.executable, "-m", "purchase_intent.train", "--output-dir", str(run_dir)]
    for override in overrides:
        cmd += ["--set", override]
    print("Training:", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="an existing run directory (default: train one)")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "serving_exactness")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override of the training run (repeatable)")
    args = parser.parse_args(argv)

    from purchase_intent import exactness
    from purchase_intent.config import get_config
    from purchase_intent.data import load_splits
    from purchase_intent.export import existing_versions, load_serving_fn
    from purchase_intent.serving.session import SessionModel

    run_dir = args.run
    if run_dir is None:
        run_dir = args.work_dir / "_".join(o.replace("=", "-").replace("/", "-") for o in args.overrides or ["default"])
        train(run_dir, args.overrides)
    model_dir = run_dir / "export" / "purchase_intent"
    vdir = model_dir / str(existing_versions(model_dir)[-1])
    cfg = get_config(config_file=str(run_dir / "config.json"))
    schema, splits = load_splits(cfg.data, seed=cfg.train.seed)
    t0 = time.perf_counter()
    fn, session = load_serving_fn(vdir), SessionModel(vdir)
    rows = pd.concat([splits["validation"], splits["test"]], ignore_index=True)
    every = exactness.compare_paths(vdir, rows, schema, fn=fn, session=session)
    in_memory = pd.read_csv(run_dir / "predictions_test.csv")["purchase_intent"].to_numpy(np.float64)
    served_test = every["served"][len(splits["validation"]):]
    thresholds = exactness.export_tree_thresholds(vdir)
    awkward = exactness.awkward_rows(splits["test"].head(16), schema, thresholds,
                                     max_events=json.loads((vdir / "assets.extra" / "contract.json").read_text())["max_events"])
    odd = exactness.compare_paths(vdir, awkward, schema, fn=fn, session=session)
    result = {
        "run": str(run_dir), "dataset": cfg.data.name, "export": str(vdir),
        "validation_and_test_rows": every["rows"],
        "max_abs_diff_saved_model_vs_session": every["max_abs_diff_serving"],
        "rows_above_1e-6": every["rows_above_1e-6"],
        "test_rows": int(len(served_test)),
        "max_abs_diff_in_memory_vs_session_test": float(np.max(np.abs(in_memory - served_test))),
        "awkward_rows": odd["rows"], "tree_thresholds": int(sum(len(t) for t in thresholds.values())),
        "max_abs_diff_saved_model_vs_session_awkward": odd["max_abs_diff_serving"],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
