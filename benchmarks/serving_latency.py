"""Latency and throughput of the default model over gRPC and REST, against the local server.

    .venv/bin/python benchmarks/serving_latency.py            # trains a 1-epoch default model first
    .venv/bin/python benchmarks/serving_latency.py --export runs/<run>/export
    .venv/bin/python benchmarks/serving_latency.py --export runs/<run>/export --json

The default model (Online Retail, MiniLM per-event text table) is exported by
``python -m purchase_intent.train`` (one epoch is enough: latency does not depend
on the weights). The local server (``purchase_intent.serving.local``) runs in its
own process on free loopback ports; the clients are threads of this process,
each with its own channel, sending prepared requests built from test examples
at the contract's width (``assets.extra/contract.json`` ``max_events``, as
production callers send them).

For each batch size (1, 8, 64) it measures the median latency of one call, one
caller at a time, along four paths:

* ``in_process``: the exported ``serving_default`` loaded with ``tf.saved_model.load``;
* ``session``: the export run as TF Serving runs it (TF1 loader, Session, Grappler on:
  :class:`purchase_intent.serving.session.SessionModel`), fed the arrays the server decodes;
* ``grpc``: Predict through the local server (prepared ``PredictRequest``);
* ``rest``: ``POST .../:predict`` through the local server (prepared ``instances`` JSON);

and the stand-in's overhead, ``grpc - session`` in ms and %. ``--json`` prints
those figures as one JSON object; without it they are printed as a table,
followed by p50 / p95 / p99 latency and throughput of gRPC Predict with 1 and 8
concurrent clients.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

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
    print("Training the default model for one epoch:", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return out / "export"


def start_server(model_dir: Path, port: int, rest_port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "purchase_intent.serving.local", "--model-base-path", str(model_dir),
         "--model-name", MODEL, "--port", str(port), "--rest-port", str(rest_port), "--poll-seconds", "0"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


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


def interleaved_medians(calls: dict[str, Callable[[], object]], seconds: float, turn: float = 0.2,
                        warmup: int = 3) -> dict[str, float]:
    """Median latency (ms) of each ``call()``, measured in turns of ``turn`` seconds, round robin.

    Each call gets ``seconds`` in all (and at least 10 calls); taking turns
    gives every path the same share of a machine whose load drifts (other
    processes on shared cores), so their difference is the paths' own.
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    spent = dict.fromkeys(calls, 0.0)
    while any(spent[n] < seconds or len(times[n]) < 10 for n in calls):
        for name, call in calls.items():
            start = time.perf_counter()
            while time.perf_counter() - start < turn:
                t0 = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - t0)
            spent[name] += time.perf_counter() - start
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def rest_caller(host: str, port: int, body: bytes):
    """A function posting ``body`` to ``:predict`` over one kept-alive connection (raises on non-200)."""
    connection = http.client.HTTPConnection(host, port, timeout=30)
    path = f"/v1/models/{MODEL}:predict"

    def call() -> bytes:
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"REST {response.status}: {data[:300]!r}")
        return data

    return call


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
    p.add_argument("--clients", default="1,8", help="concurrent gRPC clients of the throughput table")
    p.add_argument("--json", action="store_true",
                   help="print the four paths' medians and the gRPC overhead as one JSON object "
                        "(no throughput table)")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from purchase_intent import contract
    from purchase_intent.config import get_config
    from purchase_intent.data import load_splits
    from purchase_intent.export import existing_versions, load_serving_fn
    from purchase_intent.schema import FeatureSchema
    from purchase_intent.serving.client import PurchaseIntentClient
    from purchase_intent.serving.codec import tensor_proto_to_ndarray, to_tensors
    from purchase_intent.serving.session import SessionModel

    tmp = tempfile.TemporaryDirectory(prefix="serving-bench-")
    export = Path(args.export) if args.export else default_export(Path(tmp.name))
    model_dir = export / MODEL
    vdir = model_dir / str(existing_versions(model_dir)[-1])
    schema = FeatureSchema.load(vdir / "assets.extra" / "schema.json")
    max_events = int(contract.read_contract(vdir)["max_events"])
    cfg = get_config("default")
    _, splits = load_splits(cfg.data, seed=cfg.train.seed)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    arrays = {b: contract.frame_to_arrays(splits["test"].head(b), schema, max_events=max_events)
              for b in batch_sizes}

    # In process: the signature, and the Session path fed what the server decodes from a request.
    fn = load_serving_fn(vdir)
    session = SessionModel(vdir)
    port, rest_port = free_port(), free_port()
    target = f"127.0.0.1:{port}"
    server = start_server(model_dir, port, rest_port)
    medians: dict[int, dict[str, float]] = {}
    try:
        wait_ready(target)
        with PurchaseIntentClient(target, MODEL, timeout=30.0) as client:
            requests = {b: client.build_request(arrays[b]) for b in batch_sizes}
            for b in batch_sizes:
                tensors = to_tensors(arrays[b])
                decoded = {k: tensor_proto_to_ndarray(v) for k, v in requests[b].inputs.items()}
                columns = {k: v.tolist() for k, v in arrays[b].items()}
                body = json.dumps({"instances": [{k: columns[k][i] for k in columns} for i in range(b)]})
                medians[b] = interleaved_medians({
                    "in_process": lambda: fn(**tensors),
                    "session": lambda: session.run(decoded),
                    "grpc": lambda: client.predict_request(requests[b]),
                    "rest": rest_caller("127.0.0.1", rest_port, body.encode()),
                }, args.seconds)
        for b in batch_sizes:
            m = medians[b]
            m["grpc_overhead_ms"] = m["grpc"] - m["session"]
            m["grpc_overhead_pct"] = 100.0 * m["grpc_overhead_ms"] / m["session"]
        if args.json:
            print(json.dumps({"export": str(vdir), "max_events": max_events, "cpu_cores": os.cpu_count(),
                              "seconds_per_cell": args.seconds,
                              "median_ms": {str(b): {k: round(v, 3) for k, v in medians[b].items()}
                                            for b in batch_sizes}}, indent=2))
            return
        print(f"\nModel {vdir} ({len(schema.feature_names)} raw inputs, sequences at {max_events} events); "
              f"median latency of one call, one caller, {args.seconds:.0f} s per cell:")
        print(f"{'batch':>5} {'in-process':>10} {'session':>8} {'gRPC':>8} {'REST':>8} {'gRPC overhead':>18}")
        for b in batch_sizes:
            m = medians[b]
            print(f"{b:>5} {m['in_process']:10.2f} {m['session']:8.2f} {m['grpc']:8.2f} {m['rest']:8.2f} "
                  f"{m['grpc_overhead_ms']:9.2f} ms {m['grpc_overhead_pct']:5.1f} %")
        print(f"\nLocal server {target} (its own process), gRPC over loopback, {args.seconds:.0f} s per cell:")
        header = (f"{'batch':>5} {'clients':>7} {'requests':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
                  f" {'req/s':>8} {'examples/s':>10}")
        print(header)
        print("-" * len(header))
        for b in batch_sizes:
            for n in (int(c) for c in args.clients.split(",")):
                lat, wall = run_clients(target, requests[b], n, args.seconds)
                p50, p95, p99 = 1e3 * np.percentile(lat, [50, 95, 99])
                print(f"{b:>5} {n:>7} {len(lat):>8} {p50:8.2f} {p95:8.2f} {p99:8.2f} "
                      f"{len(lat) / wall:8.1f} {b * len(lat) / wall:10.0f}", flush=True)
        print(f"\n{os.cpu_count()} CPU cores; server and clients share them.")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        tmp.cleanup()


if __name__ == "__main__":
    main()
