"""In-process latency of the exported default model vs the bare MiniLM text encoder.

    .venv/bin/python benchmarks/serving_ratio.py                      # exports an untrained default model
    .venv/bin/python benchmarks/serving_ratio.py --export runs/<run>/export/purchase_intent/<version>

The fusion side is the SavedModel's ``serving_default`` (raw features in:
WordPiece-free lookups of the per-event texts into the precomputed MiniLM table,
StringLookups, normalisation, LSTM + CNN, MLP), called on test customers of the
Online Retail task with their 50 most recent events, as the gRPC client sends them.
Latency does not depend on the weights, so without ``--export`` the script builds
the default model as ``train.main`` does (MiniLM table included) and exports it
untrained to a temporary folder.

The encoder side is the bare ``BertBackbone`` of ``load_text_encoder("minilm")``
encoding one per-event text per customer (the most recent item description),
packed to 16 tokens (``data.event_text_sequence_length``), token ids prepared
beforehand (tokenisation not timed, which favours the encoder); the same with
tokenisation is printed too. Calls alternate fusion / encoder, medians of many
calls at batch 1, 64 and 512; ratio = fusion / encoder (target <= 1.5x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CALLS = {1: 60, 64: 30, 512: 10}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--export", default=None, help="a SavedModel version folder of the default model")
    p.add_argument("--calls", type=float, default=1.0, help="multiply the number of timed calls")
    args = p.parse_args(argv)

    import tensorflow as tf

    from purchase_intent.config import get_config
    from purchase_intent.data import load_splits
    from purchase_intent.export import export_model, load_serving_fn
    from purchase_intent.preprocessing import raw_batch
    from purchase_intent.text import load_text_encoder, make_packer

    cfg = get_config("default")
    if args.export:
        schema, splits = load_splits(cfg.data, seed=cfg.train.seed)
        version_dir = Path(args.export)
    else:
        from pipeline import setup  # benchmarks/pipeline.py

        cfg, schema, splits, preprocessor, model, _, _ = setup()
        tmp = Path(tempfile.mkdtemp(prefix="serving_ratio-"))
        version_dir = export_model(model, preprocessor, tmp, version=1)
        del model
    serve = load_serving_fn(version_dir)
    print(f"SavedModel: {version_dir}")

    test = splits["test"].copy()
    width = cfg.data.events_kept()
    for name in schema.sequence_like:
        test[name] = [list(v)[-width:] for v in test[name]]
    event_text = schema.event_text[0]
    last_texts = [v[-1] if len(v) else "" for v in test[event_text]]

    tokenizer, backbone = load_text_encoder("minilm")
    packer = make_packer(tokenizer, cfg.data.event_text_sequence_length)

    @tf.function(reduce_retracing=True)
    def encode_ids(ids, mask):
        out = backbone({"token_ids": ids, "segment_ids": tf.zeros_like(ids), "padding_mask": mask},
                       training=False)
        return out["sequence_output"]

    @tf.function(reduce_retracing=True)
    def encode_text(texts):
        ids, mask = packer(tokenizer(texts))
        return encode_ids(ids, mask)

    print(f"{'batch':>6}{'fusion ms':>12}{'encoder ms':>12}{'ratio':>8}{'enc+tok ms':>12}{'ratio':>8}"
          f"{'fusion us/ex':>14}{'encoder us/ex':>15}")
    for batch in CALLS:
        rows = test.head(batch)
        raw = raw_batch(rows, schema)
        texts = tf.constant(last_texts[:batch])
        ids, mask = packer(tokenizer(texts))
        fns = {"fusion": lambda: serve(**raw), "encoder": lambda: encode_ids(ids, mask),
               "enc+tok": lambda: encode_text(texts)}
        for fn in fns.values():  # trace and warm up
            for _ in range(3):
                fn()
        times = {k: [] for k in fns}
        for _ in range(max(int(CALLS[batch] * args.calls), 3)):
            for k, fn in fns.items():
                t0 = time.perf_counter()
                out = fn()
                tf.nest.map_structure(lambda t: t.numpy(), out)
                times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        print(f"{batch:>6}{med['fusion']:>12.2f}{med['encoder']:>12.2f}"
              f"{med['fusion'] / med['encoder']:>7.2f}x{med['enc+tok']:>12.2f}"
              f"{med['fusion'] / med['enc+tok']:>7.2f}x{med['fusion'] * 1e3 / batch:>14.1f}"
              f"{med['encoder'] * 1e3 / batch:>15.1f}")
    print("ratio = fusion / encoder (target <= 1.5x); fusion = the whole exported model on raw features "
          f"({width} events per customer), encoder = MiniLM on one 16-token text per customer")


if __name__ == "__main__":
    main()
