"""How long ``export_model`` takes as the package writes it and as Keras's ``write_out`` alone would. JSON out.

    .venv/bin/python benchmarks/export_speed.py                      # the tiny preset's model, 3 pairs
    .venv/bin/python benchmarks/export_speed.py --preset default --repeats 2   # MiniLM, LSTM + CNN, trees off

Builds the preset's (untrained) model on its data and exports it ``--repeats``
times each way, in turn: ``keras`` (Keras's ``ExportArchive.write_out``: the
serving function traced twice, and TensorFlow tracing every Keras model's
``_default_save_signature``, which the export does not keep), ``hidden`` (the
same with :func:`purchase_intent.export.without_default_save_signatures`) and
``package`` (also :func:`purchase_intent.export.write_archive`: one trace).
Prints the medians, their ratios to ``keras``, the functions traced per export
and the largest difference between the exports' answers on 64 test rows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    import keras
    import numpy as np
    from tensorflow.python.framework import func_graph  # to count the functions traced per export

    from purchase_intent import export
    from purchase_intent.config import get_config
    from purchase_intent.data import load_splits
    from purchase_intent.export import load_serving_fn
    from purchase_intent.preprocessing import raw_batch
    from purchase_intent.task import build

    cfg = get_config(args.preset, overrides=args.overrides)
    keras.utils.set_random_seed(cfg.train.seed)
    schema, splits = load_splits(cfg.data, seed=cfg.train.seed)
    pre, model = build(cfg, schema, splits)
    rows = raw_batch(splits["test"].head(64), schema)

    traced = [0]
    trace = func_graph.func_graph_from_py_func

    def counting(*a, **k):
        traced[0] += 1
        return trace(*a, **k)

    from tensorflow.python.eager.polymorphic_function import tracing_compilation
    tracing_compilation.func_graph_module.func_graph_from_py_func = counting
    hidden, once = export.without_default_save_signatures, export.write_archive

    def keras_write_out(archive, path):
        archive.write_out(str(path), verbose=False)

    ways = {"keras": (contextlib.nullcontext, keras_write_out), "hidden": (hidden, keras_write_out),
            "package": (hidden, once)}
    seconds, traces, answers = {way: [] for way in ways}, {}, {}
    base = Path(tempfile.mkdtemp(prefix="export-speed-"))
    for _ in range(args.repeats):
        for way, (context, write) in ways.items():
            export.without_default_save_signatures, export.write_archive = context, write
            traced[0] = 0
            t0 = time.perf_counter()
            vdir = export.export_model(model, pre, base, "m", 0)
            seconds[way].append(time.perf_counter() - t0)
            traces[way] = traced[0]
            answers.setdefault(way, load_serving_fn(vdir)(**rows)["purchase_probability"].numpy())
    export.without_default_save_signatures, export.write_archive = hidden, once
    med = {way: statistics.median(s) for way, s in seconds.items()}
    out = {"preset": args.preset, "overrides": args.overrides, "repeats": args.repeats,
           "seconds_median": {k: round(v, 2) for k, v in med.items()},
           "seconds": {k: [round(x, 2) for x in v] for k, v in seconds.items()},
           "ratio_to_keras": {way: round(med[way] / med["keras"], 3) for way in ways},
           "functions_traced_per_export": traces,
           "max_abs_diff_answers": max(float(np.max(np.abs(answers[w] - answers["keras"]))) for w in ways)}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
