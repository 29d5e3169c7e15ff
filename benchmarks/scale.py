"""Memory and speed at scale: prepare, then one training epoch from shards and in memory.

    .venv/bin/python benchmarks/scale.py --examples 100000,500000 --json [--workdir DIR]

For each N, in a scratch directory (removed afterwards unless ``--keep``):

1. synthetic sessions with every modality (:func:`purchase_intent.data.synthetic.make_synthetic`),
   written straight to Parquet files of ``--file-rows`` rows, never all in memory;
2. ``python -m purchase_intent.prepare`` on them (a child process): peak RSS, rows/s;
3. one training epoch streamed from the shards (a child process): peak RSS, examples/s;
4. one training epoch of the same model in memory (a child process, the
   whole table as frames, ``make_dataset``; skipped above ``--memory-max``): peak RSS, examples/s;
5. with ``--evaluate``, the evaluation part of ``train --data <prepared dir>`` (a child process):
   the model's predictions of the whole test split streamed from its shards, its labels and ids
   (``read_columns``) and the baselines' bounded sample frames (``PreparedSplits.frames``): peak RSS,
   examples/s. The test split is ``data.test_fraction`` of N: ``--test-fraction 0.8`` (validation
   then 0.05) gives a test split of 0.8 N, e.g. ``--examples 1250000`` for 1M test examples.

Every child reports its own peak RSS (``ru_maxrss``). The model is the
``tiny`` preset's (tiny random text encoder, frozen here: both paths run the
same model, without the in-memory text cache), batch size ``--batch-size``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OVERRIDES = ["model.text_trainable_layers=0", "data.shuffle_buffer=10000"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def generate(directory: Path, n: int, file_rows: int) -> float:
    """Writes ``n`` synthetic sessions as Parquet files of ``file_rows`` rows; returns seconds."""
    from purchase_intent.data.synthetic import make_synthetic

    directory.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i, start in enumerate(range(0, n, file_rows)):
        make_synthetic(min(file_rows, n - start), seed=1000 + i).to_parquet(
            directory / f"part-{i:05d}.parquet", row_group_size=min(file_rows, 50_000))
    return time.perf_counter() - t0


def child(argv: list[str]) -> dict:
    """Runs this script in ``--child`` mode; returns the JSON it prints last."""
    out = subprocess.run([sys.executable, __file__, "--child", *argv], capture_output=True, text=True,
                         cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"child {argv} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_prepare(inputs: str, output: str, *overrides: str) -> dict:
    from purchase_intent import prepare
    from purchase_intent.data.synthetic import SCHEMA

    schema_file = Path(output).parent / "schema.json"
    SCHEMA.save(schema_file)
    t0 = time.perf_counter()
    manifest = prepare.main(["--input", inputs, "--schema", str(schema_file), "--output", output,
                             "--preset", "tiny", *[a for o in overrides for a in ("--set", o)]])
    seconds = time.perf_counter() - t0
    rows = sum(s["examples"] for s in manifest["splits"].values())
    return {"seconds": seconds, "rows_per_second": rows / seconds, "peak_rss_mb": peak_rss_mb(),
            "shards": sum(len(s["shards"]) for s in manifest["splits"].values()),
            "bytes": sum(x["bytes"] for s in manifest["splits"].values() for x in s["shards"])}


def run_epoch(source: str, mode: str, batch_size: int) -> dict:
    """One epoch of the tiny model, from a prepared directory (``mode="shards"``) or in memory."""
    import keras
    import pandas as pd

    from purchase_intent import task
    from purchase_intent.config import get_config
    from purchase_intent.data.prepared import Prepared
    from purchase_intent.data.source import PreparedSplits
    from purchase_intent.data.synthetic import SCHEMA
    from purchase_intent.pipeline import make_dataset, make_shard_dataset

    cfg = get_config("tiny", overrides=OVERRIDES + [f"data.batch_size={batch_size}"])
    keras.utils.set_random_seed(0)
    prepared = Prepared.load(source)
    t0 = time.perf_counter()
    if mode == "shards":
        t = task.PurchaseIntentTask(cfg, PreparedSplits(prepared), members=1, text_cache=False)
        # The training pipeline alone (task.datasets would also build, inside the timed setup, a validation one)
        ds = make_shard_dataset(prepared, "train", t.preprocessor, cfg.data, training=True)
        examples = prepared.examples("train")
    else:  # the same training split, whole, as a frame
        files = sorted(Path(prepared.manifest["inputs"][0]).parent.glob("*.parquet"))
        from purchase_intent.prepare import split_of

        frames = []
        for f in files:
            df = pd.read_parquet(f)
            df.index = pd.RangeIndex(len(df))
            frames.append(SCHEMA.validate(df[split_of(df, f, cfg.data, cfg.train.seed) == "train"]))
        train_df = pd.concat(frames, ignore_index=True)
        del frames
        t = task.PurchaseIntentTask(cfg, {"train": train_df}, SCHEMA, members=1, text_cache=False)
        # Not task.datasets: it also builds the validation pipeline, which this train-only frame dict lacks
        ds = make_dataset(train_df, SCHEMA, t.preprocessor, cfg.data, training=True)
        examples = len(train_df)
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = t.members[0]
    model.fit(ds, epochs=1, verbose=0)
    seconds = time.perf_counter() - t0
    return {"examples": examples, "setup_seconds": setup, "epoch_seconds": seconds,
            "examples_per_second": examples / seconds, "peak_rss_mb": peak_rss_mb(),
            "parameters": model.count_params()}


def run_evaluate(source: str, batch_size: int) -> dict:
    """The evaluation part of a run from shards: predict the test split, its labels and ids, the samples."""
    import keras

    from purchase_intent import task
    from purchase_intent.config import get_config
    from purchase_intent.data.prepared import Prepared, read_columns
    from purchase_intent.data.source import PreparedSplits

    cfg = get_config("tiny", overrides=OVERRIDES + [f"data.batch_size={batch_size}"])
    keras.utils.set_random_seed(0)
    prepared = Prepared.load(source)
    t0 = time.perf_counter()
    data = PreparedSplits(prepared)
    data.frames()  # what a run keeps as frames: bounded samples
    t = task.PurchaseIntentTask(cfg, data, members=1, text_cache=False)
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    p = t.predict("test")  # the one network (no output stage fitted) on the whole test split, from the shards
    columns = read_columns(prepared, "test")
    seconds = time.perf_counter() - t0
    if len(p) != len(columns) or len(p) != prepared.examples("test"):
        raise RuntimeError(f"{len(p)} predictions, {len(columns)} labels, {prepared.examples('test')} examples")
    return {"test_examples": len(p), "setup_seconds": setup, "predict_seconds": seconds,
            "examples_per_second": len(p) / seconds, "peak_rss_mb": peak_rss_mb(),
            "sample_rows": {k: len(v) for k, v in data.frames().items()}}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--examples", default="100000", help="comma-separated N, e.g. 1000000,5000000")
    p.add_argument("--file-rows", type=int, default=100_000, help="rows per generated Parquet file")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--memory-max", type=int, default=1_000_000, help="largest N also trained in memory")
    p.add_argument("--workdir", default=None, help="scratch directory (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the generated data")
    p.add_argument("--test-fraction", type=float, default=None,
                   help="data.test_fraction of prepare (default 0.15), e.g. 0.8 for a large test split")
    p.add_argument("--evaluate", action="store_true",
                   help="also measure the evaluation part from shards (predict the whole test split)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "prepare":
            result = run_prepare(*rest)
        elif kind == "evaluate":
            result = run_evaluate(rest[0], int(rest[1]))
        else:
            result = run_epoch(rest[0], rest[1], int(rest[2]))
        print(json.dumps(result))
        return result
    results = {"machine": {"cpus": os.cpu_count()}, "batch_size": args.batch_size, "runs": []}
    for n in (int(v) for v in args.examples.split(",")):
        work = Path(args.workdir or tempfile.mkdtemp(prefix="pi-scale-")) / f"n{n}"
        try:
            row = {"examples": n, "generate_seconds": generate(work / "input", n, args.file_rows)}
            fraction = [] if args.test_fraction is None else [f"data.test_fraction={args.test_fraction}",
                                                              "data.validation_fraction=0.05"]
            row["prepare"] = child(["prepare", str(work / "input" / "*.parquet"), str(work / "prepared"),
                                    *fraction])
            row["epoch_from_shards"] = child(["epoch", str(work / "prepared"), "shards", str(args.batch_size)])
            if n <= args.memory_max:
                row["epoch_in_memory"] = child(["epoch", str(work / "prepared"), "memory", str(args.batch_size)])
                row["shards_vs_memory_rate"] = (row["epoch_from_shards"]["examples_per_second"]
                                                / row["epoch_in_memory"]["examples_per_second"])
            if args.evaluate:
                row["evaluate_from_shards"] = child(["evaluate", str(work / "prepared"), str(args.batch_size)])
                print(f"N={n}: evaluation from shards, {row['evaluate_from_shards']['test_examples']} test "
                      f"examples: {row['evaluate_from_shards']['examples_per_second']:.0f} ex/s, peak RSS "
                      f"{row['evaluate_from_shards']['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
            results["runs"].append(row)
            print(f"N={n}: prepare {row['prepare']['rows_per_second']:.0f} rows/s, peak RSS "
                  f"{row['prepare']['peak_rss_mb']:.0f} MB; epoch from shards "
                  f"{row['epoch_from_shards']['examples_per_second']:.0f} ex/s, peak RSS "
                  f"{row['epoch_from_shards']['peak_rss_mb']:.0f} MB"
                  + (f"; in memory {row['epoch_in_memory']['examples_per_second']:.0f} ex/s, peak RSS "
                     f"{row['epoch_in_memory']['peak_rss_mb']:.0f} MB" if "epoch_in_memory" in row else ""),
                  file=sys.stderr, flush=True)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
