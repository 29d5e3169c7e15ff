"""Training throughput with a scalar text column: no text vs a frozen encoder whose texts are encoded once.

    .venv/bin/python benchmarks/text_speed.py [--examples 3000] [--epochs 3] [--json]

In one process, on synthetic sessions (``purchase_intent.data.synthetic``: a
scalar ``query`` text column beside behaviour sequences, per-event titles,
numeric and categorical features), default model configuration, encoder
``minilm`` if it loads offline, else ``tiny`` (the output says which):

* ``no_text``: the model without the ``query`` column;
* ``frozen_text``: the model ``python -m purchase_intent.train`` fits with a frozen
  encoder (``model.text_trainable_layers=0``): each distinct query of all splits
  encoded once (``frozen_text_encode_s``, no disk cache), then a lookup of the
  embeddings in every step (:class:`purchase_intent.blocks.CachedTextEncoder`);
* ``prepared_frozen_text``: the same model and table, prepared into TFRecord shards
  first (``python -m purchase_intent.prepare`` with the splits as ``data.split_column``,
  default options) and trained as ``train --data <prepared dir>`` does: the training
  split streamed from the shards, the frozen encoder's texts read from them and
  looked up in the same cache (the encodings above are reused: no text encoded twice);
  target: at least 80 % of ``frozen_text``'s rate;
* ``frozen_text_live`` (for reference, a few batches only): the encoder run in
  every training step, as before;
* ``lora`` (a few batches only, like the live reference): ``model.text_lora_rank=--lora-rank``,
  the encoder (a second copy, with adapters) run forward and backward in every step, since
  its output changes as the adapters train: nothing can be cached.

The fits alternate one epoch of each variant, so load from other processes
hits them alike; the first (tracing, cache-filling) epoch is not timed; medians
of ``--epochs`` epochs, training part only (no validation). The issue's target:
frozen text at least 50 % of the no-text rate. ``--json`` prints one JSON
object on stdout (logs go to stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_RATIO = 0.5
TARGET_PREPARED_RATIO = 0.8  # frozen text from shards vs in memory


def load_encoder(cfg, schema, train_df):
    """``(spec, note, (tokenizer, backbone))``: ``model.text_encoder`` (minilm), or tiny if minilm does not load."""
    from purchase_intent import task
    from purchase_intent.text import TextEncoderError

    spec = cfg.model.text_encoder
    try:
        return spec, f"{spec}, loaded offline", task.load_encoder(cfg, schema, train_df)
    except TextEncoderError as e:
        if spec != "minilm":
            raise
        cfg.model.text_encoder = "tiny"
        return "tiny", f"tiny random BERT: minilm did not load ({e})", task.load_encoder(cfg, schema, train_df)


def prepare_table(splits, schema, overrides, root: Path):
    """The splits written as one Parquet table with a split column, prepared into shards under ``root``."""
    import pandas as pd

    from purchase_intent import prepare
    from purchase_intent.data.prepared import Prepared

    table = pd.concat([df.assign(split=name) for name, df in splits.items()], ignore_index=True)
    table.to_parquet(root / "table.parquet")
    schema.save(root / "schema.json")
    prepare.main(["--input", str(root / "table.parquet"), "--schema", str(root / "schema.json"),
                  "--output", str(root / "prepared"), *[a for o in overrides for a in ("--set", o)],
                  "--set", "data.split_column=split"])
    return Prepared.load(root / "prepared")


def epoch_seconds(model, ds, steps: int | None = None) -> float:
    """Seconds of one training epoch of ``model`` over ``ds`` (or its first ``steps`` batches)."""
    t0 = time.perf_counter()
    model.fit(ds if steps is None else ds.take(steps), epochs=1, verbose=0)
    return time.perf_counter() - t0


def cached_vs_live(cfg, splits, encoder, n: int = 64) -> float:
    """Max |cached - live| pooled embedding over ``n`` queries: lookup table vs the backbone in the model."""
    import numpy as np
    import tensorflow as tf

    from purchase_intent.blocks import MaskedMeanPool
    from purchase_intent.text import cached_text_embeddings, make_packer

    tokenizer, backbone = encoder
    texts = list(dict.fromkeys(splits["test"]["query"]))[:n]
    cached = cached_text_embeddings(tokenizer, backbone, texts, cfg.data.text_sequence_length,
                                    spec=cfg.model.text_encoder, progress=False)
    ids, mask = make_packer(tokenizer, cfg.data.text_sequence_length)(tokenizer(tf.constant(texts)))
    ids, mask = tf.cast(ids, tf.int32), tf.cast(mask, tf.int32)
    out = backbone({"token_ids": ids, "segment_ids": tf.zeros_like(ids), "padding_mask": mask})
    live = MaskedMeanPool()(out["sequence_output"], mask).numpy()
    return float(np.max(np.abs(cached - live)))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--examples", type=int, default=3000, help="synthetic sessions (train is 70 %%)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per variant, after the first")
    p.add_argument("--live-steps", type=int, default=3,
                   help="batches per timed pass of the live-encoder reference (0: skip it)")
    p.add_argument("--lora-steps", type=int, default=3,
                   help="batches per timed pass of the LoRA variant (0: skip it)")
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true", help="print one JSON object only")
    from purchase_intent.cli import add_config_flags

    add_config_flags(p)  # --help-config: every --set key
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import keras

    from purchase_intent import task, text
    from purchase_intent.config import get_config
    from purchase_intent.data.source import FrameSplits, PreparedSplits

    from purchase_intent.data import load_splits
    from purchase_intent.schema import FeatureSchema

    t_start = time.perf_counter()
    cfg_overrides = ["data.name=synthetic", f"data.synthetic_examples={args.examples}",
                     "model.text_trainable_layers=0", *args.overrides]
    cfg = get_config("default", overrides=cfg_overrides)
    keras.utils.set_random_seed(cfg.train.seed)
    schema, splits = load_splits(cfg.data, seed=cfg.train.seed)
    assert schema.text == ["query"], schema
    spec, note, encoder = load_encoder(cfg, schema, splits["train"])
    no_text_schema = FeatureSchema.from_dict({**schema.to_dict(), "text": []})

    # The one-off encoding: every distinct query of every split, nothing cached yet.
    distinct = sorted({t for df in splits.values() for t in df["query"]})
    text._MEMO.clear()
    t0 = time.perf_counter()
    text.cached_text_embeddings(*encoder, distinct, cfg.data.text_sequence_length, spec=spec, cache_dir="",
                                what="queries")
    encode_s = time.perf_counter() - t0

    def fitted_variant(variant_schema, text_cache, variant_cfg=cfg, variant_encoder=encoder, prepared=None):
        """As ``train`` builds it: from the frames, or (``prepared``) the training split streamed from shards."""
        keras.utils.set_random_seed(cfg.train.seed)
        data = PreparedSplits(prepared) if prepared else FrameSplits(splits, variant_schema)
        t = task.PurchaseIntentTask(variant_cfg, data, members=1, text_cache=text_cache, cache_dir="",
                                    encoder=variant_encoder)
        ds, _ = task.datasets(t.cfg, t.schema, t.preprocessor, t.data, seed=cfg.train.seed)  # no class weights
        return t.members[0], ds

    def steps_rate(model, ds, steps):
        """Examples/s of ``steps`` training batches (median of 2 passes, after one tracing batch)."""
        epoch_seconds(model, ds, 1)
        return steps * cfg.data.batch_size / statistics.median([epoch_seconds(model, ds, steps) for _ in range(2)])

    # The same table prepared into shards (removed at the end), the training split streamed from them.
    tmp = tempfile.TemporaryDirectory(prefix="text_speed_")
    t0 = time.perf_counter()
    prepared = prepare_table(splits, schema, cfg_overrides, Path(tmp.name))
    prepare_s = time.perf_counter() - t0
    variants = {"no_text": fitted_variant(no_text_schema, True), "frozen_text": fitted_variant(schema, True)}
    encode_calls = []  # texts the encoder runs on while the prepared variant is built: none, all cached
    encode = text.encode_texts
    text.encode_texts = lambda *a, **k: encode_calls.append(len(a[2])) or encode(*a, **k)
    try:
        variants["prepared_frozen_text"] = fitted_variant(schema, True, prepared=prepared)
    finally:
        text.encode_texts = encode
    n = len(splits["train"])
    assert prepared.examples("train") == n, (prepared.examples("train"), n)
    times = {k: [] for k in variants}
    for epoch in range(args.epochs + 1):
        for name, (model, ds) in variants.items():
            seconds = epoch_seconds(model, ds)
            if epoch:
                times[name].append(seconds)
            logging.info("%s epoch %d: %.2f s", name, epoch, seconds)
    rate = {k: n / statistics.median(v) for k, v in times.items()}
    del variants
    tmp.cleanup()

    live_rate = None
    if args.live_steps > 0:  # the encoder in every step: a few batches, it is slow
        live_rate = steps_rate(*fitted_variant(schema, False), args.live_steps)

    lora_rate = None
    if args.lora_steps > 0:  # the adapted encoder forward and backward in every step: a few batches
        lora_cfg = get_config("default", overrides=[*cfg_overrides, f"model.text_lora_rank={args.lora_rank}"])
        lora_cfg.model.text_encoder = spec
        lora_encoder = task.load_encoder(lora_cfg, schema, splits["train"])  # its own copy: adapters added
        lora_rate = steps_rate(*fitted_variant(schema, True, lora_cfg, lora_encoder), args.lora_steps)

    ratio = rate["frozen_text"] / rate["no_text"]
    prepared_ratio = rate["prepared_frozen_text"] / rate["frozen_text"]
    result = {
        "encoder": spec, "encoder_note": note, "train_examples": n, "batch_size": cfg.data.batch_size,
        "text_sequence_length": cfg.data.text_sequence_length, "distinct_texts": len(distinct),
        "timed_epochs": args.epochs,
        "no_text_ex_per_s": round(rate["no_text"], 1),
        "frozen_text_ex_per_s": round(rate["frozen_text"], 1),
        "frozen_text_encode_s": round(encode_s, 2),
        "prepared_frozen_text_ex_per_s": round(rate["prepared_frozen_text"], 1),
        "prepared_vs_frozen_text": round(prepared_ratio, 3),
        "target_prepared_vs_frozen_text": TARGET_PREPARED_RATIO,
        "prepared_target_met": bool(prepared_ratio >= TARGET_PREPARED_RATIO),
        "prepared_shards": len(prepared.shards("train")), "prepare_s": round(prepare_s, 2),
        # Texts the encoder ran on while the prepared variant was built, after the in-memory ones:
        # 0 means the shards' texts (queries and event titles) were all found in the cache.
        "prepared_texts_encoded": sum(encode_calls),
        "frozen_text_live_ex_per_s": None if live_rate is None else round(live_rate, 1),
        "frozen_vs_no_text": round(ratio, 3), "target_frozen_vs_no_text": TARGET_RATIO,
        "target_met": bool(ratio >= TARGET_RATIO),
        "cached_vs_live_embedding_max_abs_diff": cached_vs_live(cfg, splits, encoder),
        "lora_ex_per_s": None if lora_rate is None else round(lora_rate, 1), "lora_rank": args.lora_rank,
        "lora_vs_frozen_text": None if lora_rate is None else round(lora_rate / rate["frozen_text"], 4),
        "epoch_seconds": {k: [round(s, 3) for s in v] for k, v in times.items()},
        "seconds": round(time.perf_counter() - t_start, 1),
        "command": "benchmarks/text_speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    if args.json:
        print(json.dumps(result), flush=True)
    else:
        print(f"Encoder {spec} ({note}); {n} training examples, batch {cfg.data.batch_size}, "
              f"{len(distinct)} distinct queries")
        for key in ("no_text_ex_per_s", "frozen_text_ex_per_s", "frozen_text_encode_s",
                    "prepared_frozen_text_ex_per_s", "prepared_vs_frozen_text", "prepared_target_met",
                    "prepared_texts_encoded", "frozen_text_live_ex_per_s", "frozen_vs_no_text", "target_met",
                    "cached_vs_live_embedding_max_abs_diff", "lora_ex_per_s", "lora_vs_frozen_text"):
            print(f"{key:<40}{result[key]}")
    return result


if __name__ == "__main__":
    main()
