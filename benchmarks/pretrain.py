"""Behaviour pretraining (next-item prediction) on a dataset's training sequences.

    .venv/bin/python benchmarks/pretrain.py [--data online_retail] [--preset default]
        [--epochs 3] [--objective auto] [--sequences-only] [--set model.lstm_units=32 ...]

Loads the splits (``purchase_intent.data.load_splits``), adapts the preprocessor
on the training split as ``task.build`` does, builds the per-event text tables
(the configured text encoder; skipped with ``--sequences-only``, which drops the
per-event text columns), then runs :func:`purchase_intent.pretrain.pretrain_behaviour`
on the training split's sequences only (10 % of them held back) and prints JSON:
training and held-out loss per epoch, held-out recall@10 beside the popularity
baseline's, pair counts and seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def event_text_tables(cfg, schema, preprocessor, train_df):
    """The frozen per-event text tables, built as ``purchase_intent.task.build`` builds them."""
    import numpy as np

    from purchase_intent.text import encode_texts, load_text_encoder

    if not schema.event_text:
        return {}
    texts = [t for n in schema.event_text for seq in train_df[n] for t in seq]
    tokenizer, backbone = load_text_encoder(
        cfg.model.text_encoder, texts=texts, tiny_vocab_size=cfg.model.tiny_vocab_size,
        tiny_hidden_dim=cfg.model.tiny_hidden_dim, tiny_num_layers=cfg.model.tiny_num_layers,
        max_sequence_length=max(cfg.data.text_sequence_length, cfg.data.event_text_sequence_length))
    tables = {}
    for name in schema.event_text:
        vocab = preprocessor.vocabularies[name]
        table = np.zeros((preprocessor.vocabulary_size(name), backbone.hidden_dim), np.float32)
        table[2:] = encode_texts(tokenizer, backbone, vocab, cfg.data.event_text_sequence_length,
                                 progress=False)
        tables[name] = table
    return tables


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="online_retail")
    p.add_argument("--preset", default="default")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--learning-rate", type=float, default=None,
                   help="default: pretrain_behaviour's default")
    p.add_argument("--objective", default="auto", choices=["auto", "full", "sampled", "in_batch"])
    p.add_argument("--targets-per-sequence", type=int, default=2)
    p.add_argument("--holdout-fraction", type=float, default=0.1)
    p.add_argument("--sequences-only", action="store_true",
                   help="drop the per-event text columns (no text encoder needed)")
    p.add_argument("--seed", type=int, default=0)
    from purchase_intent.cli import add_config_flags

    add_config_flags(p)  # --help-config: every --set key
    args = p.parse_args(argv)

    from purchase_intent.config import get_config
    from purchase_intent.data import load_splits
    from purchase_intent.pretrain import pretrain_behaviour
    from purchase_intent.task import adapt_preprocessor

    cfg = get_config(args.preset, overrides=[f"data.name={args.data}", *args.overrides])
    t0 = time.perf_counter()
    schema, splits = load_splits(cfg.data, seed=cfg.train.seed)
    if args.sequences_only:
        schema = schema.subset([m for m in ("sequence", "numeric") if m in schema.modalities])
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    preprocessor = adapt_preprocessor(cfg, schema, splits)
    tables = event_text_tables(cfg, schema, preprocessor, splits["train"])
    setup_s = time.perf_counter() - t0
    train_seqs = splits["train"][schema.sequence_like]
    kwargs = {} if args.learning_rate is None else {"learning_rate": args.learning_rate}
    cpu0 = time.process_time()
    result = pretrain_behaviour(cfg.model, preprocessor, train_seqs, event_text_tables=tables,
                                epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                                holdout_fraction=args.holdout_fraction, objective=args.objective,
                                targets_per_sequence=args.targets_per_sequence, **kwargs)
    cpu_s = time.process_time() - cpu0
    lengths = train_seqs[schema.sequence_like[0]].map(len)
    out = {
        "data": args.data, "preset": args.preset, "overrides": args.overrides,
        "sequence_columns": schema.sequence_like,
        "sequence_encoder": cfg.model.sequence_encoder,
        "max_sequence_length": cfg.data.max_sequence_length,
        "train_sequences_total": int(len(train_seqs)),
        "mean_events": float(lengths.mean()),
        **{k: v for k, v in result.summary().items() if k != "seconds"},
        "seconds": {"load": load_s, "preprocessor_and_text_tables": setup_s,
                    "pretraining": result.seconds,
                    # CPU time of the process during pretraining (all threads): on a
                    # shared machine, compare this rather than wall time.
                    "pretraining_cpu": cpu_s,
                    "per_epoch": result.history["seconds"]},
    }
    print(json.dumps(out, indent=2, default=float))
    return out


if __name__ == "__main__":
    main()
