"""The downstream gain of behaviour pretraining, with a paired bootstrap interval.

Trains the fusion model twice on the same split and seeds, without and with
``train.pretrain_epochs`` (next-item pretraining on the training split's
sequences, :mod:`purchase_intent.pretrain`), and prints one JSON object: the
validation and test ROC-AUC of both, and the paired bootstrap 95 % interval of
the difference (with - without) on each split. Validation is what a default
would be chosen on; test is reported, not tuned on.

Usage::

    .venv/bin/python benchmarks/pretrain_gain.py --data online_retail --seeds 2 --pretrain-epochs 3 \\
        [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="online_retail")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--pretrain-epochs", type=int, default=3)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "purchase_intent"))
    p.add_argument("--bootstrap", type=int, default=1000)
    from purchase_intent.cli import add_config_flags

    add_config_flags(p)  # --help-config: every --set key
    args = p.parse_args(argv)

    from purchase_intent import compare
    from purchase_intent.baselines import roc_auc
    from purchase_intent.cli import setup_logging
    from purchase_intent.config import get_config
    from purchase_intent.data import load_splits

    setup_logging()
    base = [f"data.name={args.data}", *args.overrides]
    cfg = get_config("default", overrides=base)
    schema, splits = load_splits(cfg.data, seed=cfg.train.seed)
    runs = {"without": get_config("default", overrides=[*base, "train.pretrain_epochs=0"]),
            "with": get_config("default", overrides=[*base, f"train.pretrain_epochs={args.pretrain_epochs}"])}
    fits = {name: compare.fit_fusion(c, schema, splits, seeds=args.seeds, cache_dir=args.cache_dir)
            for name, c in runs.items()}
    out = {"data": args.data, "seeds": args.seeds, "pretrain_epochs": args.pretrain_epochs,
           "overrides": args.overrides}
    for split, key in (("validation", "val"), ("test", "test")):
        y = splits[split][schema.label].to_numpy()
        probs = {name: fit[key] for name, fit in fits.items()}
        boot = compare.bootstrap_auc(y, probs, n=args.bootstrap, pairs=[("with", "without")])
        out[split] = {"roc_auc": {name: roc_auc(y, pr) for name, pr in probs.items()},
                      "difference": boot["differences"]["with - without"]}
    out["best_epochs"] = {name: fit["epochs"] for name, fit in fits.items()}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
