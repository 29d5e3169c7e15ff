"""The gRPC front end of the local server: TF Serving's PredictionService and ModelService.

Each method hands the request proto to :class:`~.manager.ModelManager` and
turns an :class:`~.manager.RpcError` into the same status code TF Serving
sends; any other exception becomes INTERNAL and the server keeps answering.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import grpc

from purchase_intent.serving.local.manager import ModelManager, RpcError
from purchase_intent.serving.protos import model_service_pb2_grpc, prediction_service_pb2_grpc

logger = logging.getLogger(__name__)


def _handle(context, method: str, fn: Callable[[], Any]):
    try:
        return fn()
    except RpcError as e:
        logger.info("%s -> %s: %s", method, e.code.name, e.message)
        context.abort(e.code, e.message)
    except Exception as e:  # never let one request take the server down
        logger.exception("%s failed", method)
        context.abort(grpc.StatusCode.INTERNAL, f"{method} failed: {type(e).__name__}: {e}")


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """``tensorflow.serving.PredictionService`` over a :class:`ModelManager`."""

    def __init__(self, manager: ModelManager):
        self.manager = manager

    def Predict(self, request, context):
        return _handle(context, "Predict", lambda: self.manager.predict(request))

    def GetModelMetadata(self, request, context):
        return _handle(context, "GetModelMetadata", lambda: self.manager.get_model_metadata(request))

    def Classify(self, request, context):
        return _handle(context, "Classify", lambda: self.manager.classify_or_regress("Classify", request))

    def Regress(self, request, context):
        return _handle(context, "Regress", lambda: self.manager.classify_or_regress("Regress", request))

    def MultiInference(self, request, context):
        return _handle(context, "MultiInference", lambda: self.manager.multi_inference(request))


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """``tensorflow.serving.ModelService`` (GetModelStatus) over a :class:`ModelManager`."""

    def __init__(self, manager: ModelManager):
        self.manager = manager

    def GetModelStatus(self, request, context):
        return _handle(context, "GetModelStatus", lambda: self.manager.get_model_status(request))

    def HandleReloadConfigRequest(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      "HandleReloadConfigRequest is not implemented by the local development server")


def add_services(server: grpc.Server, manager: ModelManager) -> None:
    """Registers both services of ``manager`` on a ``grpc.Server``."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(manager), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager), server)
