"""Text fine-tuning on real reviews: frozen encoder vs top-2 layers vs LoRA, test ROC-AUC and time per epoch.

    PURCHASE_INTENT_DATA=/work/shared/data .venv/bin/python benchmarks/text_finetune.py \\
        [--examples 2858] [--epochs 2] [--text review_text] [--lora-rank 8] [--set key=value ...]

On a seeded sample of the women's clothing reviews (``data.name=womens_reviews``,
``data.max_examples=--examples``, the dataset's fixed stratified 70/15/15 split,
so every variant sees the same training, validation and test reviews), the
default fusion model with the ``--text`` column(s) as scalar text (default:
``review_text`` only: each text column is one encoder pass per example and
step, the title would double the cost) plus the numeric and categorical
features, MiniLM, 64 tokens, batch 32 (63 steps per epoch on 2,000 reviews), is fitted as in ``python -m purchase_intent.train`` (early
stopping on validation ROC-AUC, best epoch restored, at most ``--epochs``
epochs, no calibration: a monotone map leaves ROC-AUC unchanged) in four
variants, one after the other:

* ``no_text``: without the text column (what the text adds);
* ``frozen``: ``model.text_trainable_layers=0``, each distinct text encoded once
  (``setup_s``: that encoding, no disk cache) and looked up in training;
* ``top2``: ``model.text_trainable_layers=2``: the encoder's top 2 layers train;
* ``lora``: ``model.text_lora_rank=--lora-rank``: LoRA adapters on every
  attention layer's query and value projections train, the encoder's own
  weights stay frozen;
* ``frozen_long`` (not by default): ``frozen`` with ``--long-epochs`` as its cap
  (default 15, the default ``train.epochs``): what the cheap frozen path
  reaches when it is not held to the cap of the slow ones.

Per variant: test and best validation ROC-AUC of the model that is exported
(the real encoder in the graph), trainable parameters, epochs run, seconds of
the training part of each epoch (validation excluded) and examples per second
(median over the epochs after the first, which includes tracing, if there are any).
Prints one JSON object on stdout (logs on stderr). The times depend on the
machine's load: say so when quoting them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = ("no_text", "frozen", "top2", "lora", "frozen_long")
DEFAULT_VARIANTS = "no_text,frozen,top2,lora"


def variant_overrides(name: str, lora_rank: int, long_epochs: int) -> list[str]:
    """The config overrides of one variant (``no_text`` differs by its schema, not its config)."""
    return {"no_text": [], "frozen": ["model.text_trainable_layers=0"],
            "top2": ["model.text_trainable_layers=2"],
            "lora": ["model.text_trainable_layers=0", f"model.text_lora_rank={lora_rank}"],
            "frozen_long": ["model.text_trainable_layers=0", f"train.epochs={long_epochs}"]}[name]


def fit_variant(cfg, schema, splits) -> dict:
    """Builds, fits and evaluates one variant as ``train`` does (``train.mixed_precision`` too); its figures."""
    from purchase_intent import task

    with task.dtype_policy(cfg.train.mixed_precision):
        return _fit_variant(cfg, schema, splits)


def _fit_variant(cfg, schema, splits) -> dict:
    import keras
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from purchase_intent import task

    keras.utils.set_random_seed(cfg.train.seed)
    t0 = time.perf_counter()
    t = task.PurchaseIntentTask(cfg, splits, schema, members=1, text_cache=True, cache_dir="")
    setup_s = time.perf_counter() - t0
    trainable = sum(int(np.prod(w.shape)) for w in t.members[0].trainable_weights)
    timer = task.EpochTimer.make()
    t0 = time.perf_counter()
    (history,) = t.fit(lambda member: [timer])
    fit_s = time.perf_counter() - t0
    test = splits["test"]
    p = t.predict("test", model=t.exportable_model())  # the real encoder in the graph, no output stage
    epoch_s = statistics.median(timer.train_seconds[1:] or timer.train_seconds)  # the first one traces
    return {
        "test_roc_auc": round(float(roc_auc_score(test[schema.label], p)), 4),
        "best_val_roc_auc": round(max(history["val_auc"]), 4),
        "epochs_run": len(history["loss"]),
        "best_epoch": int(np.argmax(history["val_auc"])) + 1,
        "trainable_params": trainable,
        "setup_s": round(setup_s, 1),
        "epoch_seconds": [round(s, 1) for s in timer.train_seconds],
        "median_epoch_s": round(epoch_s, 1),
        "train_ex_per_s": round(len(splits["train"]) / epoch_s, 1),
        "fit_s": round(fit_s, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--examples", type=int, default=2858,
                   help="reviews sampled before the split (70 %% train: 2858 -> 2000 training reviews)")
    p.add_argument("--epochs", type=int, default=2, help="epochs cap of every variant")
    p.add_argument("--text", default="review_text", help="comma-separated scalar text columns")
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--long-epochs", type=int, default=15, help="epochs cap of frozen_long")
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated subset of {VARIANTS}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    from purchase_intent.cli import add_config_flags

    add_config_flags(p)  # --help-config: every --set key
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "tensorflow", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from purchase_intent.config import get_config
    from purchase_intent.data import load_splits
    from purchase_intent.schema import FeatureSchema

    t_start = time.perf_counter()
    base = ["data.name=womens_reviews", f"data.max_examples={args.examples}", "data.text_sequence_length=64",
            "data.batch_size=32", "model.text_encoder=minilm", f"train.epochs={args.epochs}", *args.overrides]
    cfg = get_config("default", overrides=base)
    schema, splits = load_splits(cfg.data, seed=cfg.train.seed)
    texts = [t for t in args.text.split(",") if t]
    with_text = FeatureSchema.from_dict({**schema.to_dict(), "text": texts})
    no_text = FeatureSchema.from_dict({**schema.to_dict(), "text": []})
    result = {
        "data": "womens_reviews", "text_columns": texts, "encoder": cfg.model.text_encoder,
        "text_sequence_length": cfg.data.text_sequence_length, "batch_size": cfg.data.batch_size,
        "learning_rate": cfg.train.learning_rate, "epochs_cap": args.epochs, "lora_rank": args.lora_rank,
        "examples": {k: len(v) for k, v in splits.items()},
        "test_positive_rate": round(float(splits["test"][schema.label].mean()), 3),
        "cpu_count": os.cpu_count(), "load_average_1min_at_start": round(os.getloadavg()[0], 2),
        "variants": {},
    }
    for name in [v for v in args.variants.split(",") if v]:
        vcfg = get_config("default", overrides=[*base, *variant_overrides(name, args.lora_rank, args.long_epochs)])
        logging.info("Variant %s", name)
        result["variants"][name] = fit_variant(vcfg, no_text if name == "no_text" else with_text, splits)
        logging.info("%s: %s", name, result["variants"][name])
    result["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    result["command"] = "benchmarks/text_finetune.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
