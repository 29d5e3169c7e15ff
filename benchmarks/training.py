"""Training throughput of the default configuration, where the time goes, and XLA / steps_per_execution.

    .venv/bin/python benchmarks/training.py [--epochs 4] [--repeats 5]

In one process, on the default run's data (Online Retail, MiniLM per-event text table):

1. Variants, trained side by side (one epoch of each in turn, so load from other
   processes hits them alike): baseline, ``train.jit_compile=true``,
   ``train.steps_per_execution=8``, both. Each starts from the same seed. Prints
   the median training seconds per epoch (first epoch, which traces / compiles,
   reported apart), examples/s, the ratio to the baseline and the validation
   ROC-AUC after ``--epochs`` epochs.
2. Profile by branch: forward + backward time per batch of sub-models cut from the
   default model at each branch output (event embeddings + per-event text
   projection; + LSTM; + CNN; numeric / categorical; the whole model), on the
   same in-memory batches, plus activation and parameter memory per branch.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import in_memory_batches, setup  # noqa: E402  (benchmarks/pipeline.py)

VARIANTS = {
    "baseline": {},
    "jit_compile": {"jit_compile": True},
    "steps_per_execution=8": {"steps_per_execution": 8},
    "jit + steps_per_execution=8": {"jit_compile": True, "steps_per_execution": 8},
}


def compiled_model(cfg, preprocessor, tables, positive_rate, train_overrides):
    import keras

    from purchase_intent.model import build_model

    t = copy.deepcopy(cfg.train)
    for k, v in train_overrides.items():
        setattr(t, k, v)
    keras.utils.set_random_seed(cfg.train.seed)
    model = build_model(cfg.model, preprocessor, event_text_tables=tables, positive_rate=positive_rate)
    model.compile(optimizer=keras.optimizers.Adam(t.learning_rate), loss="binary_crossentropy",
                  metrics=[keras.metrics.AUC(name="auc")],
                  steps_per_execution=t.steps_per_execution, jit_compile=t.jit_compile)
    return model


def grad_step_time(submodel, batches, repeats: int) -> float:
    """Median seconds per batch of forward + backward (sum of outputs) of ``submodel``."""
    import tensorflow as tf

    variables = submodel.trainable_variables

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            out = submodel(x, training=True)
            loss = tf.add_n([tf.reduce_sum(tf.cast(o, tf.float32)) for o in tf.nest.flatten(out)])
        grads = tape.gradient(loss, variables) if variables else []
        return loss, grads

    step(batches[0][0])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for x, *_ in batches:
            step(x)
        times.append((time.perf_counter() - t0) / len(batches))
    return statistics.median(times)


def layer_activation_bytes(submodel) -> int:
    """Bytes of all layer outputs of ``submodel`` per example (float32/int32)."""
    import numpy as np

    total = 0
    for layer in submodel.layers:
        for out in (layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]):
            shape = [d for d in out.shape[1:]]
            total += int(np.prod(shape)) * 4 if shape else 4
    return total


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=4, help="epochs per variant, after the first")
    p.add_argument("--repeats", type=int, default=5, help="repetitions of the branch profile")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    from purchase_intent.cli import add_config_flags

    add_config_flags(p)  # --help-config: every --set key
    args = p.parse_args(argv)

    import keras
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from purchase_intent.pipeline import make_dataset

    cfg, schema, splits, preprocessor, model, weights, setup_s = setup(args.overrides)
    train_df, val_df = splits["train"], splits["validation"]
    n = len(train_df)
    positive_rate = float(train_df[schema.label].mean())
    tables = {name: model.get_layer(f"{name}_embedding").get_weights()[0] for name in schema.event_text}
    train_ds = make_dataset(train_df, schema, preprocessor, cfg.data, training=True,
                            seed=cfg.train.seed, weights=weights)
    val_ds = make_dataset(val_df, schema, preprocessor, cfg.data, training=False)
    for _ in train_ds:  # fill the cache: the variants then see the same warm pipeline
        pass
    y_val = val_df[schema.label].to_numpy()
    print(f"Default config: {n} training examples, batch {cfg.data.batch_size}, "
          f"{-(-n // cfg.data.batch_size)} steps/epoch; model {model.count_params():,} parameters")

    # 1. Variants side by side.
    models = {k: compiled_model(cfg, preprocessor, tables, positive_rate, v) for k, v in VARIANTS.items()}
    first, times = {}, {k: [] for k in models}
    for epoch in range(args.epochs + 1):
        for name, m in models.items():
            t0 = time.perf_counter()
            m.fit(train_ds, epochs=1, verbose=0)
            seconds = time.perf_counter() - t0
            if epoch:
                times[name].append(seconds)
            else:
                first[name] = seconds
    base = statistics.median(times["baseline"])
    print(f"\n{'variant':<30}{'1st epoch s':>12}{'s/epoch':>10}{'examples/s':>12}{'speed-up':>10}"
          f"{'val ROC-AUC':>13}")
    for name, m in models.items():
        s = statistics.median(times[name])
        auc = roc_auc_score(y_val, m.predict(val_ds, verbose=0).reshape(-1))
        print(f"{name:<30}{first[name]:>12.2f}{s:>10.3f}{n / s:>12,.0f}{base / s:>9.2f}x{auc:>13.4f}"
              f"   epochs: {', '.join(f'{t:.2f}' for t in times[name])}")

    # 2. Profile by branch, on the same in-memory batches.
    mem_ds, n_batches, size = in_memory_batches(train_ds)
    batches = list(mem_ds.take(12))
    base_model = models["baseline"]
    names = [layer.name for layer in base_model.layers]
    cuts = [("event embeddings + per-event text projection", ["event_concat"]),
            ("  + BehaviourLSTM", ["behaviour_lstm"]),
            ("  + BehaviourCNN", ["behaviour_cnn"]),
            ("numeric + categorical", [nm for nm in names if nm.endswith("_embedding")
                                       and nm.split("_embedding")[0] in schema.categorical]),
            ("whole model (all branches + fusion MLP)", None)]
    print(f"\nProfile by branch: forward + backward per batch of {size} "
          f"(median of {args.repeats} passes over {len(batches)} batches)")
    print(f"{'sub-model up to':<46}{'ms/batch':>10}{'us/example':>12}{'activations/ex':>16}"
          f"{'parameters':>12}")
    for label, outputs in cuts:
        if outputs is not None and not all(o in names for o in outputs):
            continue
        sub = base_model if outputs is None else keras.Model(
            base_model.inputs, [base_model.get_layer(o).output for o in outputs])
        sec = grad_step_time(sub, batches, args.repeats)
        params = int(sum(np.prod(w.shape) for w in sub.weights))
        print(f"{label:<46}{sec * 1e3:>10.2f}{sec / size * 1e6:>12.1f}"
              f"{layer_activation_bytes(sub) / 1024:>13.1f} KB{params:>12,}")
    for name in schema.event_text:
        table = tables[name]
        print(f"(frozen per-event text table {name!r}: {table.shape[0]:,} x {table.shape[1]} float32 = "
              f"{table.nbytes / 2**20:.1f} MiB, shared by all examples; built in the setup above)")


if __name__ == "__main__":
    main()
