"""Choose settings on validation: the fusion model under several ``--set`` variants, validation only.

Every variant is trained on the same split with ``--seeds`` seeds (the
probabilities averaged, as ``compare`` does) and scored on the **validation**
split only (ROC-AUC, log loss, ECE): the test split is never looked at, so
defaults picked from this table are not tuned on test.

Usage::

    .venv/bin/python benchmarks/sweep.py --data online_retail --seeds 2 \\
        --variant "base:" --variant "no wide:model.wide_sequences=false" \\
        [--set key=value ...]  # applied to every variant

A variant is ``label:key=value,key=value`` (empty after the colon: the defaults).
Prints one JSON line per variant and a summary table; ``--out FILE`` appends the JSON lines.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_variant(text: str) -> tuple[str, list[str]]:
    label, _, sets = text.partition(":")
    return label.strip(), [s.strip() for s in sets.split(",") if s.strip()]


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="online_retail")
    p.add_argument("--preset", default="default")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--variant", action="append", default=[], help="label:key=value,key=value")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="for every variant")
    p.add_argument("--peers", default="logistic_regression",
                   help="comma-separated peers to score on validation beside (empty: none)")
    p.add_argument("--subset", default="",
                   help="train on these modalities only, '+'-joined (e.g. sequence, text+numeric); empty: all")
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "purchase_intent"))
    p.add_argument("--out", default="")
    from purchase_intent.cli import add_config_flags

    add_config_flags(p)  # --help-config: every --set key
    args = p.parse_args(argv)

    import logging

    import numpy as np

    from purchase_intent import baselines, compare
    from purchase_intent.cli import setup_logging
    from purchase_intent.config import get_config
    from purchase_intent.data import load_splits
    from purchase_intent.evaluate import expected_calibration_error

    setup_logging()
    logging.getLogger("purchase_intent").setLevel(logging.WARNING)
    base = get_config(args.preset, overrides=[f"data.name={args.data}", *args.overrides])
    schema, splits = load_splits(base.data, seed=base.train.seed)
    if args.subset:
        schema = schema.subset(args.subset.split("+"))
        splits = {k: v[[*schema.feature_names, schema.label]] for k, v in splits.items()}
    y_val = splits["validation"][schema.label].to_numpy()

    def scores(p_val) -> dict:
        from sklearn.metrics import log_loss, roc_auc_score

        p_val = np.clip(p_val, 1e-7, 1 - 1e-7)
        return {"val_roc_auc": float(roc_auc_score(y_val, p_val)),
                "val_log_loss": float(log_loss(y_val, p_val)),
                "val_ece": expected_calibration_error(y_val, p_val)}

    rows = []
    peers = [n for n in args.peers.split(",") if n]
    if peers:
        for name, out in baselines.fit_peers(schema, splits, seed=base.train.seed, names=peers).items():
            rows.append({"variant": f"peer {name}", "sets": [], **scores(out["val"])})
            print(json.dumps(rows[-1]), flush=True)
    for text in args.variant or ["defaults:"]:
        label, sets = parse_variant(text)
        cfg = get_config(args.preset, overrides=[f"data.name={args.data}", *args.overrides, *sets])
        t0 = time.perf_counter()
        fit = compare.fit_fusion(cfg, schema, splits, seeds=args.seeds, cache_dir=args.cache_dir)
        per_seed = fit.get("val_per_seed", [])
        rows.append({"variant": label, "sets": sets, **scores(fit["val"]), "epochs": fit["epochs"],
                     "val_roc_auc_per_seed": [scores(v)["val_roc_auc"] for v in per_seed],
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps({"data": args.data, "seeds": args.seeds, "common": args.overrides,
                                    **rows[-1]}) + "\n")
    print(f"\n{args.data}, validation only, {args.seeds} seed(s) averaged:")
    for r in rows:
        print(f"  {r['variant']:<40} ROC-AUC {r['val_roc_auc']:.4f}  log loss {r['val_log_loss']:.4f}  "
              f"ECE {r['val_ece']:.4f}  {r.get('epochs', '')}")
    return rows


if __name__ == "__main__":
    main()
