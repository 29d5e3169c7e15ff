"""The core of the local server: loads, swaps and runs the versions of one model.

Both front ends (``grpc_api.py`` on the gRPC port, ``rest_api.py`` on the
REST port) turn their requests into TF Serving's request protos and call
:class:`ModelManager`, which answers with TF Serving's response protos or
raises :class:`RpcError` with the status code TF Serving gives in that case
(checked against ``tensorflow_serving/`` sources; each rule names its source):

* unknown version label: INVALID_ARGUMENT ("Unrecognized servable version
  label", ``server_core.cc``); a label or version that is not loaded: NOT_FOUND;
* GetModelStatus ignores ``version_label`` and lists every version, newest
  first (``get_model_status_impl.cc`` reads only ``model_spec.version``;
  ``ServableStateMonitor::VersionMap`` is ordered by ``std::greater``); a model
  name it does not know, the empty name too, is NOT_FOUND ("Could not find any
  versions of model"), a request without ``model_spec`` INVALID_ARGUMENT;
* Predict runs the export as TF Serving does (TF1 loader, ``Session``, Grappler
  on: :class:`~purchase_intent.serving.session.SessionModel`) and, like
  ``predict_util.cc``, checks input names and dtypes but not shapes: the graph
  decides (a numeric input sent ``[N, 1]`` for its ``[N]`` is accepted, with the
  ``[N]`` answer); what the graph rejects is INVALID_ARGUMENT, with the inputs
  whose shapes differ from the signature's named next to the graph's message;
* a duplicate ``output_filter`` alias: INVALID_ARGUMENT (``predict_util.cc``);
* an empty batch runs the model: OK with outputs of shape ``[0]``;
* GetModelMetadata returns every SignatureDef of the MetaGraph, including
  ``__saved_model_init_op`` (``get_model_metadata_impl.cc``);
* Classify / Regress on this Predict-only model: INVALID_ARGUMENT ("Expected
  one input Tensor.", ``classifier.cc`` / ``regressor.cc`` with TF Serving's
  default ``--enable_signature_method_name_check=false``);
* MultiInference: the checks of ``multi_inference.cc`` in its order, then the
  same INVALID_ARGUMENT for a classify / regress task, UNIMPLEMENTED for any
  other method name (:meth:`ModelManager.multi_inference`).

One check is the stand-in's own: the sequence inputs of a request must have one
width, else INVALID_ARGUMENT naming them and their widths and saying to pad with
``""`` to the contract's ``max_events``. Without batching TF Serving runs such a
request (the graph reads the padding), but with ``serving/batching.config``
requests of different widths cannot be batched together and fail with a
cryptic "different shapes and padding is turned off".
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Mapping

import grpc
import numpy as np

from purchase_intent.contract import DEFAULT_MAX_EVENTS, SIGNATURE, read_contract
from purchase_intent.serving.codec import dtype_name, ndarray_to_tensor_proto, tensor_proto_to_ndarray
from purchase_intent.serving.protos import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
    types_pb2,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024
_STATE = get_model_status_pb2.ModelVersionStatus.State
# MultiInference task method names (tensorflow/cc/saved_model/signature_constants.h) -> method.
MULTI_INFERENCE_METHODS = {"tensorflow/serving/classify": "Classify", "tensorflow/serving/regress": "Regress"}


class RpcError(Exception):
    """An answer other than OK: a gRPC status code and a message for the caller."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One signature input: name, TF dtype enum and dims (-1: any size)."""

    name: str
    dtype: int
    dims: tuple[int, ...]

    def describe(self) -> str:
        dims = ["batch" if i == 0 else ("n" if d < 0 else str(d)) for i, d in enumerate(self.dims)]
        return f"{dtype_name(self.dtype)} [{', '.join(dims)}]"


