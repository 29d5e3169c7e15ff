"""Input pipeline alone vs the training step alone, on the default configuration.

    .venv/bin/python benchmarks/pipeline.py [--repeats 5] [--set section.key=value ...]

Builds the default run (Online Retail train split, MiniLM per-event text table)
exactly as ``python -m purchase_intent.train`` does, then measures in one process:

* pipeline, cold: the first full pass over ``make_dataset(train, training=True)``
  (ragged -> truncation -> Preprocessor per block of 512 -> cache fill -> shuffle -> batch);
* pipeline, warm: further passes (served from the in-memory cache, reshuffled each epoch);
* training step alone: ``model.fit`` over the same batches held in memory as tensors
  (a ``from_tensor_slices`` over the stacked batches, no pipeline work), one epoch per
  repetition after a first epoch for tracing.

Prints examples/s of each (median of ``--repeats``), and the ratio pipeline / step
(target >= 5x). The pipeline also iterates at full speed while training, on the
tf.data threads, so the ratio says how much head-room the input side has.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def setup(overrides: list[str] | None = None):
    """Default config, splits, adapted preprocessor and compiled model (as ``train.main`` builds them).

    Returns:
        ``(cfg, schema, splits, preprocessor, model, weights, seconds)``.
    """
    import keras

    from purchase_intent import task
    from purchase_intent.config import get_config
    from purchase_intent.data import load_splits

    cfg = get_config("default", overrides=overrides or [])
    keras.utils.set_random_seed(cfg.train.seed)
    t0 = time.perf_counter()
    schema, splits = load_splits(cfg.data, seed=cfg.train.seed)
    t_data = time.perf_counter() - t0
    t0 = time.perf_counter()
    t = task.PurchaseIntentTask(cfg, splits, schema, members=1, text_cache=False)
    t_build = time.perf_counter() - t0
    return cfg, schema, splits, t.preprocessor, t.members[0], t.class_weights, {"data": t_data, "build": t_build}


def in_memory_batches(ds, drop_partial: bool = True):
    """Materialises a batched dataset; returns ``(stacked dataset of batches, n_batches, batch)``."""
    import tensorflow as tf

    batches = list(ds)
    size = int(tf.nest.flatten(batches[0])[0].shape[0])
    if drop_partial:
        batches = [b for b in batches if int(tf.nest.flatten(b)[0].shape[0]) == size]
    stacked = tf.nest.map_structure(lambda *xs: tf.stack(xs), *batches)
    return tf.data.Dataset.from_tensor_slices(stacked), len(batches), size


def time_fit(model, ds, repeats: int) -> list[float]:
    """Seconds per epoch of ``model.fit`` over ``ds`` (first, tracing epoch excluded)."""
    import keras

    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    model.fit(ds, epochs=repeats + 1, verbose=0, callbacks=[Timer()])
    return times[1:]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    from purchase_intent.cli import add_config_flags

    add_config_flags(p)  # --help-config: every --set key
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from purchase_intent.pipeline import make_dataset

    cfg, schema, splits, preprocessor, model, weights, setup_s = setup(args.overrides)
    train_df = splits["train"]
    n = len(train_df)
    print(f"Default config, Online Retail train split: {n} examples, batch {cfg.data.batch_size}; "
          f"data {setup_s['data']:.1f} s, encoder + text table + model {setup_s['build']:.1f} s")

    ds = make_dataset(train_df, schema, preprocessor, cfg.data, training=True, seed=cfg.train.seed,
                      weights=weights)
    t0 = time.perf_counter()
    count = sum(int(b[1].shape[0]) for b in ds)
    cold = time.perf_counter() - t0
    assert count == n, (count, n)
    warm = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for _b in ds:
            pass
        warm.append(time.perf_counter() - t0)

    mem_ds, n_batches, size = in_memory_batches(ds)
    step = time_fit(model, mem_ds, args.repeats)

    warm_s, step_s = statistics.median(warm), statistics.median(step)
    pipe_rate, cold_rate = n / warm_s, n / cold
    step_rate = n_batches * size / step_s
    print(f"\n{'stage':<44}{'s/epoch':>10}{'examples/s':>14}")
    print(f"{'pipeline, cold (preprocess + cache fill)':<44}{cold:>10.3f}{cold_rate:>14,.0f}")
    print(f"{'pipeline, warm (cache, shuffle, batch)':<44}{warm_s:>10.3f}{pipe_rate:>14,.0f}"
          f"   median of {len(warm)}: {', '.join(f'{t:.3f}' for t in warm)}")
    print(f"{'training step alone (in-memory batches)':<44}{step_s:>10.3f}{step_rate:>14,.0f}"
          f"   median of {len(step)}: {', '.join(f'{t:.3f}' for t in step)}  "
          f"({n_batches} full batches of {size})")
    ratio, cold_ratio = pipe_rate / step_rate, cold_rate / step_rate
    print(f"\nratio pipeline / training step: warm {ratio:.1f}x, cold {cold_ratio:.1f}x "
          f"(target >= 5x: {'met' if ratio >= 5 else 'NOT met'} warm, "
          f"{'met' if cold_ratio >= 5 else 'not met'} cold)")


if __name__ == "__main__":
    main()
