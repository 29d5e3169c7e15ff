"""local/rest_api.py: the local server answers plain HTTP (curl-equivalent) calls as TF Serving's REST API.

Requests are hand-written JSON sent with urllib; the answers are checked
against TF Serving's documented shapes (api_rest.md) and its sources
(http_rest_api_handler.cc, json_tensor.cc, http_server.cc for the status codes).
The server (conftest ``two_version_server``) serves versions 1 and 2 of one tiny export.
"""

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPConnection

import numpy as np
import pandas as pd
import pytest

MODEL = "purchase_intent"


def http(server, method: str, path: str, body=None) -> tuple[int, dict]:
    """One request -> (HTTP status, JSON body); ``body`` is sent as JSON (or as is if bytes/str)."""
    data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
    request = urllib.request.Request(server.rest_url + path, method=method,
                                     data=data.encode() if isinstance(data, str) else data)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        assert e.headers["Content-Type"] == "application/json"
        return e.code, json.loads(e.read())


def raw_http(server, method: str, path: str, headers=None) -> tuple[int, dict, bytes]:
    """One request without a body -> (HTTP status, headers, raw body), for methods urllib does not read."""
    url = urllib.parse.urlsplit(server.rest_url)
    connection = HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def raw_rows(exported):
    """The fixture's sample plus an empty event inside a session and a float-looking category,
    and the in-memory model's probabilities of exactly these raw values."""
    from purchase_intent.preprocessing import raw_batch

    sample = pd.concat([exported["sample"], exported["sample"].iloc[[5]]], ignore_index=True)
    row = len(sample) - 1
    sample.at[row, "item_id"] = ["sku1", "", "sku2"]
    sample.at[row, "event_type"] = ["view", "", "cart"]
    sample.at[row, "item_title"] = ["red mug", "", "blue mug"]
    sample.at[row, "country"] = "3.0"
    schema = exported["schema"]
    expected = exported["model"](exported["pre"](raw_batch(sample, schema)), training=False)
    return sample, np.asarray(expected).reshape(-1)


def columns(sample, schema, width: int | None = None) -> dict:
    """Columnar JSON: every sequence column right-padded with "" to one width (JSON arrays are dense),
    ``width`` (keeping the most recent events) or the longest list."""
    out = {name: [str(v) for v in sample[name]] for name in schema.text + schema.categorical}
    for name in schema.sequence_like:
        size = width or max([len(v) for v in sample[name]] + [1])
        out[name] = [list(v)[-size:] + [""] * (size - len(list(v)[-size:])) for v in sample[name]]
    for name in schema.numeric:  # NaN is written as NaN, which TF Serving's parser accepts
        out[name] = [float(v) for v in sample[name]]
    return out


def instances(sample, schema, width: int | None = None) -> list[dict]:
    cols = columns(sample, schema, width)
    return [{name: cols[name][i] for name in cols} for i in range(len(sample))]


def test_predict_row_format_equals_in_memory_model(two_version_server, exported):
    sample, expected = raw_rows(exported)
    for path in (f"/v1/models/{MODEL}:predict", f"/v1/models/{MODEL}/labels/stable:predict"):
        status, body = http(two_version_server, "POST", path,
                            {"signature_name": "serving_default",
                             "instances": instances(sample, exported["schema"])})
        assert status == 200, body
        assert list(body) == ["predictions"] and len(body["predictions"]) == len(sample)
        np.testing.assert_allclose(np.array(body["predictions"], np.float32), expected, atol=1e-5)


def test_predict_columnar_format_equals_in_memory_model(two_version_server, exported):
    sample, expected = raw_rows(exported)
    status, body = http(two_version_server, "POST", f"/v1/models/{MODEL}/versions/1:predict",
                        {"inputs": columns(sample, exported["schema"])})
    assert status == 200, body
    assert list(body) == ["outputs"]  # one output: the value itself, not {name: value}
    np.testing.assert_allclose(np.array(body["outputs"], np.float32), expected, atol=1e-5)


def test_model_status_paths(two_version_server):
    """A label is ignored as in gRPC: every version, newest first; a version number selects one."""
    ok = {"error_code": "OK", "error_message": ""}
    newest_first = [{"version": "2", "state": "AVAILABLE", "status": ok},
                    {"version": "1", "state": "AVAILABLE", "status": ok}]
    for path in (f"/v1/models/{MODEL}", f"/v1/models/{MODEL}/labels/stable"):
        assert http(two_version_server, "GET", path) == (200, {"model_version_status": newest_first})
    assert http(two_version_server, "GET", f"/v1/models/{MODEL}/versions/1") == (
        200, {"model_version_status": newest_first[1:]})


