"""A shop's first model: small training and validation sets. The package beside its best peer, 5 subsamples.

For each dataset (Online Shoppers, Online Retail), each subsample seed:
the training split cut to ``--train-rows`` rows (seeded, stratified), the
validation split to ``--val-positives`` buyers and the same share of
non-buyers (the split's own rate), the test split kept whole; then
:func:`purchase_intent.compare.compare` on it: the package's defaults (the
product: network, trees, output stage) and the tuned peers, the best peer
chosen on validation. The figure is the test ROC-AUC of the package minus
the best peer's, per seed, then their mean and a t-interval over the seeds.

Writes ``small_data`` into ``benchmarks/quality.json`` (the other keys kept)::

    {"small_data": {"online_shoppers": {"delta_mean", "ci_low", "ci_high", "per_seed": [...],
                    "train_rows", "val_positives", "seeds", "measured"}, ...}}

Usage::

    .venv/bin/python benchmarks/small_data.py [--datasets online_shoppers,online_retail] [--seeds 5]
        [--train-rows 1000] [--val-positives 30] [--json benchmarks/quality.json] [--set KEY=VALUE ...]

Needs the raw files (``$PURCHASE_INTENT_DATA`` or ``../shared/data``) and the ``[compare]`` extra.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

T_975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}


def subsample(splits: dict, label: str, train_rows: int, val_positives: int, seed: int) -> dict:
    """``train_rows`` training rows (the training rate kept), ``val_positives`` validation buyers, test whole."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)

    def take(df, n_pos, n_neg):
        pos, neg = df.index[df[label] == 1], df.index[df[label] == 0]
        keep = np.r_[rng.choice(pos, min(n_pos, len(pos)), replace=False),
                     rng.choice(neg, min(n_neg, len(neg)), replace=False)]
        return df.loc[np.sort(keep)].reset_index(drop=True)

    train, val = splits["train"], splits["validation"]
    rate_t, rate_v = float(train[label].mean()), float(val[label].mean())
    n_pos = round(train_rows * rate_t)
    out = {"train": take(train, n_pos, train_rows - n_pos),
           "validation": take(val, val_positives, round(val_positives * (1 - rate_v) / rate_v)),
           "test": splits["test"]}
    assert isinstance(out["train"], pd.DataFrame)
    return out


def run_dataset(name: str, seeds: int, train_rows: int, val_positives: int, overrides: list[str]) -> dict:
    import keras

    from purchase_intent.compare import compare
    from purchase_intent.config import get_config
    from purchase_intent.data import load_splits

    cfg = get_config("default", overrides=[f"data.name={name}", *overrides])
    schema, splits = load_splits(cfg.data, seed=cfg.train.seed)
    per_seed = []
    for seed in range(seeds):
        t0 = time.perf_counter()
        small = subsample(splits, schema.label, train_rows, val_positives, seed)
        keras.utils.set_random_seed(cfg.train.seed)
        r = compare(cfg, schema, small, bootstrap=200)
        res, best = r["results"], r["best_peer"]
        per_seed.append({
            "seed": seed, "package": res["purchase_intent"]["roc_auc"], "best_peer": best,
            "best_peer_roc_auc": res[best]["roc_auc"],
            "delta": res["purchase_intent"]["roc_auc"] - res[best]["roc_auc"],
            "package_val_roc_auc": res["purchase_intent"]["val_roc_auc"],
            "package_ece": res["purchase_intent"]["ece"],
            "train_rows": len(small["train"]), "val_rows": len(small["validation"]),
            "val_positives": int(small["validation"][schema.label].sum()),
            "seconds": time.perf_counter() - t0})
        print(json.dumps(per_seed[-1]), flush=True)
    deltas = [s["delta"] for s in per_seed]
    mean = statistics.fmean(deltas)
    half = T_975.get(len(deltas), 1.96) * statistics.stdev(deltas) / math.sqrt(len(deltas)) if len(deltas) > 1 else 0.0
    return {"delta_mean": mean, "ci_low": mean - half, "ci_high": mean + half, "per_seed": per_seed,
            "train_rows": train_rows, "val_positives": val_positives, "seeds": seeds,
            "test_rows": len(splits["test"]), "measured": time.strftime("%Y-%m-%d"),
            "command": "benchmarks/small_data.py " + " ".join(sys.argv[1:])}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="online_shoppers,online_retail")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--train-rows", type=int, default=1000)
    p.add_argument("--val-positives", type=int, default=30)
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "quality.json"))
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args(argv)
    from purchase_intent import cli

    cli.setup_logging()
    out = {name: run_dataset(name, args.seeds, args.train_rows, args.val_positives, args.overrides)
           for name in [d.strip() for d in args.datasets.split(",") if d.strip()]}
    path = Path(args.json)
    summary = json.loads(path.read_text()) if path.exists() else {}
    summary.setdefault("small_data", {}).update(out)
    path.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    print(json.dumps({k: {m: v[m] for m in ("delta_mean", "ci_low", "ci_high")} for k, v in out.items()}, indent=2))
    return out


if __name__ == "__main__":
    main()
