"""Latency and throughput of the default model over gRPC, against the local server.

    .venv/bin/python benchmarks/serving_latency.py            # trains a 1-epoch default model first
    .venv/bin/python benchmarks/serving_latency.py --export runs/<run>/export

The default model (Online Retail, MiniLM per-event text table) is exported by
``python -m purchase_intent.train`` (one epoch is enough: latency does not depend
on the weights). The local server (``purchase_intent.serving.local``) runs in its
own process on a free loopback port; the clients are threads of this process,
each with its own channel, sending prepared ``PredictRequest`` protos built from
test examples (fixed sequence width 50, as the client sends them). For each
batch size (1, 8, 64) and concurrency (1, 8 clients) it prints p50 / p95 / p99
latency of one Predict call and the throughput in examples/s and requests/s.
For reference it also prints the in-process latency of the exported
``serving_default`` (no gRPC) at the same batch sizes.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = "purchase_intent"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_export(workdir: Path) -> Path:
    out = workdir / "run"
    cmd = [sys.executable, "-m", "purchase_intent.train", "--epochs", "1", "--output-dir", str(out)]
    print("Training the default model for one epoch:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return out / "export"


def start_server(model_dir: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "purchase_intent.serving.local", "--model-base-path", str(model_dir),
         "--model-name", MODEL, "--port", str(port), "--no-rest", "--poll-seconds", "0"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return proc


def wait_ready(target: str, timeout: float = 180.0) -> None:
    from purchase_intent.serving import PurchaseIntentClient

    deadline = time.monotonic() + timeout
    with PurchaseIntentClient(target, MODEL, timeout=5.0, max_retries=0) as client:
        while time.monotonic() < deadline:
            try:
                if any(s["state"] == "AVAILABLE" for s in client.status()):
                    return
            except Exception:  # noqa: BLE001 - server still starting
                pass
            time.sleep(0.5)
    raise TimeoutError(f"local server at {target} not ready after {timeout} s")


def run_clients(target: str, request, n_clients: int, seconds: float, warmup: int = 3):
    """Each client sends ``request`` back to back for ``seconds``; returns latencies (s) and wall time."""
    from purchase_intent.serving import PurchaseIntentClient

    latencies: list[list[float]] = [[] for _ in range(n_clients)]
    errors: list[BaseException] = []
    start = threading.Barrier(n_clients + 1)

    def worker(i: int) -> None:
        with PurchaseIntentClient(target, MODEL, timeout=30.0) as client:
            for _ in range(warmup):
                client.predict_request(request)
            start.wait()
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                try:
                    client.predict_request(request)
                except BaseException as e:  # noqa: BLE001 - reported below
                    errors.append(e)
                    return
                latencies[i].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, first: {errors[0]}")
    return np.concatenate([np.asarray(l) for l in latencies]), wall


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--export", help="export base folder holding purchase_intent/<version>/ "
                                     "(default: train a 1-epoch default model into a temp folder)")
    p.add_argument("--seconds", type=float, default=5.0, help="measurement time per cell")
    p.add_argument("--batch-sizes", default="1,8,64")
    p.add_argument("--clients", default="1,8")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import pandas as pd  # noqa: F401

    from purchase_intent.config import get_config
    from purchase_intent.data import load_splits
    from purchase_intent.export import existing_versions, load_serving_fn
    from purchase_intent.schema import FeatureSchema
    from purchase_intent.serving.client import PurchaseIntentClient, frame_to_arrays

    tmp = tempfile.TemporaryDirectory(prefix="serving-bench-")
    export = Path(args.export) if args.export else default_export(Path(tmp.name))
    model_dir = export / MODEL
    version = existing_versions(model_dir)[-1]
    vdir = model_dir / str(version)
    schema = FeatureSchema.load(vdir / "assets.extra" / "schema.json")
    cfg = get_config("default")
    _, splits = load_splits(cfg.data, seed=cfg.train.seed)
    test = splits["test"]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    clients = [int(c) for c in args.clients.split(",")]

    # In-process reference: the exported signature called directly.
    import tensorflow as tf

    fn = load_serving_fn(vdir)
    print(f"\nModel {vdir} ({len(schema.feature_names)} raw inputs); in-process serving_default, "
          "median of 30 calls:")
    for b in batch_sizes:
        arrays = frame_to_arrays(test.head(b), schema)
        feed = {k: tf.constant(v if v.dtype != object else v.astype(str)) for k, v in arrays.items()}
        fn(**feed)
        times = []
        for _ in range(30):
            t0 = time.perf_counter()
            fn(**feed)
            times.append(time.perf_counter() - t0)
        print(f"  batch {b:>3}: {1e3 * np.median(times):7.2f} ms  ({b / np.median(times):8.0f} examples/s)")
    del fn

    port = free_port()
    target = f"127.0.0.1:{port}"
    server = start_server(model_dir, port)
    try:
        wait_ready(target)
        with PurchaseIntentClient(target, MODEL, schema=schema) as c:
            requests = {b: c.build_request(frame_to_arrays(test.head(b), schema)) for b in batch_sizes}
        print(f"\nLocal server {target} (its own process), gRPC over loopback, {args.seconds:.0f} s per cell:")
        header = (f"{'batch':>5} {'clients':>7} {'requests':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
                  f" {'req/s':>8} {'examples/s':>10}")
        print(header)
        print("-" * len(header))
        for b in batch_sizes:
            for n in clients:
                lat, wall = run_clients(target, requests[b], n, args.seconds)
                p50, p95, p99 = 1e3 * np.percentile(lat, [50, 95, 99])
                print(f"{b:>5} {n:>7} {len(lat):>8} {p50:8.2f} {p95:8.2f} {p99:8.2f} "
                      f"{len(lat) / wall:8.1f} {b * len(lat) / wall:10.0f}", flush=True)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        tmp.cleanup()
    print(f"\n{os.cpu_count()} CPU cores; server and clients share them.")


if __name__ == "__main__":
    main()
