"""The TF Serving and TensorFlow protobuf modules, imported without TensorFlow itself.

The generated ``*_pb2`` modules under ``tensorflow/core/`` and
``tensorflow_serving/apis/`` need only ``protobuf``, but importing any of
them runs ``tensorflow/__init__.py`` first, which loads all of TensorFlow
and, since TF 2.16, Keras (and through it scikit-learn and scipy): seconds
of start-up for a client that only packs tensors. Here the ``tensorflow``
package is stood in for by an empty package object with TensorFlow's own
``__path__`` while the protobuf modules load, then removed from
``sys.modules``; a later ``import tensorflow`` runs normally and reuses
these same modules (one descriptor pool, one class per message type).

If TensorFlow is already imported, the modules are imported as usual. The
stand-in is in ``sys.modules`` only while this module first loads (about
0.1 s): a second thread importing TensorFlow at that very moment would see it,
so import the client at start-up, not from worker threads racing TensorFlow.

Examples:

>>> from purchase_intent.serving.protos import predict_pb2, tensor_pb2, types_pb2
>>> request = predict_pb2.PredictRequest(inputs={"x": tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)})
>>> request.inputs["x"].dtype == types_pb2.DT_FLOAT
True
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

_MODULES = {
    "tensor_pb2": "tensorflow.core.framework.tensor_pb2",
    "tensor_shape_pb2": "tensorflow.core.framework.tensor_shape_pb2",
    "types_pb2": "tensorflow.core.framework.types_pb2",
    "saved_model_pb2": "tensorflow.core.protobuf.saved_model_pb2",
    "classification_pb2": "tensorflow_serving.apis.classification_pb2",
    "get_model_metadata_pb2": "tensorflow_serving.apis.get_model_metadata_pb2",
    "get_model_status_pb2": "tensorflow_serving.apis.get_model_status_pb2",
    "model_pb2": "tensorflow_serving.apis.model_pb2",
    "model_service_pb2_grpc": "tensorflow_serving.apis.model_service_pb2_grpc",
    "predict_pb2": "tensorflow_serving.apis.predict_pb2",
    "prediction_log_pb2": "tensorflow_serving.apis.prediction_log_pb2",
    "prediction_service_pb2_grpc": "tensorflow_serving.apis.prediction_service_pb2_grpc",
    "regression_pb2": "tensorflow_serving.apis.regression_pb2",
}


def _import_all() -> dict[str, types.ModuleType]:
    if "tensorflow" in sys.modules:
        return {alias: importlib.import_module(name) for alias, name in _MODULES.items()}
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("tensorflow is not installed (tensorflow-serving-api needs its protos)")
    stand_in = types.ModuleType("tensorflow", "stand-in while the protobuf modules load")
    stand_in.__path__ = list(spec.submodule_search_locations)
    sys.modules["tensorflow"] = stand_in
    try:
        return {alias: importlib.import_module(name) for alias, name in _MODULES.items()}
    finally:
        if sys.modules.get("tensorflow") is stand_in:
            del sys.modules["tensorflow"]


_loaded = _import_all()
tensor_pb2 = _loaded["tensor_pb2"]
tensor_shape_pb2 = _loaded["tensor_shape_pb2"]
types_pb2 = _loaded["types_pb2"]
saved_model_pb2 = _loaded["saved_model_pb2"]
classification_pb2 = _loaded["classification_pb2"]
get_model_metadata_pb2 = _loaded["get_model_metadata_pb2"]
get_model_status_pb2 = _loaded["get_model_status_pb2"]
model_pb2 = _loaded["model_pb2"]
model_service_pb2_grpc = _loaded["model_service_pb2_grpc"]
predict_pb2 = _loaded["predict_pb2"]
prediction_log_pb2 = _loaded["prediction_log_pb2"]
prediction_service_pb2_grpc = _loaded["prediction_service_pb2_grpc"]
regression_pb2 = _loaded["regression_pb2"]

__all__ = sorted(_MODULES)
