"""Serving: gRPC client, tensor codec, batch scoring, warm-up records and a local development server.

* :class:`PurchaseIntentClient` -- Predict / GetModelMetadata / GetModelStatus
  against TF Serving (or the local server), from raw feature dicts or DataFrames.
  Importing it (or this package) loads neither TensorFlow nor Keras.
* ``codec`` -- numpy <-> ``TensorProto`` (and numpy -> ``tf.Tensor``), the one
  place for those conversions; ``protos`` -- the TF Serving protobuf modules
  without TensorFlow.
* ``python -m purchase_intent.serving.score`` -- score a large CSV in chunks.
* ``warmup`` -- ``assets.extra/tf_serving_warmup_requests``.
* ``local`` -- ``python -m purchase_intent.serving.local``: a development
  stand-in for TF Serving with its gRPC (8500) and REST (8501) APIs (not for
  production); import it explicitly: ``from purchase_intent.serving.local import start_server``.
"""

from purchase_intent.serving.client import PurchaseIntentClient, ServingError

__all__ = ["PurchaseIntentClient", "ServingError"]
