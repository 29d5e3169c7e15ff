"""The fusion model beside the peers users would pick: ``python -m purchase_intent.compare``.

On one dataset, one split and one test set:

* the fusion model (``task.PurchaseIntentTask``, as ``train`` runs it: early
  stopping on validation ROC-AUC, best epoch restored), optionally averaged
  over several seeds (``--seeds``);
* the peers of :mod:`purchase_intent.baselines` on its ``tabular_features``: logistic
  regression, scikit-learn ``HistGradientBoostingClassifier``, LightGBM and
  XGBoost (the ``[compare]`` extra), plus, when the data has text, logistic
  regression on TF-IDF word and bigram counts of the text beside the tabular
  features, and, when it has event sequences, logistic regression on a bag
  of the events (``baselines.sequence_tokens``: each value, and the first sequence
  column crossed with each other one; log(1 + count), unit L2 norm per row)
  beside the tabular features. Each peer is tuned with a small grid
  (``baselines.GRIDS``) on the validation split's ROC-AUC; the boosted trees also
  early-stop on it;
* test ROC-AUC, PR-AUC, log loss, expected calibration error (ECE), F1 at
  the threshold that maximises F1 on validation (``evaluate.evaluate_all``),
  and a paired bootstrap 95 % interval of the test ROC-AUC of every model
  and of the difference between the fusion model and the best peer;
* ``--ablations``: the same comparison for each modality subset (text,
  sequence, numeric, pairs, all) the dataset has.

Output: a table on stdout and ``compare.json`` in ``--output-dir`` (the command-line
arguments, the resolved config, and per modality subset every model's metrics, the
bootstrap intervals and the peers' chosen grid points).

With a frozen text encoder (``model.text_trainable_layers=0``, no LoRA), each distinct
text is encoded once and looked up (:class:`purchase_intent.blocks.CachedTextEncoder`),
as ``train`` does; the embeddings are memoised across runs and kept on disk
(``--cache-dir``, default ``data.text_cache_dir``).

Examples:

    python -m purchase_intent.compare --data online_shoppers --ablations
    python -m purchase_intent.compare --preset tiny --data synthetic --epochs 2
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from purchase_intent import cli
from purchase_intent.baselines import GRIDS, ONE_POINT, PEERS, SEQUENCE_PEER, TFIDF_PEER, fit_peers, peer_names
from purchase_intent.schema import FeatureSchema, SchemaError
from purchase_intent.targeting import bootstrap_auc

logger = logging.getLogger("purchase_intent.compare")

FUSION = "purchase_intent"
SUBSETS: dict[str, list[str]] = {
    "text": ["text"], "sequence": ["sequence"], "numeric": ["numeric"],
    "text+sequence": ["text", "sequence"], "text+numeric": ["text", "numeric"],
    "sequence+numeric": ["sequence", "numeric"], "all": ["text", "sequence", "numeric"],
}


# -- fusion model --------------------------------------------------------
_ENCODERS: dict[str, Any] = {}  # text-encoder spec -> (tokenizer, backbone), frozen ones only


def _frozen_encoder(cfg, schema: FeatureSchema, train_df: pd.DataFrame):
    """The frozen text encoder of ``cfg``, loaded once per process (not ``tiny``: its vocabulary is the data's)."""
    from purchase_intent.task import load_encoder

    spec = cfg.model.text_encoder
    if spec == "tiny":
        return load_encoder(cfg, schema, train_df)
    if spec not in _ENCODERS:
        _ENCODERS[spec] = load_encoder(cfg, schema, train_df)
    return _ENCODERS[spec]


def fusion_task(cfg, schema: FeatureSchema, splits: dict[str, pd.DataFrame], *, text_cache: bool = True,
                cache_dir: str | None = None):
    """The :class:`~purchase_intent.task.PurchaseIntentTask` of one run, built (one member).

    With a frozen text encoder and ``text_cache``, the scalar-text backbone is a
    :class:`~purchase_intent.blocks.CachedTextEncoder` over the distinct texts
    of all splits (inputs only: a frozen encoder is a fixed function of the
    text), the encoder is loaded once per process and the embeddings are
    reused across runs (:func:`purchase_intent.text.cached_text_embeddings`; on
    disk in ``cache_dir``, default ``data.text_cache_dir``).
    """
    from purchase_intent.task import PurchaseIntentTask

    frozen = cfg.model.text_frozen() and bool(schema.text or schema.event_text)
    encoder = _frozen_encoder(cfg, schema, splits["train"]) if frozen and text_cache else None
    return PurchaseIntentTask(cfg, splits, schema, members=1, text_cache=text_cache, cache_dir=cache_dir,
                              encoder=encoder)


def fit_fusion(cfg, schema: FeatureSchema, splits: dict[str, pd.DataFrame], *, seeds: int = 1,
               text_cache: bool = True, cache_dir: str | None = None) -> dict[str, Any]:
    """Trains the fusion model as ``train`` does (:class:`purchase_intent.task.PurchaseIntentTask`,
    output stage included, no files) and predicts validation and test.

    With ``seeds > 1``, trains that many models (seeds ``train.seed + i``) and
    averages their probabilities.

    Returns:
        ``{"val": probs, "test": probs, "epochs": [best epoch per seed], "seconds": float}``.
        Built and trained under the dtype policy of ``train.mixed_precision``.
    """
    from purchase_intent.task import dtype_policy

    with dtype_policy(cfg.train.mixed_precision):
        return _fit_fusion(cfg, schema, splits, seeds=seeds, text_cache=text_cache, cache_dir=cache_dir)


def _fit_fusion(cfg, schema, splits, *, seeds, text_cache, cache_dir):
    import copy

    import keras

    t0 = time.perf_counter()
    p_val, p_test, best_epochs = [], [], []
    for i in range(seeds):
        seed_cfg = copy.deepcopy(cfg)
        seed_cfg.train.seed = cfg.train.seed + i
        keras.utils.set_random_seed(seed_cfg.train.seed)
        fusion = fusion_task(seed_cfg, schema, splits, text_cache=text_cache, cache_dir=cache_dir)
        val_auc = fusion.fit()[0].get("val_auc", [0.0])
        best_epochs.append(int(np.argmax(val_auc)) + 1)
        logger.info("Fusion seed %d: best epoch %d of %d, val ROC-AUC %.4f", seed_cfg.train.seed,
                    best_epochs[-1], len(val_auc), max(val_auc))
        fusion.fit_output()  # the product's output stage: trees + stacking, or Platt
        p_val.append(fusion.predict("validation"))
        p_test.append(fusion.predict("test"))
        keras.backend.clear_session()
    return {"val": np.mean(p_val, axis=0), "test": np.mean(p_test, axis=0), "epochs": best_epochs,
            "val_per_seed": p_val, "seconds": time.perf_counter() - t0}


# -- one comparison ------------------------------------------------------
def compare(cfg, schema: FeatureSchema, splits: dict[str, pd.DataFrame], *, seeds: int = 1,
            peers: list[str] | None = None, bootstrap: int = 1000, text_cache: bool = True,
            cache_dir: str | None = None) -> dict[str, Any]:
    """The fusion model and the tuned peers on one schema (a modality subset or all).

    Returns:
        ``{"features": schema.to_dict(), "results": {model: metrics}, "bootstrap": ...,
        "best_peer": name, "fusion": {...}, "peers": {name: {"params", "seconds"}}}``; each
        metrics dict is ``evaluate.binary_metrics`` at the validation-chosen threshold
        plus ``val_roc_auc`` and ``roc_auc_ci95``.
    """
    from purchase_intent import evaluate

    splits = {k: df[schema.feature_names + [schema.label]] for k, df in splits.items()}
    fusion = fit_fusion(cfg, schema, splits, seeds=seeds, text_cache=text_cache, cache_dir=cache_dir)
    fitted = fit_peers(schema, splits, seed=cfg.train.seed, names=peers,
                       grids=ONE_POINT if cfg.train.peer_grid == "one" else GRIDS)
    p_val = {FUSION: fusion["val"], **{k: v["val"] for k, v in fitted.items()}}
    p_test = {FUSION: fusion["test"], **{k: v["test"] for k, v in fitted.items()}}
    y_val = splits["validation"][schema.label].to_numpy()
    y_test = splits["test"][schema.label].to_numpy()
    results = evaluate.evaluate_all(y_val, p_val, y_test, p_test)
    # The best peer is chosen on validation, like everything else.
    best_peer = max(fitted, key=lambda k: results[k]["val_roc_auc"]) if fitted else None
    best_named = max((k for k in fitted if k in PEERS), key=lambda k: results[k]["val_roc_auc"], default=None)
    pairs = sorted({(FUSION, k) for k in (best_peer, best_named) if k})
    boot = bootstrap_auc(y_test, p_test, n=bootstrap, seed=cfg.train.seed, pairs=pairs)
    for k in results:
        results[k]["roc_auc_ci95"] = boot["models"][k]
    return {
        "features": {k: v for k, v in schema.to_dict().items() if v and k != "sequence_delimiter"},
        "results": results, "bootstrap": boot, "best_peer": best_peer, "best_named_peer": best_named,
        "fusion": {"best_epochs": fusion["epochs"], "seeds": seeds, "seconds": fusion["seconds"]},
        "peers": {k: {"params": v["params"], "grid": v["grid"], "seconds": v["seconds"]}
                  for k, v in fitted.items()},
    }


def modality_subsets(schema: FeatureSchema, names: list[str] | None = None
                     ) -> tuple[dict[str, FeatureSchema], dict[str, str]]:
    """The distinct modality subsets of ``schema``; and why the others are skipped.

    ``all`` is every modality the dataset has. Another subset is skipped when
    it lists a modality the dataset does not have,
    when it keeps no feature (per-event text needs the sequence), or when it
    keeps the same features as ``all`` or as a subset already listed.
    """
    run, skipped, seen = {}, {}, {}
    have = set(schema.modalities)
    all_key = tuple(sorted(schema.feature_names))
    for name in names or list(SUBSETS):
        mods = [m for m in SUBSETS[name] if m in have] if name == "all" else SUBSETS[name]
        missing = [m for m in mods if m not in have]
        if missing:
            skipped[name] = f"the dataset has no {' or '.join(missing)} features"
            continue
        try:
            sub = schema.subset(mods)
        except SchemaError:
            skipped[name] = "no features left (per-event text is only used with the sequence)"
            continue
        key = tuple(sorted(sub.feature_names))
        if key == all_key and name != "all":
            skipped[name] = "same features as 'all' (the dataset has no other modality)"
            continue
        if key in seen:
            skipped[name] = f"same features as {seen[key]!r}"
            continue
        seen[key] = name
        run[name] = sub
    return run, skipped


def format_markdown(results: dict[str, dict[str, float]], best_peer: str | None = None) -> str:
    """A markdown table: one row per model, test metrics (log loss and ECE for calibration), bootstrap CI."""
    lines = ["| model | ROC-AUC | 95 % CI | PR-AUC | log loss | ECE | F1 | threshold | val ROC-AUC |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in results.items():
        lo, hi = m["roc_auc_ci95"]
        label = f"**{name}**" if name == FUSION else (f"{name} (best peer on val)" if name == best_peer else name)
        lines.append(f"| {label} | {m['roc_auc']:.4f} | {lo:.4f}-{hi:.4f} | {m['pr_auc']:.4f} | "
                     f"{m['log_loss']:.4f} | {m['ece']:.4f} | {m['f1']:.4f} | {m['threshold']:.3f} | {m['val_roc_auc']:.4f} |")
    return "\n".join(lines)


# -- command line --------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m purchase_intent.compare",
                                description="Fusion model vs tuned peers on one split, with ablations.",
                                epilog="Every config key, its default and meaning: --help-config.",
                                formatter_class=cli.HelpFormatter)
    p.add_argument("--data", default=None,
                   help="online_retail, online_shoppers, womens_reviews, synthetic, or a table path")
    p.add_argument("--preset", default="default", help="named configuration: default or tiny")
    p.add_argument("--config", default=None, help="JSON/YAML file of config sections")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value (repeatable; every key: --help-config)")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs of the fusion model")
    p.add_argument("--seeds", type=int, default=1, help="fusion models averaged (seeds train.seed + i)")
    p.add_argument("--ablations", action="store_true", help="also compare on each modality subset")
    p.add_argument("--subsets", default="", help="comma-separated subsets to run (default: all of them)")
    p.add_argument("--peers", default="", help=f"comma-separated peers (default: {', '.join(PEERS)}, "
                                               f"{TFIDF_PEER} when there is text and {SEQUENCE_PEER} "
                                               f"when there are event sequences)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the test set")
    p.add_argument("--no-text-cache", action="store_true",
                   help="run the frozen text encoder inside the model instead of a lookup of its outputs")
    p.add_argument("--cache-dir", default=None,
                   help="directory for text embeddings reused across runs (default: data.text_cache_dir; "
                        "'' for none)")
    p.add_argument("--output-dir", default=None, help="where compare.json goes (default runs/compare-<data>-<time>)")
    cli.add_config_flags(p)
    cli.add_common_flags(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the comparison; returns the dict written to ``compare.json``."""
    args = parse_args(argv)
    cli.setup_logging()
    from purchase_intent.config import get_config
    from purchase_intent.data import load_splits

    cfg = get_config(args.preset, args.config, cli.config_overrides(args))
    out_dir = Path(args.output_dir or Path("runs") / f"compare-{Path(cfg.data.name).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    logger.info("Resolved config: %s", json.dumps(cfg.to_dict()))
    t0 = time.perf_counter()
    schema, splits = load_splits(cfg.data, seed=cfg.train.seed)
    out_dir.mkdir(parents=True, exist_ok=True)  # after the data loaded: no empty folder on bad input
    peers = [p.strip() for p in args.peers.split(",") if p.strip()] or None
    names = [s.strip() for s in args.subsets.split(",") if s.strip()] or None
    if args.ablations or names:
        subsets, skipped = modality_subsets(schema, names)
    else:
        subsets, skipped = {"all": schema}, {}
    for name, why in skipped.items():
        logger.info("Subset %s skipped: %s", name, why)
    report: dict[str, Any] = {
        "data": cfg.data.name, "argv": list(sys.argv[1:] if argv is None else argv),
        "config": cfg.to_dict(), "seeds": args.seeds,
        "splits": {k: {"examples": len(v), "positive_rate": float(v[schema.label].mean())}
                   for k, v in splits.items()},
        "subsets": {}, "skipped_subsets": skipped,
    }
    for name, sub in subsets.items():
        logger.info("Subset %s: %s", name, sub.feature_names)
        sub_peers = peer_names(sub, peers)
        report["subsets"][name] = compare(cfg, sub, splits, seeds=args.seeds, peers=sub_peers,
                                          bootstrap=args.bootstrap, text_cache=not args.no_text_cache,
                                          cache_dir=args.cache_dir)
        r = report["subsets"][name]
        print(f"\n{cfg.data.name}, features: {name} (test split; F1 threshold chosen on validation)\n"
              f"{format_markdown(r['results'], r['best_peer'])}\n", flush=True)
        (out_dir / "compare.json").write_text(json.dumps(report, indent=2, default=float))
    report["seconds"] = time.perf_counter() - t0
    (out_dir / "compare.json").write_text(json.dumps(report, indent=2, default=float))
    print(f"Wrote {out_dir / 'compare.json'}", flush=True)
    return report


if __name__ == "__main__":
    sys.exit(cli.run(main))
