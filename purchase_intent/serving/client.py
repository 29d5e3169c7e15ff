"""gRPC client for a model served by TF Serving (or the local stand-in, ``serving/local/``).

Requests are built from the feature schema: one ``TensorProto`` per raw
feature, under the feature's own name (``request.inputs["query"]``, ...),
with ``model_spec.signature_name = "serving_default"`` and a deadline on
every call, as in ``tensorflow_serving/example/resnet_client_grpc.py``.
The model does its own preprocessing, so the client only validates and packs
raw values. Importing it loads neither TensorFlow nor Keras (the protobuf
modules come from ``protos.py``, tensors are packed by ``codec.py``).

Examples:

>>> from purchase_intent.serving import PurchaseIntentClient
>>> client = PurchaseIntentClient("127.0.0.1:8500")  # doctest: +SKIP
>>> client.predict([{"query": "buy red shoes", "item_id": ["sku1", "sku7"],
...                  "event_type": ["view", "cart"], "item_title": ["red shoes", "shoe box"],
...                  "session_minutes": 3.5, "pages_viewed": 4, "price_seen": 30.0,
...                  "device": "mobile", "country": "UK"}])  # doctest: +SKIP
array([0.62], dtype=float32)
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterable, Mapping

import grpc
import numpy as np
import pandas as pd

from purchase_intent.contract import (
    DEFAULT_MAX_EVENTS, OUTPUT_KEY, SIGNATURE, frame_to_arrays, read_contract)
from purchase_intent.schema import FeatureSchema
from purchase_intent.serving.codec import dtype_name, ndarray_to_tensor_proto, tensor_proto_to_ndarray
from purchase_intent.serving.protos import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    tensor_pb2,
)

logger = logging.getLogger(__name__)

# Events per sequence in a request when no contract is given
# (``contract.DEFAULT_MAX_EVENTS``); with a contract, its ``max_events``. Every
# request gets exactly this width, so requests that TF Serving's batching puts
# together always have equal shapes (serving/batching.config keeps
# pad_variable_length_inputs off: TF Serving would pad with the tensor's first
# value, a real event, not ""). Raw gRPC or REST callers must send one width
# for the same reason. The model reads only its ``max_events`` most recent
# events, so dropping older ones is lossless.
DEFAULT_SEQUENCE_LENGTH = DEFAULT_MAX_EVENTS
FROM_CONTRACT = "contract"  # sequence_length: the contract's max_events (DEFAULT_SEQUENCE_LENGTH without one)
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class ServingError(RuntimeError):
    """A failed call to the model server.

    Args:
        code: grpc.StatusCode. The server's status code.
        details: str. The server's message.
        model_name: str. Model the call was for.
        version: str. Version (or label) the call asked for; "latest" if none.
    """

    def __init__(self, code: grpc.StatusCode, details: str, model_name: str, version: str,
                 method: str = "Predict"):
        self.code = code
        self.details = details
        self.model_name = model_name
        self.version = version
        self.method = method
        super().__init__(f"{method} on model {model_name!r} version {version} failed with "
                         f"{code.name}: {details}")


# -- tables -> arrays ---------------------------------------------------------

def schema_from_signature(inputs: Mapping[str, Mapping[str, Any]]) -> FeatureSchema:
    """A schema that validates and packs inputs for a signature.

    ``DT_STRING`` of rank 1 is read as scalar text/categorical, rank 2 as an
    event sequence, ``DT_FLOAT`` rank 1 as numeric. Text and categorical
    columns (and sequences and per-event text) are packed alike, so this is
    enough to build requests; it is not the training schema.

    Args:
        inputs: ``{name: {"dtype": "DT_STRING", "shape": [-1, -1]}}`` as in
            ``PurchaseIntentClient.metadata()["inputs"]``.

    Raises:
        ValueError: an input of another dtype or rank.
    """
    text, sequences, numeric = [], [], []
    for name in sorted(inputs):
        dtype, rank = inputs[name]["dtype"], len(inputs[name]["shape"])
        if dtype == "DT_STRING" and rank == 1:
            text.append(name)
        elif dtype == "DT_STRING" and rank == 2:
            sequences.append(name)
        elif dtype == "DT_FLOAT" and rank == 1:
            numeric.append(name)
        else:
            raise ValueError(f"signature input {name!r} is {dtype} of rank {rank}; this client "
                             "packs DT_STRING [batch], DT_STRING [batch, events] and DT_FLOAT [batch]")
    label = "__label__"
    while label in inputs:
        label += "_"
    return FeatureSchema(label=label, text=text, sequences=sequences, numeric=numeric)


def to_frame(records: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """A DataFrame or a list of dicts -> DataFrame (lists stay lists)."""
    if isinstance(records, pd.DataFrame):
        return records
    if isinstance(records, Mapping):
        raise TypeError("predict() takes a list of dicts (one per example) or a DataFrame, "
                        "not a single dict; wrap it in a list")
    return pd.DataFrame.from_records(list(records))


# -- client ------------------------------------------------------------------

class PurchaseIntentClient:
    """Scores raw examples against a model served over gRPC.

    Args:
        target: str. ``host:port`` of TF Serving's gRPC port (8500).
        model_name: str. The served model name.
        version: int or None. A specific version; None for the latest.
        version_label: str or None. A version label ("stable", "canary"); not with ``version``.
        timeout: float. Deadline of each call, in seconds.
        max_retries: int. Retries after an UNAVAILABLE answer (server starting,
            restarting or unreachable), with exponential backoff.
        schema: FeatureSchema or None. Raw features of the model; None reads
            them from the model's signature (``metadata()``) on first use.
        sequence_length: int, None or "contract". Width of every sequence
            tensor sent; None: the longest session of each request; "contract":
            the contract's ``max_events`` (``DEFAULT_SEQUENCE_LENGTH`` without a contract).
        contract: a version folder, a ``contract.json`` or its dict (None: no
            contract). Gives the schema (from its ``inputs``, unless ``schema``
            is given) and the sequence width (:mod:`purchase_intent.contract`).
        max_batch: int. Larger inputs to ``predict`` are sent in several requests.
        backoff_seconds: float. First retry delay; doubles on each retry.

    Examples:

    >>> client = PurchaseIntentClient("127.0.0.1:8500", version_label="stable")  # doctest: +SKIP
    >>> client.status()  # doctest: +SKIP
    [{'version': 3, 'state': 'AVAILABLE', 'error_code': 'OK', 'error_message': ''}]
    >>> client.predict_labels(frame, threshold=0.42)  # doctest: +SKIP
    array([0, 1, 0])
    """

    def __init__(self, target: str, model_name: str = "purchase_intent", version: int | None = None,
                 version_label: str | None = None, timeout: float = 10.0, max_retries: int = 3,
                 schema: FeatureSchema | None = None,
                 sequence_length: int | str | None = FROM_CONTRACT, max_batch: int = 1024,
                 backoff_seconds: float = 0.1, contract: Any = None):
        if version is not None and version_label:
            raise ValueError("Give a version or a version_label, not both")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.contract = read_contract(contract) if contract is not None else None
        if sequence_length == FROM_CONTRACT:
            sequence_length = (int(self.contract["max_events"]) if self.contract
                               else DEFAULT_SEQUENCE_LENGTH)
        if schema is None and self.contract:
            schema = schema_from_signature(self.contract["inputs"])
        if sequence_length is not None and sequence_length < 1:
            raise ValueError(f"sequence_length must be >= 1 or None, got {sequence_length}")
        self.target = target
        self.model_name = model_name
        self.version = version
        self.version_label = version_label
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.sequence_length = sequence_length
        self.max_batch = int(max_batch)
        self.backoff_seconds = float(backoff_seconds)
        self._schema = schema
        self._channel = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
        ])
        self._predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._model_stub = model_service_pb2_grpc.ModelServiceStub(self._channel)

    # -- lifecycle
    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "PurchaseIntentClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"PurchaseIntentClient({self.target!r}, model_name={self.model_name!r}, "
                f"version={self._version_text()})")

    # -- helpers
    def _version_text(self) -> str:
        if self.version is not None:
            return str(self.version)
        if self.version_label:
            return f"label {self.version_label!r}"
        return "latest"

    def _fill_spec(self, spec, signature: bool = True) -> None:
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = int(self.version)
        elif self.version_label:
            spec.version_label = self.version_label
        if signature:
            spec.signature_name = SIGNATURE

    def _call(self, method: str, fn, request):
        """Calls ``fn(request)`` with the deadline; retries UNAVAILABLE only."""
        delay = self.backoff_seconds
        for attempt in range(self.max_retries + 1):
            try:
                return fn(request, timeout=self.timeout)
            except grpc.RpcError as e:
                code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
                details = (e.details() if hasattr(e, "details") else str(e)) or ""
                if code == grpc.StatusCode.UNAVAILABLE and attempt < self.max_retries:
                    logger.warning("%s on %s: UNAVAILABLE (%s); retry %d/%d in %.2f s", method,
                                   self.target, details, attempt + 1, self.max_retries, delay)
                    time.sleep(delay)
                    delay *= 2
                    continue
                if code == grpc.StatusCode.UNAVAILABLE:
                    details = f"{details} (after {attempt + 1} attempts to reach {self.target})"
                raise ServingError(code, details, self.model_name, self._version_text(),
                                   method) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # -- schema
    @property
    def schema(self) -> FeatureSchema:
        """The schema used to validate and pack inputs (read from the signature if not given)."""
        if self._schema is None:
            self._schema = schema_from_signature(self.metadata()["inputs"])
            s = self._schema
            logger.info("No schema or contract given: inputs packed by the %r signature's types (%d string "
                        "columns %s, %d event lists %s, %d numbers %s); give the export's "
                        "assets.extra/contract.json (or --schema) to check rows against the training schema",
                        self.model_name, len(s.text), s.text, len(s.sequences), s.sequences,
                        len(s.numeric), s.numeric)
        return self._schema

    # -- prediction
    def build_request(self, inputs: Mapping[str, Any]) -> predict_pb2.PredictRequest:
        """A ``PredictRequest`` for this client's model spec from ``{name: array}``, sent as is."""
        request = predict_pb2.PredictRequest()
        self._fill_spec(request.model_spec)
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(
                value if isinstance(value, tensor_pb2.TensorProto) else ndarray_to_tensor_proto(value))
        return request

    def predict_request(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """Sends a prepared ``PredictRequest`` (with deadline and retries); returns the response."""
        return self._call("Predict", self._predict_stub.Predict, request)

    def predict_arrays(self, inputs: Mapping[str, Any]) -> np.ndarray:
        """Sends ``{name: array}`` without validation (dtypes as given); returns the probabilities."""
        response = self.predict_request(self.build_request(inputs))
        if OUTPUT_KEY not in response.outputs:
            raise ServingError(grpc.StatusCode.INTERNAL,
                               f"the response has no {OUTPUT_KEY!r} output, only {list(response.outputs)}",
                               self.model_name, self._version_text())
        return tensor_proto_to_ndarray(response.outputs[OUTPUT_KEY]).astype(np.float32).reshape(-1)

    def predict(self, records: pd.DataFrame | Iterable[Mapping[str, Any]]) -> np.ndarray:
        """Purchase probabilities of raw examples.

        Args:
            records: a DataFrame or a list of dicts keyed by the raw feature
                names; sequences as lists or ``|``-delimited strings; other
                columns (a label, ids) are ignored.

        Returns:
            float32 array ``[n]``.

        Raises:
            SchemaError: a missing column or a bad value (column and row named).
            ServingError: the server refused the request or could not be reached.
        """
        df = to_frame(records)
        if len(df) == 0:
            return np.zeros([0], np.float32)
        schema = self.schema
        df = schema.validate(df, require_label=False, where="predict")
        parts = []
        for start in range(0, len(df), self.max_batch):
            chunk = df.iloc[start:start + self.max_batch]
            probs = self.predict_arrays(frame_to_arrays(chunk, schema, self.sequence_length))
            if probs.shape != (len(chunk),):
                raise ServingError(grpc.StatusCode.INTERNAL,
                                   f"expected {len(chunk)} probabilities, got shape {probs.shape}",
                                   self.model_name, self._version_text())
            parts.append(probs)
        return np.concatenate(parts)

    def predict_labels(self, records: pd.DataFrame | Iterable[Mapping[str, Any]],
                       threshold: float) -> np.ndarray:
        """0/1 decisions: ``predict(records) >= threshold`` (e.g. the export's threshold.json)."""
        return (self.predict(records) >= float(threshold)).astype(np.int64)

    # -- model information
    def metadata(self) -> dict[str, Any]:
        """The served signature, via ``GetModelMetadata``.

        Returns:
            ``{"model_name", "version", "signature_name", "method_name",
            "inputs": {name: {"dtype": "DT_STRING", "shape": [-1, -1]}}, "outputs": {...}}``
            (-1: any size).
        """
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._fill_spec(request.model_spec, signature=False)
        request.metadata_field.append("signature_def")
        response = self._call("GetModelMetadata", self._predict_stub.GetModelMetadata, request)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sig_map)
        if SIGNATURE not in sig_map.signature_def:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"no {SIGNATURE!r} signature; the model has {list(sig_map.signature_def)}",
                               self.model_name, self._version_text(), "GetModelMetadata")
        sig = sig_map.signature_def[SIGNATURE]

        def describe(infos):
            return {name: {"dtype": dtype_name(info.dtype),
                           "shape": [int(d.size) for d in info.tensor_shape.dim]}
                    for name, info in sorted(infos.items())}

        return {"model_name": response.model_spec.name,
                "version": int(response.model_spec.version.value),
                "signature_name": SIGNATURE, "method_name": sig.method_name,
                "inputs": describe(sig.inputs), "outputs": describe(sig.outputs)}

    def status(self) -> list[dict[str, Any]]:
        """Version states, via ``ModelService.GetModelStatus``.

        Returns:
            ``[{"version": 2, "state": "AVAILABLE", "error_code": "OK", "error_message": ""}, ...]``
        """
        request = get_model_status_pb2.GetModelStatusRequest()
        self._fill_spec(request.model_spec, signature=False)
        response = self._call("GetModelStatus", self._model_stub.GetModelStatus, request)
        out = []
        for s in response.model_version_status:
            out.append({
                "version": int(s.version),
                "state": get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
                "error_code": _error_code_name(s.status.error_code),
                "error_message": s.status.error_message,
            })
        return sorted(out, key=lambda d: d["version"])


def _error_code_name(code: int) -> str:
    try:
        return grpc.StatusCode(_GRPC_CODES[code]).name
    except (KeyError, ValueError):
        return str(code)


# grpc.StatusCode values are (int, name) tuples; TF error codes use the same numbers.
_GRPC_CODES = {c.value[0]: c.value for c in grpc.StatusCode}
