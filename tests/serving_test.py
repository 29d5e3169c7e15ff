"""Serving: gRPC client against the local server (hot swap, errors, labels), warm-up records,
score CLI, deployment files. The local server's protocol parity with TF Serving is tested
with hand-written requests in local_grpc_test.py and local_rest_test.py.

Every server binds a free loopback port and is stopped in teardown; every
client call carries a deadline.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest

MODEL = "purchase_intent"
REPO = Path(__file__).resolve().parents[1]
N_WARMUP = 6  # conftest.SERVING_WARMUP_RECORDS, the exported fixture's


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def server(exported):
    from purchase_intent.serving.local import start_server

    srv = start_server(exported["base"] / MODEL, MODEL, port=0, poll_seconds=0.5, max_batch=64,
                       max_request_bytes=1024 * 1024, version_labels={"stable": 1, "canary": 2})
    yield srv
    srv.stop()


@pytest.fixture
def client(server, exported):
    from purchase_intent.serving import PurchaseIntentClient

    with PurchaseIntentClient(server.target, MODEL, timeout=20.0, schema=exported["schema"]) as c:
        yield c


def _arrays(exported, n=None):
    from purchase_intent.serving.client import frame_to_arrays

    sample = exported["sample"] if n is None else exported["sample"].sample(n, replace=True, random_state=0)
    return frame_to_arrays(sample, exported["schema"])


# -- prediction --------------------------------------------------------------

def test_predict_matches_in_memory_model(client, exported, server):
    from purchase_intent.export import load_serving_fn
    from purchase_intent.preprocessing import raw_batch

    probs = client.predict(exported["sample"])
    assert probs.shape == (24,) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, exported["expected"], atol=1e-5)
    served = load_serving_fn(exported["vdir"])(**raw_batch(exported["sample"], exported["schema"]))
    np.testing.assert_allclose(probs, served["purchase_probability"].numpy(), atol=1e-5)
    # A list of dicts with |-delimited sequences gives the same answer.
    records = exported["sample"].drop(columns=["label"]).to_dict("records")
    for r in records[:5]:
        r["item_id"] = "|".join(r["item_id"])
    np.testing.assert_allclose(client.predict(records), exported["expected"], atol=1e-5)
    labels = client.predict_labels(exported["sample"], threshold=0.25)
    np.testing.assert_array_equal(labels, (exported["expected"] >= 0.25).astype(int))


def test_schema_from_signature_and_metadata(server, exported):
    from purchase_intent.serving import PurchaseIntentClient

    with PurchaseIntentClient(server.target, MODEL, timeout=20.0) as c:  # no schema given
        meta = c.metadata()
        assert meta["version"] == 1 and meta["model_name"] == MODEL
        assert set(meta["inputs"]) == set(exported["schema"].feature_names)
        assert meta["inputs"]["item_id"] == {"dtype": "DT_STRING", "shape": [-1, -1]}
        assert meta["inputs"]["price_seen"] == {"dtype": "DT_FLOAT", "shape": [-1]}
        assert meta["outputs"] == {"purchase_probability": {"dtype": "DT_FLOAT", "shape": [-1]}}
        assert sorted(c.schema.sequence_like) == sorted(exported["schema"].sequence_like)
        np.testing.assert_allclose(c.predict(exported["sample"]), exported["expected"], atol=1e-5)
        assert c.status() == [{"version": 1, "state": "AVAILABLE", "error_code": "OK",
                               "error_message": ""}]
    with PurchaseIntentClient(server.target, MODEL, version_label="stable", timeout=20.0,
                              schema=exported["schema"]) as c:
        np.testing.assert_allclose(c.predict(exported["sample"]), exported["expected"], atol=1e-5)


# -- errors ------------------------------------------------------------------

def _drop(name):
    return lambda a: {k: v for k, v in a.items() if k != name}


def _replace(name, fn):
    return lambda a: {**a, name: fn(a[name])}


ERROR_CASES = {
    "unknown model": ({"model_name": "nope"}, None, grpc.StatusCode.NOT_FOUND, ["'nope'"]),
    "unknown version": ({"version": 99}, None, grpc.StatusCode.NOT_FOUND, ["version 99", "[1]"]),
    "label of an unloaded version": ({"version_label": "canary"}, None, grpc.StatusCode.NOT_FOUND,
                                     ["canary", "version 2"]),
    "unknown label": ({"version_label": "beta"}, None, grpc.StatusCode.INVALID_ARGUMENT,
                      ["Unrecognized servable version label: beta"]),
    "missing input": ({}, _drop("query"), grpc.StatusCode.INVALID_ARGUMENT, ["missing", "'query'"]),
    "unknown input": ({}, lambda a: {**a, "qurey": a["query"]}, grpc.StatusCode.INVALID_ARGUMENT,
                      ["unknown input", "'qurey'"]),
    "wrong dtype": ({}, _replace("price_seen", lambda v: v.astype(np.float64)),
                    grpc.StatusCode.INVALID_ARGUMENT, ["'price_seen'", "DT_DOUBLE", "expected DT_FLOAT"]),
    "numbers as strings": ({}, _replace("pages_viewed", lambda v: v.astype(str)),
                           grpc.StatusCode.INVALID_ARGUMENT, ["'pages_viewed'", "DT_STRING", "DT_FLOAT"]),
    "wrong rank": ({}, _replace("item_id", lambda v: v[:, 0]), grpc.StatusCode.INVALID_ARGUMENT,
                   ["'item_id'", "rank 1", "expected rank 2"]),
    "batch sizes disagree": ({}, _replace("country", lambda v: v[:5]), grpc.StatusCode.INVALID_ARGUMENT,
                             ["batch size", "5"]),
    "batch too large": ({}, "big batch", grpc.StatusCode.INVALID_ARGUMENT, ["65", "64"]),
    "request too large": ({}, _replace("query", lambda v: np.array(["x" * (2 << 20)] + list(v[1:]),
                                                                    dtype=object)),
                          grpc.StatusCode.RESOURCE_EXHAUSTED, []),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_bad_requests_get_clear_errors_and_server_keeps_answering(case, server, exported, client):
    from purchase_intent.serving import PurchaseIntentClient, ServingError

    kwargs, mutate, code, words = ERROR_CASES[case]
    arrays = _arrays(exported, 65) if mutate == "big batch" else _arrays(exported)
    if callable(mutate):
        arrays = mutate(arrays)
    with PurchaseIntentClient(server.target, **{"model_name": MODEL, **kwargs}, timeout=20.0,
                              max_retries=0) as bad:
        with pytest.raises(ServingError) as info:
            bad.predict_arrays(arrays)
    err = info.value
    assert err.code == code, str(err)
    assert kwargs.get("model_name", MODEL) in str(err)  # the message names the model ...
    for word in words:  # ... and what was wrong
        assert word in err.details, f"{word!r} not in {err.details!r}"
    # The server is still fine.
    np.testing.assert_allclose(client.predict(exported["sample"]), exported["expected"], atol=1e-5)


def test_status_errors(server):
    from purchase_intent.serving import PurchaseIntentClient, ServingError

    for kwargs in ({"model_name": "nope"}, {"version": 42}):
        with PurchaseIntentClient(server.target, **{"model_name": MODEL, **kwargs}, timeout=10.0) as c:
            with pytest.raises(ServingError) as info:
                c.status()
        assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert "42" in str(info.value)


def test_client_retries_unavailable_then_gives_up():
    from purchase_intent.serving import PurchaseIntentClient, ServingError

    port = _free_port()  # nothing listens there
    with PurchaseIntentClient(f"127.0.0.1:{port}", MODEL, timeout=2.0, max_retries=2,
                              backoff_seconds=0.05) as c:
        t0 = time.monotonic()
        with pytest.raises(ServingError) as info:
            c.predict_arrays({"x": np.zeros(1, np.float32)})
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert "after 3 attempts" in str(info.value) and MODEL in str(info.value)
    assert time.monotonic() - t0 >= 0.05 + 0.1  # backed off twice


def test_client_retry_reaches_a_server_that_starts_late(exported):
    from purchase_intent.serving import PurchaseIntentClient
    from purchase_intent.serving.local import start_server

    port = _free_port()
    result = {}

    def call():
        with PurchaseIntentClient(f"127.0.0.1:{port}", MODEL, timeout=10.0, max_retries=8,
                                  backoff_seconds=0.2, schema=exported["schema"]) as c:
            try:
                result["probs"] = c.predict(exported["sample"])
            except Exception as e:  # noqa: BLE001  (reported by the assertion below)
                result["error"] = e

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.5)
    srv = start_server(exported["base"] / MODEL, MODEL, port=port, poll_seconds=0)
    try:
        thread.join(timeout=60)
    finally:
        srv.stop()
    assert not thread.is_alive()
    assert "error" not in result, result.get("error")
    np.testing.assert_allclose(result["probs"], exported["expected"], atol=1e-5)


# -- hot swap ----------------------------------------------------------------

def test_hot_swap_to_new_version_without_failed_requests(exported, tmp_path):
    from tensorflow_serving.apis import model_pb2

    from purchase_intent.export import export_model
    from purchase_intent.serving import PurchaseIntentClient
    from purchase_intent.serving.local import start_server
    from purchase_intent.serving.client import OUTPUT_KEY
    from purchase_intent.serving.codec import tensor_proto_to_ndarray

    model_dir = tmp_path / MODEL
    shutil.copytree(exported["vdir"], model_dir / "1")
    srv = start_server(model_dir, MODEL, port=0, poll_seconds=0.2)
    stop = threading.Event()
    seen, errors = [], []

    def loop():
        with PurchaseIntentClient(srv.target, MODEL, timeout=30.0, max_retries=0) as c:
            request = c.build_request(_arrays(exported))
            while not stop.is_set():
                try:
                    response = c.predict_request(request)
                    seen.append((response.model_spec.version.value,
                                 tensor_proto_to_ndarray(response.outputs[OUTPUT_KEY])))
                except Exception as e:  # noqa: BLE001  (every failure is counted)
                    errors.append(e)
                time.sleep(0.01)

    thread = threading.Thread(target=loop)
    names = {layer.name for layer in exported["model"].layers}
    # The output bias: on the deep logit in a wide & deep model, else on the output layer.
    layer = exported["model"].get_layer("deep_logit" if "deep_logit" in names else "purchase_probability")
    try:
        thread.start()
        _wait_for(lambda: len(seen) >= 3, 30, "requests on version 1")
        layer.bias.assign_add([0.7])  # version 2 answers differently
        try:
            export_model(exported["model"], exported["pre"], tmp_path, MODEL, 2)
        finally:
            layer.bias.assign_add([-0.7])
        with PurchaseIntentClient(srv.target, MODEL, timeout=10.0) as c:
            _wait_for(lambda: any(s["version"] == 2 and s["state"] == "AVAILABLE" for s in c.status()),
                      60, "version 2 to load")
            n = len(seen)
            _wait_for(lambda: len(seen) >= n + 5, 30, "requests on version 2")
            stop.set()
            thread.join(timeout=60)
            assert c.metadata()["version"] == 2
            assert [(s["version"], s["state"]) for s in c.status()] == [(1, "AVAILABLE"), (2, "AVAILABLE")]
        with PurchaseIntentClient(srv.target, MODEL, version=1, timeout=10.0,
                                  schema=exported["schema"]) as c1:
            np.testing.assert_allclose(c1.predict(exported["sample"]), exported["expected"], atol=1e-5)

        assert not errors, f"{len(errors)} requests failed during the swap: {errors[:3]}"
        versions = [v for v, _ in seen]
        assert versions[0] == 1 and versions[-1] == 2
        first_v2 = versions.index(2)
        assert set(versions[first_v2:]) == {2}, "after the swap no request may go to version 1"
        v1 = np.stack([p for v, p in seen if v == 1])
        v2 = np.stack([p for v, p in seen if v == 2])
        np.testing.assert_allclose(v1, np.broadcast_to(exported["expected"], v1.shape), atol=1e-5)
        assert np.abs(v2[0] - exported["expected"]).max() > 1e-3

        # Version 3 arrives as a temporary folder renamed into place: the temporary
        # folder is ignored, then 3 loads and 1 (the oldest of three) is unloaded.
        tmp_copy = model_dir / ".tmp-3-copy"
        shutil.copytree(exported["vdir"], tmp_copy)
        time.sleep(0.5)
        assert srv.manager.loaded_versions == [1, 2]
        os.rename(tmp_copy, model_dir / "3")
        _wait_for(lambda: srv.manager.loaded_versions == [2, 3], 60, "version 3 to replace 1")
        spec = model_pb2.ModelSpec(name=MODEL)
        spec.version.value = 1
        with pytest.raises(Exception) as info:
            srv.manager.resolve(spec)
        assert "NOT_FOUND" in str(getattr(info.value, "code", "")) or "not loaded" in str(info.value)
    finally:
        stop.set()
        thread.join(timeout=60)
        srv.stop()


def test_broken_version_does_not_replace_a_good_one(exported, tmp_path):
    from purchase_intent.serving import PurchaseIntentClient
    from purchase_intent.serving.local import start_server
    from purchase_intent.serving.warmup import write_warmup_requests

    model_dir = tmp_path / MODEL
    shutil.copytree(exported["vdir"], model_dir / "1")
    shutil.copytree(exported["vdir"], model_dir / "2")
    arrays = _arrays(exported)
    del arrays["query"]  # a warm-up record the model cannot answer
    write_warmup_requests(model_dir / "2", arrays, MODEL, n=2)
    srv = start_server(model_dir, MODEL, port=0, poll_seconds=0)
    try:
        with PurchaseIntentClient(srv.target, MODEL, timeout=10.0, schema=exported["schema"]) as c:
            status = {s["version"]: s for s in c.status()}
            assert status[1]["state"] == "AVAILABLE"
            assert status[2]["state"] == "END" and "warm-up record 0" in status[2]["error_message"]
            assert "'query'" in status[2]["error_message"]
            np.testing.assert_allclose(c.predict(exported["sample"]), exported["expected"], atol=1e-5)
    finally:
        srv.stop()


# -- warm-up -----------------------------------------------------------------

def test_warmup_records_parse_and_replay(server, exported, client):
    from tensorflow_serving.apis import model_pb2

    from purchase_intent.serving.warmup import MAX_WARMUP_RECORDS, read_warmup_requests, write_warmup_requests

    path = exported["vdir"] / "assets.extra" / "tf_serving_warmup_requests"
    assert path.exists()
    logs = read_warmup_requests(path)
    assert len(logs) == N_WARMUP <= MAX_WARMUP_RECORDS
    sizes = []
    for log in logs:
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.name == MODEL
        assert request.model_spec.signature_name == "serving_default"
        assert set(request.inputs) == set(exported["schema"].feature_names)
        response = client.predict_request(request)  # replays fine through the server
        sizes.append(len(response.outputs["purchase_probability"].float_val))
    assert sizes == [1, 8] * (N_WARMUP // 2)
    # The server replayed them when it loaded the version.
    assert server.manager.resolve(model_pb2.ModelSpec(name=MODEL)).warmup_records == N_WARMUP
    with pytest.raises(ValueError, match="1..1000"):
        write_warmup_requests(exported["vdir"], exported["sample"], MODEL, n=1001,
                              schema=exported["schema"])


# -- scoring CLI and deployment files ------------------------------------------

def _write_csv(sample, schema, path):
    df = sample.drop(columns=[schema.label]).copy()
    for col in schema.sequence_like:
        df[col] = df[col].map("|".join)
    df.insert(0, "session_id", [f"s{i}" for i in range(len(df))])
    df.to_csv(path, index=False)


def test_score_cli_end_to_end(server, exported, tmp_path):
    from purchase_intent.serving import score

    schema = exported["schema"]
    csv = tmp_path / "sessions.csv"
    _write_csv(exported["sample"], schema, csv)
    out = tmp_path / "scored.csv"
    code = score.main(["--target", server.target, "--input", str(csv), "--output", str(out),
                       "--batch-size", "7", "--schema", str(exported["vdir"] / "assets.extra/schema.json"),
                       "--threshold", str(exported["vdir"] / "assets.extra/threshold.json"),
                       "--keep-columns", "session_id"])
    assert code == 0
    scored = pd.read_csv(out)
    assert list(scored.columns) == ["session_id", "purchase_probability", "purchase_label"]
    assert list(scored["session_id"]) == [f"s{i}" for i in range(24)]
    np.testing.assert_allclose(scored["purchase_probability"], exported["expected"], atol=1e-5)
    np.testing.assert_array_equal(scored["purchase_label"], (exported["expected"] >= 0.25).astype(int))

    # Without --schema the schema comes from the signature; all input columns are kept.
    out2 = tmp_path / "scored2.csv"
    assert score.main(["--target", server.target, "--input", str(csv), "--output", str(out2)]) == 0
    scored2 = pd.read_csv(out2)
    assert "query" in scored2.columns and "purchase_label" not in scored2.columns
    np.testing.assert_allclose(scored2["purchase_probability"], exported["expected"], atol=1e-5)

    # A bad value fails with exit code 2 and leaves no output behind.
    bad = pd.read_csv(csv)
    bad["price_seen"] = bad["price_seen"].astype(object)  # pandas 3 refuses a str in a float column
    bad.loc[10, "price_seen"] = "cheap"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    out3 = tmp_path / "scored3.csv"
    assert score.main(["--target", server.target, "--input", str(tmp_path / "bad.csv"),
                       "--output", str(out3), "--batch-size", "7"]) == 2
    assert not out3.exists() and not (tmp_path / "scored3.csv.partial").exists()


def test_server_cli_starts_answers_and_stops_on_sigterm(exported):
    from purchase_intent.serving import PurchaseIntentClient

    proc = subprocess.Popen(
        [sys.executable, "-m", "purchase_intent.serving.local", "--model-base-path",
         str(exported["base"] / MODEL), "--port", "0", "--rest-port", "0", "--version-labels", "stable=1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        line = proc.stdout.readline()  # printed once the model is loaded and the port bound
        match = re.search(r" on (127\.0\.0\.1:\d+) \(gRPC\) and (http://127\.0\.0\.1:\d+) \(REST\)", line)
        assert match and "stand-in for TF Serving" in line, line
        with urllib.request.urlopen(f"{match.group(2)}/v1/models/{MODEL}", timeout=20) as response:
            assert json.load(response)["model_version_status"][0]["state"] == "AVAILABLE"
        with PurchaseIntentClient(match.group(1), MODEL, version_label="stable", timeout=20.0) as c:
            np.testing.assert_allclose(c.predict(exported["sample"]), exported["expected"], atol=1e-5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_deployment_config_files():
    from purchase_intent.serving.local.server import parse_size, read_model_config

    conf = read_model_config(REPO / "serving" / "models.config", MODEL)
    assert conf["version_labels"] == {"stable": 1, "canary": 2}
    assert conf["specific_versions"] == [1, 2] and conf["base_path"] == "/models/purchase_intent"
    compose = (REPO / "serving" / "docker-compose.yml").read_text()
    for flag in ("--model_config_file=/config/models.config", "--enable_batching",
                 "--batching_parameters_file=/config/batching.config",
                 "--monitoring_config_file=/config/monitoring.config",
                 "--allow_version_labels_for_unavailable_models", "8500:8500", "8501:8501"):
        assert flag in compose, flag
    # Requests up to the client's chunk are accepted and split into executions of 64 rows;
    # padding stays off: the client sends every sequence at one fixed width.
    import inspect

    from purchase_intent.serving.client import PurchaseIntentClient

    config = (REPO / "serving" / "batching.config").read_text()
    batching = dict(re.findall(r"^(\w+)(?: \{ value: |: )(\w+)", config, re.M))
    client_chunk = inspect.signature(PurchaseIntentClient).parameters["max_batch"].default
    assert int(batching["max_batch_size"]) >= client_chunk
    assert batching["enable_large_batch_splitting"] == "true"
    assert int(batching["max_execution_batch_size"]) == 64
    assert batching["pad_variable_length_inputs"] == "false" and batching["num_batch_threads"] == "2"
    monitoring = (REPO / "serving" / "monitoring.config").read_text()
    assert 'path: "/monitoring/prometheus/metrics"' in monitoring and "enable: true" in monitoring
    assert parse_size("8MB") == 8 * 1024 * 1024 and parse_size("512KB") == 512 * 1024