class LoadedVersion:
    """One loaded SavedModel version, run as TF Serving runs it (:class:`SessionModel`).

    Args:
        version: int. Version number.
        path: Path. The version folder.

    Attributes:
        model: the :class:`~purchase_intent.serving.session.SessionModel`.
        signature_defs: every SignatureDef of the ``serve`` MetaGraph, ``__saved_model_init_op``
            too, as TF Serving's GetModelMetadata returns them.
        inputs: ``{name: InputSpec}`` of the ``serving_default`` signature; ``output_keys`` its outputs.
        sequence_inputs: the ``DT_STRING [batch, events]`` inputs.
        pad_advice: what to do about sequence widths: pad with ``""`` to the
            contract's ``max_events`` (``DEFAULT_MAX_EVENTS`` for an export without
            ``assets.extra/contract.json``).
    """

    def __init__(self, version: int, path: Path):
        from purchase_intent.serving.session import SessionModel

        self.version = version
        self.path = path
        self.model = SessionModel(path)
        self.signature_defs = dict(self.model.meta_graph.signature_def)
        sig = self.model.signature_def
        self.inputs = {
            name: InputSpec(name, info.dtype,
                            tuple(int(d.size) for d in info.tensor_shape.dim))
            for name, info in sorted(sig.inputs.items())}
        self.output_keys = sorted(sig.outputs)
        self.sequence_inputs = [n for n, spec in self.inputs.items()
                                if spec.dtype == types_pb2.DT_STRING and len(spec.dims) == 2]
        try:
            self.pad_advice = f'pad with "" to {int(read_contract(path)["max_events"])} events (contract.json max_events)'
        except FileNotFoundError:
            self.pad_advice = (f'pad with "" to one width ({DEFAULT_MAX_EVENTS} events, the client\'s default: '
                               f'this export has no contract.json)')
        self.warmup_records = 0

    def __repr__(self) -> str:
        return f"LoadedVersion({self.version}, {str(self.path)!r})"