def test_metadata(two_version_server, exported):
    status, body = http(two_version_server, "GET", f"/v1/models/{MODEL}/labels/stable/metadata")
    assert status == 200, body
    assert body["model_spec"] == {"name": MODEL, "signature_name": "", "version": "1"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert set(signatures) == {"serving_default", "__saved_model_init_op"}
    serving = signatures["serving_default"]
    assert serving["method_name"] == "tensorflow/serving/predict"
    assert set(serving["inputs"]) == set(exported["schema"].feature_names)
    assert serving["inputs"]["item_id"]["dtype"] == "DT_STRING"
    assert [d["size"] for d in serving["inputs"]["item_id"]["tensor_shape"]["dim"]] == ["-1", "-1"]
    assert serving["outputs"]["purchase_probability"]["dtype"] == "DT_FLOAT"


def _one_row(exported):
    return instances(exported["sample"].iloc[[4]], exported["schema"])


ERRORS = {  # name: (method, path, body or callable(exported), HTTP status, words in "error")
    "unknown model": ("GET", "/v1/models/nope", None, 404, ["nope"]),
    "unknown version": ("GET", f"/v1/models/{MODEL}/versions/9/metadata", None, 404, ["9"]),
    "unknown label": ("POST", f"/v1/models/{MODEL}/labels/beta:predict",
                      lambda e: {"instances": _one_row(e)}, 400,
                      ["Unrecognized servable version label: beta"]),
    "malformed path": ("GET", f"/v1/models/{MODEL}/versions/x", None, 400,
                       [f"Malformed request: GET /v1/models/{MODEL}/versions/x"]),
    "predict with GET": ("GET", f"/v1/models/{MODEL}:predict", None, 400, ["Malformed request"]),
    "empty body": ("POST", f"/v1/models/{MODEL}:predict", b"", 400, ["JSON Parse error"]),
    "not JSON": ("POST", f"/v1/models/{MODEL}:predict", b"{instances", 400, ["JSON Parse error"]),
    "no instances or inputs": ("POST", f"/v1/models/{MODEL}:predict", {"rows": []}, 400,
                               ["Missing 'inputs' or 'instances' key"]),
    "both formats": ("POST", f"/v1/models/{MODEL}:predict", {"instances": [1], "inputs": [1]}, 400,
                     ["only one of 'inputs' or 'instances'"]),
    "empty instances": ("POST", f"/v1/models/{MODEL}:predict", {"instances": []}, 400,
                        ["No values in 'instances' array"]),
    "missing key": ("POST", f"/v1/models/{MODEL}:predict",
                    lambda e: {"instances": [{k: v for k, v in _one_row(e)[0].items() if k != "query"}]}, 400,
                    ["keys must be equal to"]),
    "number as string": ("POST", f"/v1/models/{MODEL}:predict",
                         lambda e: {"instances": [{**_one_row(e)[0], "price_seen": "cheap"}]}, 400,
                         ["is not of expected type: float"]),
    "ragged columns": ("POST", f"/v1/models/{MODEL}:predict",
                       lambda e: {"inputs": {**columns(e["sample"].head(2), e["schema"]),
                                             "item_id": [["a"], ["b", "c"]]}}, 400,
                       ["Encountered list at unexpected size"]),
    "unknown signature": ("POST", f"/v1/models/{MODEL}:predict",
                          lambda e: {"signature_name": "train", "instances": _one_row(e)}, 400,
                          ['Serving signature name: "train" not found']),
    "classify": ("POST", f"/v1/models/{MODEL}:classify", {"examples": [{"x": 1}]}, 400,
                 ["Expected one input Tensor."]),
    "not the API": ("GET", "/v2/models", None, 404, []),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_have_tf_serving_codes_and_json_body(case, two_version_server, exported):
    method, path, body, code, words = ERRORS[case]
    status, answer = http(two_version_server, method, path, body(exported) if callable(body) else body)
    assert status == code, answer
    assert list(answer) == ["error"] and isinstance(answer["error"], str)
    for word in words:
        assert word in answer["error"], answer["error"]


def test_float_output_is_the_shortest_round_trip_text(two_version_server, exported):
    """TF Serving writes a float32 as the shortest decimal that reads back as the same float32."""
    status, body = http(two_version_server, "POST", f"/v1/models/{MODEL}:predict",
                        {"instances": _one_row(exported)})
    value = body["predictions"][0]
    assert status == 200 and isinstance(value, float) and not math.isnan(value)
    assert repr(value) == str(np.float32(value))


def test_raw_json_equals_the_python_predictor_on_the_same_table(two_version_server, exported):
    """Row and columnar JSON of the raw values give the Predictor's probabilities (one contract)."""
    from local_grpc_test import caller_table
    from purchase_intent.predict import Predictor

    table = caller_table(exported)
    expected = Predictor(exported["vdir"]).predict(table)
    schema = exported["schema"]
    for document in ({"instances": instances(table, schema)}, {"inputs": columns(table, schema)}):
        status, body = http(two_version_server, "POST", f"/v1/models/{MODEL}:predict", document)
        assert status == 200, body
        got = body["predictions"] if "predictions" in body else body["outputs"]
        np.testing.assert_allclose(np.array(got, np.float32), expected, atol=1e-6)


def test_verbs_are_case_sensitive_the_rest_of_the_path_is_not(two_version_server, exported):
    """http_rest_api_util.cc matches paths with (?i) regexes, then compares the verb with "predict" /
    "classify" / "regress" and the subresource with "metadata" exactly."""
    body = {"instances": _one_row(exported)}
    status, answer = http(two_version_server, "POST", f"/v1/models/{MODEL}:PREDICT", body)
    assert (status, answer) == (400, {"error": f"Malformed request: POST /v1/models/{MODEL}:PREDICT"})
    status, answer = http(two_version_server, "POST", f"/V1/Models/{MODEL}/Versions/1:predict", body)
    assert status == 200 and len(answer["predictions"]) == 1
    status, answer = http(two_version_server, "GET", f"/v1/MODELS/{MODEL}/METADATA")
    assert status == 200 and list(answer) == ["model_version_status"]  # not "metadata": the status


def test_options_is_a_cors_preflight_and_head_a_malformed_request(two_version_server):
    """http_server.cc answers an OPTIONS request with an http(s) Origin before the API handler: 200,
    an empty body, the CORS headers; HEAD goes to the handler, which knows only GET and POST (400)."""
    path = f"/v1/models/{MODEL}:predict"
    status, headers, body = raw_http(two_version_server, "OPTIONS", path, {"Origin": "http://localhost:3000"})
    assert (status, body) == (200, b"")
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Allow-Methods"] == "POST, GET"
    assert raw_http(two_version_server, "OPTIONS", path)[0] == 400
    status, headers, body = raw_http(two_version_server, "HEAD", f"/v1/models/{MODEL}")
    assert (status, body) == (400, b"") and headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("number, accepted", [(16777215, True), (20000000.0, True), (3.0e38, True),
                                              (20000000, False), (16777217, False), (1e39, False)])
def test_float_inputs_take_numbers_as_json_tensor_cc_does(two_version_server, exported, number, accepted):
    """json_tensor.cc IsLosslessDecimal<float>: an integer literal must be at most 2**24 - 1, a decimal
    within float32's range; anything else is INVALID_ARGUMENT "without loss of precision" (checked in
    TF Serving's sources: 20000000 and 1e39 are refused, not rounded or turned into inf)."""
    row = {**_one_row(exported)[0], "price_seen": number}
    status, answer = http(two_version_server, "POST", f"/v1/models/{MODEL}:predict", {"instances": [row]})
    if accepted:
        assert status == 200, answer
    else:
        text = json.dumps(number)
        assert (status, answer) == (400, {"error": f"Failed to process element: 0 key: price_seen of "
                                                   f"'instances' list. Error: Cannot convert JSON value: "
                                                   f"{text} to float without loss of precision."})


def test_numbers_shaped_n_by_1_are_accepted_with_the_n_answer(two_version_server, exported):
    """[x] for a number makes a [N, 1] tensor; TF Serving feeds it as is and the graph flattens it."""
    sample, schema = exported["sample"], exported["schema"]
    status, flat = http(two_version_server, "POST", f"/v1/models/{MODEL}:predict",
                        {"inputs": columns(sample, schema)})
    assert status == 200, flat
    document = {"inputs": {**columns(sample, schema), **{n: [[float(v)] for v in sample[n]] for n in schema.numeric}}}
    status, nested = http(two_version_server, "POST", f"/v1/models/{MODEL}:predict", document)
    assert status == 200, nested
    assert nested == flat


def test_sequence_widths_errors_say_to_pad_to_the_contract(two_version_server, exported):
    """Different widths across sequence inputs, across instances, or within a column: INVALID_ARGUMENT
    naming the input and saying to pad with "" to contract.json max_events."""
    from purchase_intent.contract import read_contract

    sample, schema = exported["sample"].head(3), exported["schema"]
    max_events = read_contract(exported["vdir"])["max_events"]
    advice = f'pad with "" to {max_events} events (contract.json max_events)'
    rows = instances(sample, schema, width=max_events)
    status, answer = http(two_version_server, "POST", f"/v1/models/{MODEL}:predict", {"instances": rows})
    assert status == 200, answer
    wider = [{**row, "item_id": row["item_id"] + ["", ""]} for row in rows]
    longer_second = [rows[0], {**rows[1], "item_id": rows[1]["item_id"] + [""]}, rows[2]]
    ragged_column = {**columns(sample, schema, width=max_events),
                     "event_type": [r["event_type"] + [""] * i for i, r in enumerate(rows)]}
    for document, words in (({"instances": wider}, [f"'item_id' {max_events + 2}", f"'event_type' {max_events}"]),
                            ({"instances": longer_second}, ["element: 1 key: item_id", "'item_id' is a sequence"]),
                            ({"inputs": ragged_column}, ["Encountered list at unexpected size",
                                                         "'event_type' is a sequence"])):
        status, answer = http(two_version_server, "POST", f"/v1/models/{MODEL}:predict", document)
        assert status == 400, answer
        for word in words + [advice]:
            assert word in answer["error"], answer["error"]
