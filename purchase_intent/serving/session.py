"""An export run the way TF Serving runs it: the TF1 loader, a Session, Grappler on.

TF Serving does not call ``tf.saved_model.load``: its ``SavedModelBundle``
loads the ``serve`` MetaGraph into a ``Session`` created with the default
``ConfigProto``, so Grappler's graph rewrites (constant folding, arithmetic
simplification, function inlining, ...) run on the graph before the first
request, and requests are fed and fetched by tensor name. :class:`SessionModel`
does exactly that, with ``tf.compat.v1.saved_model.loader.load``; the local
server answers through it and the export tests compare every export with the
in-memory model through it, so the numbers our tests see are production's.

Requests run through one ``Session`` callable per set of inputs and outputs
(``CallableOptions``, the C++ ``Session::MakeCallable`` / ``RunCallable`` that
the TF1 Keras backend used, through ``Session._make_callable_from_options``):
like TF Serving's ``Session::Run`` it feeds a tensor whatever its shape and
leaves the shape to the graph (Python's ``Session.run`` and the public
``make_callable`` refuse a ``[N, 1]`` feed for a ``[?]`` placeholder, TF
Serving does not), and it skips their per-call Python feed and fetch handling.

Examples:

    >>> model = SessionModel("runs/x/export/purchase_intent/1")   # doctest: +SKIP
    >>> model({"country": np.array([b"UK"]), ...})["purchase_probability"]   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from purchase_intent.contract import SIGNATURE

logger = logging.getLogger(__name__)


def _strings(arr: np.ndarray) -> np.ndarray:
    """An object array of ``bytes`` (``str`` as UTF-8, anything else through ``str()``)."""
    flat = [v if isinstance(v, bytes) else str(v).encode() for v in arr.reshape(-1).tolist()]
    return np.array(flat, dtype=object).reshape(arr.shape)


class SessionModel:
    """The ``serving_default`` signature of an export, loaded and run as TF Serving does.

    Args:
        path: str or Path. A version folder (``saved_model.pb``, ``variables/``).
        config: a ``tf.compat.v1.ConfigProto``; None: the default one (Grappler on),
            as TF Serving's default ``--session_config`` (none) gives.
        signature: str. The signature to run.

    Attributes:
        meta_graph: the loaded ``MetaGraphDef`` (every SignatureDef, ``__saved_model_init_op`` too).
        signature_def: the ``SignatureDef`` proto.
        inputs: dict of input key -> tensor name; ``outputs`` likewise.

    Thread-safe: requests may run concurrently (``Session`` callables are).
    """

    def __init__(self, path: str | Path, config=None, signature: str = SIGNATURE):
        import tensorflow as tf

        try:
            import tensorflow_text  # noqa: F401  (registers WordPiece ops of text models)
        except ImportError:  # pragma: no cover
            logger.warning("tensorflow_text is not installed: models with text inputs will not load")
        self.path = Path(path)
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph, config=config or tf.compat.v1.ConfigProto())
        # The TF1 loader on purpose (TF Serving's path); its deprecation notice is not the user's business.
        tf_logger = logging.getLogger("tensorflow")
        level = tf_logger.level
        tf_logger.setLevel(logging.ERROR)
        try:
            with self.graph.as_default():
                meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], str(self.path))
        finally:
            tf_logger.setLevel(level)
        if signature not in meta.signature_def:
            raise ValueError(f"{self.path}: no {signature!r} signature, only {sorted(meta.signature_def)}")
        self.meta_graph = meta
        self.signature_def = meta.signature_def[signature]
        self.inputs = {k: v.name for k, v in self.signature_def.inputs.items()}
        self.outputs = {k: v.name for k, v in self.signature_def.outputs.items()}
        self._dtypes = {k: tf.dtypes.as_dtype(v.dtype) for k, v in self.signature_def.inputs.items()}
        self._callables: dict[tuple[tuple[str, ...], tuple[str, ...]], object] = {}
        self._lock = threading.Lock()

    def __call__(self, arrays: Mapping[str, np.ndarray], outputs=None) -> dict[str, np.ndarray]:
        """Runs one request: ``{input key: array}`` -> ``{output key: array}``.

        Strings may be ``str`` or ``bytes`` (anything else goes through ``str()``);
        numbers are cast to the signature's dtype (as a ``TensorProto`` of that
        dtype would carry them).

        Raises:
            KeyError: an input key the signature does not have.
            tf.errors.InvalidArgumentError: the graph rejected the values.
        """
        feed = {}
        for key, arr in arrays.items():
            arr = np.asarray(arr)
            dtype = self._dtypes[key]
            feed[key] = _strings(arr) if dtype.name == "string" else arr.astype(dtype.as_numpy_dtype, copy=False)
        return self.run(feed, outputs)

    def run(self, arrays: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Runs arrays already of the signature's dtypes (strings as ``bytes``/``str``, numbers cast).

        No conversion at all: what a server that checked the request's dtypes
        feeds. ``outputs``: the output keys to fetch (None: all of them).

        Raises:
            KeyError: an input or output key the signature does not have.
            tf.errors.InvalidArgumentError: the graph rejected the values.
        """
        keys = tuple(sorted(arrays))
        fetch = tuple(outputs or self.outputs)
        values = self._callable(keys, fetch)(*(arrays[k] for k in keys))
        return dict(zip(fetch, values))

    def _callable(self, keys: tuple[str, ...], fetch: tuple[str, ...]):
        """The ``Session`` callable feeding ``keys`` and fetching ``fetch`` (made once, then reused)."""
        found = self._callables.get((keys, fetch))
        if found is None:
            from tensorflow.core.protobuf import config_pb2

            options = config_pb2.CallableOptions(feed=[self.inputs[k] for k in keys],
                                                 fetch=[self.outputs[k] for k in fetch])
            with self._lock:
                found = self._callables.get((keys, fetch))
                if found is None:
                    found = self._callables[(keys, fetch)] = self.session._make_callable_from_options(options)
        return found

    def close(self) -> None:
        self.session.close()
