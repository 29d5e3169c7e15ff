"""The REST front end of the local server: TF Serving's HTTP/REST API (port 8501).

Follows ``tensorflow_serving/model_servers/http_rest_api_handler.cc``,
``http_rest_api_util.cc`` (paths), ``util/json_tensor.cc`` (JSON <-> tensors)
and ``http_server.cc`` (status codes), and the documented API (``api_rest.md``):

* ``GET /v1/models/<name>[/versions/<N>|/labels/<L>]``: model status, the
  JSON of ``GetModelStatusResponse`` (a label is ignored, as in gRPC);
* ``GET /v1/models/<name>[/versions/<N>|/labels/<L>]/metadata``:
  ``{"model_spec": {...}, "metadata": {"signature_def": {"signature_def": {...}}}}``;
* ``POST /v1/models/<name>[/versions/<N>|/labels/<L>]:predict`` with
  ``{"instances": [...]}`` (row format, answered ``{"predictions": [...]}``) or
  ``{"inputs": {...}}`` (columnar format, answered ``{"outputs": ...}``);
  strings are JSON strings or ``{"b64": "..."}``; ``:classify`` and
  ``:regress`` answer what TF Serving answers for a Predict-only model.

Errors are ``{"error": "<message>"}`` with the HTTP status TF Serving maps the
status code to (INVALID_ARGUMENT and FAILED_PRECONDITION 400, NOT_FOUND 404,
UNAVAILABLE 503, INTERNAL 500, ...). Paths match case-insensitively (the
``(?i)`` of TF Serving's regexes) but the verb and ``metadata`` are compared
exactly: ``:PREDICT`` is a malformed request (400) and ``.../METADATA`` the
model status. ``OPTIONS`` with an ``Origin: http(s)://...`` header is a CORS
preflight: 200, an empty body and the CORS headers (``http_server.cc``), 400
without one; ``HEAD`` and any other method are malformed requests (400).

Every sequence input of one request must have one width (JSON arrays are dense
tensors), the export's ``contract.json`` ``max_events`` (what the Python client
sends); the errors about sequence widths say so.

Examples:

    curl -s localhost:8501/v1/models/purchase_intent
    curl -s localhost:8501/v1/models/purchase_intent/labels/stable:predict -d @request.json
        # {"instances": [{"query": "red shoes", "item_id": ["sku1", "", ... ""], ...}]}, every
        # sequence right-padded with "" to contract.json max_events
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format

from purchase_intent.contract import SIGNATURE
from purchase_intent.serving.codec import dtype_name, numpy_dtype
from purchase_intent.serving.local.manager import LoadedVersion, ModelManager, RpcError
from purchase_intent.serving.protos import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    regression_pb2,
    types_pb2,
)

logger = logging.getLogger(__name__)

_API_PATH = re.compile(r"/v1/.*", re.IGNORECASE)
_VERSION_OR_LABEL = r"(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
_PREDICT_PATH = re.compile(rf"/v1/models/([^/:]+){_VERSION_OR_LABEL}:(classify|regress|predict)",
                           re.IGNORECASE)
_STATUS_PATH = re.compile(rf"/v1/models(?:/([^/:]+))?{_VERSION_OR_LABEL}(?:/(metadata))?", re.IGNORECASE)
_CORS_ORIGIN = re.compile(r"https?://")  # an OPTIONS request with such an Origin is a CORS preflight
_CORS_HEADERS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, GET",
                 "Access-Control-Allow-Headers": "Content-Type"}  # http_rest_api_util.cc AddCORSHeaders

# http_server.cc ToHTTPStatusCode.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
_BYTES_SUFFIX = "_bytes"  # outputs named *_bytes are written as {"b64": ...}
# json_tensor.cc IsLosslessDecimal: (largest integer the type holds exactly, largest finite value).
_FLOAT_LIMITS = {dt: ((1 << (np.finfo(t).nmant + 1)) - 1, float(np.finfo(t).max))
                 for dt, t in ((types_pb2.DT_FLOAT, np.float32), (types_pb2.DT_DOUBLE, np.float64))}


def _invalid(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.INVALID_ARGUMENT, message)


# -- JSON -> tensors (json_tensor.cc) -------------------------------------------

def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    return {dict: "Object", list: "Array", str: "String"}.get(type(value), "Number")


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _type_error(value: Any, dtype: int) -> RpcError:
    return _invalid(f"JSON Value: {_json_text(value)} Type: {_json_type(value)} is not of expected "
                    f"type: {dtype_name(dtype)[3:].lower()}")


def _leaf(value: Any, dtype: int) -> Any:
    """One JSON value -> one tensor element of ``dtype`` (AddValueToTensor)."""
    if dtype == types_pb2.DT_STRING:
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, dict):
            if not _is_b64(value):
                raise _invalid(f"JSON Value: {_json_text(value)} not formatted correctly for base64 data")
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise _invalid("Unable to base64 decode") from None
        raise _type_error(value, dtype)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):
        if not is_number:
            raise _type_error(value, dtype)
        max_int, max_value = _FLOAT_LIMITS[dtype]
        lossless = (abs(value) <= max_int if isinstance(value, int)  # IsLosslessDecimal: 20000000 is not
                    else not math.isfinite(value) or abs(value) <= max_value)  # nor 1e39
        if not lossless:
            raise _invalid(f"Cannot convert JSON value: {_json_text(value)} to "
                           f"{dtype_name(dtype)[3:].lower()} without loss of precision.")
        return value
    if dtype in (types_pb2.DT_INT32, types_pb2.DT_INT64):
        bits = 31 if dtype == types_pb2.DT_INT32 else 63
        in_range = isinstance(value, int) and -(1 << bits) <= value < (1 << bits)
        if isinstance(value, bool) or not in_range:
            raise _type_error(value, dtype)
        return value
    if dtype == types_pb2.DT_BOOL:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    raise RpcError(grpc.StatusCode.UNIMPLEMENTED,
                   f"Conversion of JSON Value: {_json_text(value)} to type: {dtype_name(dtype)}")


def _dense_shape(value: Any) -> list[int]:
    """Shape of a nested list, read along the first elements (GetDenseTensorShape)."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def json_to_array(value: Any, dtype: int) -> np.ndarray:
    """A JSON value (scalar or nested lists) -> numpy array of ``dtype`` (FillTensorProto).

    Raises:
        RpcError: INVALID_ARGUMENT for a ragged list, a value at the wrong
            depth or a value of the wrong type.
    """
    shape = _dense_shape(value)
    flat: list[Any] = []
    strings = dtype == types_pb2.DT_STRING

    def fill(v: Any, level: int) -> None:
        if not isinstance(v, list):
            if level != len(shape):
                raise _invalid(f"JSON Value: {_json_text(v)} found at incorrect level: {level + 1} "
                               f"in the JSON DOM. Expected at level: {len(shape)}")
            flat.append(_leaf(v, dtype))
            return
        if level >= len(shape):
            raise _invalid(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
        if len(v) != shape[level]:
            raise _invalid(f"Encountered list at unexpected size: {len(v)} at level: {level} "
                           f"expected size: {shape[level]}")
        if strings and level == len(shape) - 1 and set(map(type, v)) <= {str}:
            flat.extend(map(str.encode, v))  # a row of plain strings (UTF-8) in one C-level pass
            return
        for item in v:
            fill(item, level + 1)

    fill(value, 0)
    if strings:  # an object array of bytes, never numpy's fixed-width strings
        arr = np.empty(len(flat), dtype=object)
        arr[:] = flat
    else:
        arr = np.asarray(flat, dtype=numpy_dtype(dtype))
    return arr.reshape(shape)


def _instances_to_arrays(instances: Any, inputs: dict[str, int], advice: dict[str, str]) -> dict[str, np.ndarray]:
    """Row format: ``[{name: value}, ...]`` (or ``[value, ...]`` for one input) -> stacked arrays.

    ``advice``: text appended to a size error of that input (sequence inputs: how to pad).
    """
    if not isinstance(instances, list):
        raise _invalid(f"JSON Value: {_json_text({'instances': instances})} Excepting 'instances' to be "
                       "an list/array")
    if not instances:
        raise _invalid("JSON Value: {\"instances\":[]} No values in 'instances' array")
    as_objects = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if not as_objects and len(inputs) > 1:
        raise _invalid("instances is a plain list, but expecting list of objects as multiple input "
                       "tensors required as per tensorinfo_map")
    rows: dict[str, list[np.ndarray]] = {name: [] for name in inputs}
    for i, element in enumerate(instances):
        is_object = isinstance(element, dict) and not _is_b64(element)
        if as_objects and not is_object:
            raise _invalid(f"Expecting object but got list at item {i} of input list")
        if not as_objects and is_object:
            raise _invalid(f"Expecting value/list but got object at item {i} of input list")
        items = element.items() if as_objects else [(next(iter(sorted(inputs))), element)]
        for name, value in items:
            where = f"Failed to process element: {i} key: {name} of 'instances' list. Error: "
            if name not in inputs:
                raise _invalid(f"{where}JSON object: does not have named input: {name}")
            try:
                arr = json_to_array(value, inputs[name])
            except RpcError as e:
                raise _invalid(where + e.message) from None
            if rows[name] and arr.shape != rows[name][0].shape:
                first = rows[name][0]
                raise _invalid(where + (f"Expecting tensor size: {first.size} but got: {arr.size}"
                                        if arr.size != first.size else
                                        f"Expecting shape {list(first.shape)} but got: {list(arr.shape)}")
                               + advice.get(name, ""))
            rows[name].append(arr)
        if as_objects and set(element) != set(inputs):
            raise _invalid(f"Failed to process element: {i} of 'instances' list. JSON object: "
                           f"{_json_text(element)} keys must be equal to: {','.join(sorted(inputs))}")
    return {name: np.stack(arrs) for name, arrs in rows.items()}


def _inputs_to_arrays(columns: Any, inputs: dict[str, int], advice: dict[str, str]) -> dict[str, np.ndarray]:
    """Columnar format: ``{name: value}`` (or a bare value for one input) -> arrays.

    ``advice``: text appended to an error of that input (sequence inputs: how to pad).
    """
    if not isinstance(columns, dict) or _is_b64(columns):
        if len(inputs) > 1:
            raise _invalid("inputs is a plain value/list, but expecting an object as multiple input "
                           "tensors required as per tensorinfo_map")
        columns = {next(iter(inputs)): columns}
    out = {}
    for name in sorted(inputs):
        if name not in columns:
            raise _invalid(f"Missing named input: {name} in 'inputs' object.")
        try:
            out[name] = json_to_array(columns[name], inputs[name])
        except RpcError as e:
            raise RpcError(e.code, e.message + advice.get(name, "")) from None
    return out


# -- tensors -> JSON ---------------------------------------------------------------

def _json_values(arr: np.ndarray, as_bytes: bool) -> Any:
    """An output array -> nested lists of JSON values, written as TF Serving writes them."""
    if arr.dtype == np.float32:  # the shortest decimal that reads back as the same float32
        flat = [float(str(v)) for v in arr.reshape(-1)]
    elif arr.dtype == object:
        flat = [{"b64": base64.b64encode(v).decode("ascii")} if as_bytes else v.decode("utf-8", "replace")
                for v in arr.reshape(-1)]
    else:
        flat = arr.reshape(-1).tolist()
    holder = np.empty(len(flat), dtype=object)
    holder[:] = flat
    return holder.reshape(arr.shape).tolist()


def outputs_to_json(outputs: dict[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """``{output alias: array}`` -> ``{"predictions": ...}`` (row) or ``{"outputs": ...}`` (columnar)."""
    arrays = {name: outputs[name] for name in sorted(outputs)}
    if not arrays:
        raise _invalid("Cannot convert empty tensor map to JSON")
    values = {name: _json_values(arr, name.endswith(_BYTES_SUFFIX) and arr.dtype == object)
              for name, arr in arrays.items()}
    if not row_format:
        return {"outputs": values if len(values) > 1 else next(iter(values.values()))}
    batch = None
    for name, arr in arrays.items():
        if arr.ndim == 0:
            raise _invalid(f"Tensor name: {name} has no shape information ")
        if batch is not None and arr.shape[0] != batch:
            raise _invalid(f"Tensor name: {name} has inconsistent batch size: {arr.shape[0]} "
                           f"expecting: {batch}")
        batch = arr.shape[0]
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    return {"predictions": [{name: values[name][i] for name in values} for i in range(batch)]}


# -- requests ----------------------------------------------------------------------

class RestApi:
    """Answers TF Serving REST calls from a :class:`ModelManager`: ``handle(method, path, body)``.

    Args:
        manager: ModelManager. The model being served.
    """

    def __init__(self, manager: ModelManager):
        self.manager = manager

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """One HTTP request -> (HTTP status, JSON object); errors as ``{"error": message}``."""
        try:
            return 200, self._dispatch(method, path, body)
        except RpcError as e:
            logger.info("%s %s -> %s: %s", method, path, e.code.name, e.message)
            return HTTP_STATUS.get(e.code, 500), {"error": e.message}
        except Exception as e:  # never let one request take the server down
            logger.exception("%s %s failed", method, path)
            return 500, {"error": f"{type(e).__name__}: {e}"}

    def _dispatch(self, method: str, path: str, body: bytes) -> dict[str, Any]:
        malformed = _invalid(f"Malformed request: {method} {path}")
        match = None
        if method == "POST":
            match = _PREDICT_PATH.fullmatch(path)
        elif method == "GET":
            match = _STATUS_PATH.fullmatch(path)
        if match is None:
            raise malformed
        name, version, label, verb = match.groups()
        spec = self._model_spec(name, version, label)
        if method == "POST":  # the path matches case-insensitively, the verb exactly
            if verb not in ("predict", "classify", "regress"):
                raise malformed
            document = self._parse(body)
            if verb == "predict":
                return self._predict(spec, document)
            request = (classification_pb2.ClassificationRequest() if verb == "classify"
                       else regression_pb2.RegressionRequest())
            request.model_spec.CopyFrom(spec)
            self.manager.classify_or_regress(verb.capitalize(), request)  # always raises
        if not spec.name:
            raise _invalid("Missing model name in request.")
        if verb == "metadata":  # exactly: .../METADATA is the model status, as in TF Serving
            return self._metadata(spec)
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.CopyFrom(spec)
        response = self.manager.get_model_status(request)
        return json_format.MessageToDict(response, always_print_fields_with_no_presence=True)

    @staticmethod
    def _model_spec(name: str | None, version: str | None, label: str | None):
        spec = predict_pb2.PredictRequest().model_spec
        spec.name = urllib.parse.unquote(name or "")
        if version:
            try:
                spec.version.value = int(version)
            except ValueError:  # more digits than an int64 holds
                raise _invalid(f"Failed to convert version: {version} to numeric.") from None
        if label:
            spec.version_label = urllib.parse.unquote(label)
        return spec

    @staticmethod
    def _parse(body: bytes) -> dict[str, Any]:
        if not body:
            raise _invalid("JSON Parse error: The document is empty")
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise _invalid(f"JSON Parse error: {e}") from None
        if not isinstance(document, dict):
            raise _invalid(f"JSON Value: {_json_text(document)} Is not object")
        return document

    def _signature_inputs(self, servable: LoadedVersion, signature: str) -> dict[str, int]:
        if signature not in servable.signature_defs:
            raise _invalid(f'Serving signature name: "{signature}" not found in signature def')
        inputs = {name: info.dtype for name, info in servable.signature_defs[signature].inputs.items()}
        if not inputs:
            raise _invalid(f"Failed to get input map for signature: {signature}")
        return inputs

    def _predict(self, spec, document: dict[str, Any]) -> dict[str, Any]:
        """Predict: the JSON tensors (of the signature's dtypes) run as a gRPC request's would."""
        signature = document.get("signature_name", "")
        if not isinstance(signature, str):
            raise _invalid(f"JSON Value: {_json_text(document)} not formatted correctly. "
                           "'signature_name' key must be a string value.")
        servable = self.manager.resolve(spec)
        inputs = self._signature_inputs(servable, signature or SIGNATURE)
        if "instances" in document and "inputs" in document:
            raise _invalid("Not formatted correctly expecting only one of 'inputs' or 'instances' keys "
                           "to exist")
        advice = {name: f"; {name!r} is a sequence input: {servable.pad_advice}"
                  for name in servable.sequence_inputs}
        if "instances" in document:
            arrays = _instances_to_arrays(document["instances"], inputs, advice)
        elif "inputs" in document:
            arrays = _inputs_to_arrays(document["inputs"], inputs, advice)
        else:
            raise _invalid("Missing 'inputs' or 'instances' key")
        self.manager.check_signature(servable, signature)
        return outputs_to_json(self.manager.infer(servable, arrays), row_format="instances" in document)

    def _metadata(self, spec) -> dict[str, Any]:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.CopyFrom(spec)
        response = self.manager.get_model_metadata(request)
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_defs)

        def as_dict(message):
            return json_format.MessageToDict(message, always_print_fields_with_no_presence=True,
                                             preserving_proto_field_name=True)

        return {"model_spec": as_dict(response.model_spec),
                "metadata": {"signature_def": as_dict(signature_defs)}}


# -- HTTP server ---------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    server_version = "purchase-intent-local-serving"
    api: RestApi
    max_request_bytes: int

    def _answer(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        too_large = length > self.max_request_bytes
        body = self.rfile.read(length) if length and not too_large else b""
        headers = {"Content-Type": "application/json"}
        if not _API_PATH.fullmatch(path):
            status, payload = 404, {"error": f"Not found: {path} (the REST API is under /v1/)"}
        elif too_large:
            status, payload = 429, {"error": f"Request body of {length} bytes is larger than this "
                                             f"server's limit of {self.max_request_bytes} bytes"}
            headers["Connection"] = "close"
            self.close_connection = True
        elif self.command == "OPTIONS":  # http_server.cc: answered before the API handler, no body
            preflight = _CORS_ORIGIN.search(self.headers.get("Origin", ""))
            status, payload, headers = (200, None, _CORS_HEADERS) if preflight else (400, None, {})
        else:
            status, payload = self.api.handle(self.command, path, body)
        data = b"" if payload is None else (json.dumps(payload, indent=4) + "\n").encode("utf-8")
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has the headers of the body, not the body
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _answer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (BaseHTTPRequestHandler's name)
        logger.debug("%s %s", self.address_string(), format % args)


class RestServer:
    """The REST API on its own port, in background threads (``ThreadingHTTPServer``).

    Args:
        manager: ModelManager. The model being served.
        host: str. Interface to bind.
        port: int. 0 picks a free port.
        max_request_bytes: int. Largest request body (larger: HTTP 429).
    """

    def __init__(self, manager: ModelManager, host: str, port: int, max_request_bytes: int):
        handler = type("Handler", (_Handler,), {"api": RestApi(manager),
                                                "max_request_bytes": int(max_request_bytes)})
        self._httpd = _server_class(host)((host.strip("[]"), port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="purchase-intent-rest",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops answering (requests in progress finish on their own threads)."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)


def _server_class(host: str) -> type[ThreadingHTTPServer]:
    if ":" not in host:
        return ThreadingHTTPServer
    return type("ThreadingHTTPServerV6", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