class ModelManager:
    """Loads, swaps and runs the versions of one model (the core of the local server).

    Args:
        model_base_path: str or Path. Folder of numeric version folders.
        model_name: str. Name clients must put in ``model_spec.name``.
        version_labels: dict of str to int. Label -> version.
        specific_versions: list of int or None. Load exactly these versions
            (TF Serving's ``model_version_policy { specific {...} }``); None:
            the ``keep_versions`` most recent ones plus labelled ones.
        keep_versions: int. Most recent versions kept loaded (0: all).
        max_batch: int. Largest batch accepted in one request.
        warmup: bool. Replay ``assets.extra/tf_serving_warmup_requests`` at load.
    """

    def __init__(self, model_base_path: str | Path, model_name: str, *,
                 version_labels: Mapping[str, int] | None = None,
                 specific_versions: list[int] | None = None, keep_versions: int = 2,
                 max_batch: int = 1024, warmup: bool = True):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if keep_versions < 0:
            raise ValueError(f"keep_versions must be >= 0, got {keep_versions}")
        self.model_base_path = Path(model_base_path)
        self.model_name = model_name
        self.version_labels = dict(version_labels or {})
        self.specific_versions = None if specific_versions is None else set(specific_versions)
        self.keep_versions = keep_versions
        self.max_batch = max_batch
        self.warmup = warmup
        self._servables: dict[int, LoadedVersion] = {}  # replaced, never mutated
        self._states: dict[int, tuple[int, grpc.StatusCode, str]] = {}
        self._failed: dict[int, str] = {}
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._warned_missing = False

    # -- versions on disk and in memory
    @property
    def loaded_versions(self) -> list[int]:
        return sorted(self._servables)

    def _scan(self) -> list[int]:
        base = self.model_base_path
        if not base.is_dir():
            if not self._warned_missing:
                logger.warning("Model base path %s does not exist (yet); polling", base)
                self._warned_missing = True
            return []
        versions = []
        for p in base.iterdir():
            if not (p.is_dir() and p.name.isascii() and p.name.isdigit()):
                continue
            if not (p / "saved_model.pb").exists():
                logger.debug("Skipping %s: no saved_model.pb (yet)", p)
                continue
            versions.append(int(p.name))
        return sorted(versions)

    def _aspired(self, present: list[int]) -> set[int]:
        candidates = [v for v in present if v not in self._failed]
        if self.specific_versions is not None:
            return {v for v in candidates if v in self.specific_versions}
        latest = set(candidates[-self.keep_versions:] if self.keep_versions else candidates)
        return latest | {v for v in self.version_labels.values() if v in candidates}

    def _set_state(self, version: int, state: int, code: grpc.StatusCode = grpc.StatusCode.OK,
                   message: str = "") -> None:
        with self._lock:
            self._states[version] = (state, code, message)

    def poll(self) -> None:
        """Loads new aspired versions (newest first) and unloads the others; one call at a time."""
        with self._poll_lock:
            present = self._scan()
            for version in sorted(self._aspired(present) - set(self._servables), reverse=True):
                self._set_state(version, _STATE.LOADING)
                t0 = time.perf_counter()
                try:
                    servable = self._load(version)
                except Exception as e:  # a broken version must not take the server down
                    message = f"{type(e).__name__}: {e}"
                    self._failed[version] = message
                    self._set_state(version, _STATE.END, grpc.StatusCode.UNKNOWN, message)
                    logger.error("Loading version %d of %r failed: %s", version, self.model_name, message)
                    continue
                with self._lock:  # the swap: one reference, readers see old or new, never half
                    self._servables = {**self._servables, version: servable}
                    self._states[version] = (_STATE.AVAILABLE, grpc.StatusCode.OK, "")
                logger.info("Version %d of %r is AVAILABLE (loaded in %.1f s, %d warm-up requests); "
                            "default version is now %d", version, self.model_name,
                            time.perf_counter() - t0, servable.warmup_records, max(self._servables))
            aspired = self._aspired(present)
            with self._lock:
                removed = sorted(set(self._servables) - aspired)
                if removed:
                    self._servables = {v: s for v, s in self._servables.items() if v in aspired}
                    for v in removed:
                        self._states[v] = (_STATE.END, grpc.StatusCode.OK, "")
            for v in removed:
                logger.info("Unloaded version %d of %r (requests already running on it finish)",
                            v, self.model_name)

    def _load(self, version: int) -> LoadedVersion:
        from purchase_intent.serving.warmup import WARMUP_FILE, read_warmup_requests

        servable = LoadedVersion(version, self.model_base_path / str(version))
        warmup_path = servable.path / "assets.extra" / WARMUP_FILE
        if self.warmup and warmup_path.exists():
            for i, log in enumerate(read_warmup_requests(warmup_path)):
                kind = log.WhichOneof("log_type")
                if kind != "predict_log":
                    raise ValueError(f"warm-up record {i} is a {kind}; this server replays predict_log only")
                try:
                    self.run(servable, log.predict_log.request)
                except RpcError as e:
                    raise ValueError(f"warm-up record {i} failed: {e.code.name}: {e.message}") from None
                servable.warmup_records += 1
        return servable

    # -- request routing
    def _version_text(self, spec) -> str:
        which = spec.WhichOneof("version_choice")
        if which == "version":
            return str(spec.version.value)
        if which == "version_label":
            return f"label {spec.version_label!r}"
        return "latest"

    def _check_name(self, spec) -> None:
        if not spec.name:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "model_spec.name is empty")
        if spec.name != self.model_name:
            raise RpcError(grpc.StatusCode.NOT_FOUND,
                           f"Servable not found: model {spec.name!r} is not served here "
                           f"(this server serves {self.model_name!r})")

    def _label_version(self, label: str) -> int:
        if label not in self.version_labels:  # INVALID_ARGUMENT in TF Serving's server_core.cc
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Unrecognized servable version label: {label} (model "
                           f"{self.model_name!r} has labels {self.version_labels or 'none'})")
        return self.version_labels[label]

    def resolve(self, spec) -> LoadedVersion:
        """The loaded version a ``ModelSpec`` asks for.

        Raises:
            RpcError: NOT_FOUND (model or version unknown, or not loaded),
                INVALID_ARGUMENT (unknown label), UNAVAILABLE (no version loaded yet).
        """
        self._check_name(spec)
        servables = self._servables  # one read: a consistent snapshot
        which = spec.WhichOneof("version_choice")
        if which is None:
            if not servables:
                raise RpcError(grpc.StatusCode.UNAVAILABLE,
                               f"No version of {self.model_name!r} is loaded yet "
                               f"(watching {self.model_base_path})")
            return servables[max(servables)]
        version = spec.version.value if which == "version" else self._label_version(spec.version_label)
        if version not in servables:
            label = f" (label {spec.version_label!r})" if which == "version_label" else ""
            raise RpcError(grpc.StatusCode.NOT_FOUND,
                           f"Servable not found: version {version}{label} of model "
                           f"{self.model_name!r} is not loaded; loaded versions: {sorted(servables)}")
        return servables[version]

    # -- Predict
    def _decode_inputs(self, servable: LoadedVersion, request) -> dict[str, np.ndarray]:
        """The request's tensors as arrays, after ``predict_util.cc``'s checks: names, then dtypes."""
        expected = servable.inputs
        where = f"model {self.model_name!r} version {servable.version}, signature {SIGNATURE!r}"
        unknown = sorted(set(request.inputs) - set(expected))
        if unknown:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"unknown input(s) {unknown}; {where} takes {sorted(expected)}")
        missing = [n for n in expected if n not in request.inputs]
        if missing:
            need = ", ".join(f"{n!r} ({expected[n].describe()})" for n in missing)
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"missing input(s) {need} for {where}")
        arrays = {}
        for name, spec in expected.items():
            proto = request.inputs[name]
            if proto.dtype != spec.dtype:
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input {name!r} has dtype {dtype_name(proto.dtype)}, expected "
                               f"{dtype_name(spec.dtype)} (the signature takes {spec.describe()})")
            try:
                arrays[name] = tensor_proto_to_ndarray(proto)
            except ValueError as e:
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"input {name!r}: {e}") from None
        return arrays

    def check_signature(self, servable: LoadedVersion, signature: str) -> None:
        """Raises FAILED_PRECONDITION unless ``signature`` ("" = the default) is the one served."""
        if (signature or SIGNATURE) != SIGNATURE:
            raise RpcError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"Serving signature name {signature!r} not found; model "
                           f"{self.model_name!r} version {servable.version} has {SIGNATURE!r}")

    def run(self, servable: LoadedVersion, request) -> predict_pb2.PredictResponse:
        """Checks a ``PredictRequest`` against ``servable`` and runs it (gRPC and warm-up).

        Raises:
            RpcError: INVALID_ARGUMENT / FAILED_PRECONDITION for a bad request,
                INTERNAL if the model fails.
        """
        self.check_signature(servable, request.model_spec.signature_name)
        outputs = self.infer(servable, self._decode_inputs(servable, request), request.output_filter)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.model_name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = SIGNATURE
        for key, arr in outputs.items():
            if arr.dtype != np.float32:
                response.outputs[key].CopyFrom(ndarray_to_tensor_proto(arr))
                continue
            out = response.outputs[key]  # float_val, as TF Serving answers
            out.dtype = types_pb2.DT_FLOAT
            for d in arr.shape:
                out.tensor_shape.dim.add(size=int(d))
            out.float_val.extend(arr.reshape(-1).tolist())
        return response

    def infer(self, servable: LoadedVersion, arrays: Mapping[str, np.ndarray],
              output_filter=()) -> dict[str, np.ndarray]:
        """Runs arrays of the signature's inputs and dtypes (decoded from gRPC or REST) on ``servable``.

        Returns:
            ``{output alias: array}`` in ``output_filter`` order (every output without one).

        Raises:
            RpcError: INVALID_ARGUMENT (unknown or duplicate alias, batch over
                ``max_batch``, sequence inputs of different widths, values the
                graph rejects), INTERNAL if the model fails otherwise.
        """
        import tensorflow as tf

        wanted = self._output_aliases(servable, output_filter)
        batch = max((arr.shape[0] for arr in arrays.values() if arr.ndim), default=0)
        if batch > self.max_batch:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"batch of {batch} examples is larger than this server's limit of "
                           f"{self.max_batch} (--max-batch); split the request")
        widths = {n: arrays[n].shape[1] for n in servable.sequence_inputs if arrays[n].ndim == 2}
        if len(set(widths.values())) > 1:
            listed = ", ".join(f"{n!r} {w}" for n, w in widths.items())
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"the sequence inputs of one request must have one width, got {listed} "
                           f"events: {servable.pad_advice}")
        try:
            return servable.model.run(arrays, wanted)
        except tf.errors.InvalidArgumentError as e:
            said = e.message.splitlines()[0] if e.message else str(e)
            mismatches = self._shape_mismatches(servable, arrays)
            where = f"model {self.model_name!r} version {servable.version}"
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"{'; '.join(mismatches)} ({where} rejected it: {said})" if mismatches
                           else f"{where} rejected the input: {said}") from None
        except Exception as e:
            logger.exception("Inference failed on version %d", servable.version)
            raise RpcError(grpc.StatusCode.INTERNAL,
                           f"inference failed on version {servable.version}: {type(e).__name__}: {e}") from None

    @staticmethod
    def _shape_mismatches(servable: LoadedVersion, arrays: Mapping[str, np.ndarray]) -> list[str]:
        """What differs from the signature's shapes: ranks, fixed sizes, batch sizes (to explain a graph error)."""
        found, batches = [], {}
        for name, spec in servable.inputs.items():
            shape = list(arrays[name].shape)
            if len(shape) != len(spec.dims):
                found.append(f"input {name!r} has rank {len(shape)} (shape {shape}), expected rank "
                             f"{len(spec.dims)}: {spec.describe()}")
            elif any(want >= 0 and got != want for got, want in zip(shape, spec.dims)):
                found.append(f"input {name!r} has shape {shape}, expected {spec.describe()}")
            if shape:
                batches.setdefault(shape[0], name)
        if len(batches) > 1:
            rows = ", ".join(f"{name!r} has {size}" for size, name in batches.items())
            found.append(f"inputs disagree on the batch size: {rows} rows")
        return found

    @staticmethod
    def _output_aliases(servable: LoadedVersion, output_filter) -> list[str]:
        """The outputs to return, checked as TF Serving's ``predict_util.cc`` does."""
        seen: list[str] = []
        for alias in output_filter:
            if alias not in servable.output_keys:
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"output tensor alias not found in signature: {alias} Outputs "
                               f"expected to be in the set {{{','.join(servable.output_keys)}}}.")
            if alias in seen:
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"duplicate output tensor alias: {alias}")
            seen.append(alias)
        return seen or list(servable.output_keys)

    def predict(self, request) -> predict_pb2.PredictResponse:
        return self.run(self.resolve(request.model_spec), request)

    def classify_or_regress(self, method: str, request) -> None:
        """Classify / Regress: this export has only a Predict signature, so always an error.

        Raises:
            RpcError: what TF Serving answers for the request's model spec
                (NOT_FOUND, ...), else INVALID_ARGUMENT as TF Serving's
                ``PreProcessClassification`` / ``PreProcessRegression`` do for a
                signature with more than one input.
        """
        servable = self.resolve(request.model_spec)
        name = request.model_spec.signature_name or SIGNATURE
        if name not in servable.signature_defs:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"No signature was found with the name: {name}")
        self._not_one_input(method, name, servable.signature_defs[name])

    @staticmethod
    def _not_one_input(method: str, name: str, sig) -> None:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"Expected one input Tensor. ({method} needs a {method.lower()} signature with one "
                       f"serialized tf.Example input; {name!r} is a {sig.method_name or 'plain'} "
                       f"signature with {len(sig.inputs)} inputs: use Predict)")

    def multi_inference(self, request) -> None:
        """MultiInference: always an error on this Predict-only model, with TF Serving's code.

        ``multi_inference_helper.cc`` resolves the first task's model spec (no task: an
        empty spec, so INVALID_ARGUMENT); ``multi_inference.cc`` then checks the tasks in
        order, and the first one already fails here: an unknown signature is
        INVALID_ARGUMENT, a classify or regress task on this several-input signature
        INVALID_ARGUMENT "Expected one input Tensor.", any other method name UNIMPLEMENTED.
        (Its checks across tasks, same model name and no duplicate signature, come
        after the first task's and so are never reached on this model.)

        Raises:
            RpcError: that code and message.
        """
        spec = request.tasks[0].model_spec if request.tasks else model_pb2.ModelSpec()
        servable = self.resolve(spec)
        task = request.tasks[0]
        name = spec.signature_name or SIGNATURE
        if name not in servable.signature_defs:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"Requested signature not found in model graph: {name}")
        method = MULTI_INFERENCE_METHODS.get(task.method_name)
        if method is None:
            raise RpcError(grpc.StatusCode.UNIMPLEMENTED, f"Unsupported signature method_name: {task.method_name}")
        self._not_one_input(method, name, servable.signature_defs[name])

    # -- metadata and status
    def get_model_metadata(self, request) -> get_model_metadata_pb2.GetModelMetadataResponse:
        fields = list(request.metadata_field)
        if not fields:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           "GetModelMetadataRequest must name at least one metadata_field "
                           "(supported: 'signature_def')")
        unsupported = [f for f in fields if f != "signature_def"]
        if unsupported:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"unsupported metadata_field(s) {unsupported}; supported: 'signature_def'")
        servable = self.resolve(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self.model_name
        response.model_spec.version.value = servable.version
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in servable.signature_defs.items():
            sig_map.signature_def[key].CopyFrom(sig)
        response.metadata["signature_def"].Pack(sig_map)
        return response

    def get_model_status(self, request) -> get_model_status_pb2.GetModelStatusResponse:
        """Version states, as TF Serving's ``get_model_status_impl.cc``.

        Only ``model_spec.version`` selects a version; a ``version_label`` is
        ignored (every version is listed). Versions come newest first. Another
        model name, the empty one too, is NOT_FOUND; no ``model_spec`` at all
        INVALID_ARGUMENT.
        """
        if not request.HasField("model_spec"):
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        spec = request.model_spec
        if spec.name != self.model_name:  # the empty name too: no versions of it
            which = f"version {spec.version.value}" if spec.HasField("version") else "any versions"
            raise RpcError(grpc.StatusCode.NOT_FOUND,
                           f"Could not find {which} of model {spec.name} (this server serves "
                           f"{self.model_name!r})")
        with self._lock:
            states = dict(self._states)
        if spec.HasField("version"):
            version = spec.version.value
            if version not in states:
                raise RpcError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find version {version} of model {self.model_name}; "
                               f"known versions: {sorted(states, reverse=True)}")
            states = {version: states[version]}
        elif not states:
            raise RpcError(grpc.StatusCode.NOT_FOUND,
                           f"Could not find any versions of model {self.model_name} "
                           f"(watching {self.model_base_path})")
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in sorted(states, reverse=True):
            state, code, message = states[version]
            s = response.model_version_status.add(version=version, state=state)
            s.status.error_code = code.value[0]
            s.status.error_message = message
        return response
