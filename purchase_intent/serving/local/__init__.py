"""Local development stand-in for TF Serving: ``python -m purchase_intent.serving.local``.

This is NOT TF Serving. It is a small pure-Python server for tests,
notebooks and demos on machines without Docker. It speaks the same APIs
over the same folder layout, so
:class:`~purchase_intent.serving.client.PurchaseIntentClient`, ``curl`` and
hand-written gRPC calls work unchanged against either:

* gRPC (``--port``, 8500): ``tensorflow.serving.PredictionService`` Predict,
  GetModelMetadata, Classify, Regress and ``tensorflow.serving.ModelService``
  GetModelStatus (``grpc_api.py``);
* REST (``--rest-port``, 8501): ``/v1/models/<name>[/versions/<N>|/labels/<L>]``
  status, ``.../metadata`` and ``...:predict`` with ``instances`` or ``inputs``
  (``rest_api.py``).

What it does, like TF Serving (``manager.py`` lists the status codes and the
TF Serving sources they come from):

* ``--model-base-path`` is the folder holding numeric version folders
  (``<base>/<model_name>``, as TF Serving's ``--model_base_path``); other
  names (the exporter's ``.tmp-*`` folders) are ignored.
* Runs each request as TF Serving does, through the TF1 loader and a
  ``Session`` with Grappler on (:mod:`purchase_intent.serving.session`), so
  its answers are production's numbers; input shapes are left to the graph.
* Serves the highest version by default; ``model_spec.version`` or
  ``model_spec.version_label`` ("stable", "canary") pick another loaded one.
  The two most recent versions (and every labelled one) stay loaded.
* Polls for new versions. A new version is loaded completely and warmed up
  (``assets.extra/tf_serving_warmup_requests``) before one reference swap
  makes it the default; requests already running finish on the old one.
* Bad requests get INVALID_ARGUMENT (HTTP 400) naming the input, its dtype or
  rank and what was expected; unknown models and versions get NOT_FOUND
  (404); unknown labels INVALID_ARGUMENT; requests over
  ``--max-request-bytes`` get RESOURCE_EXHAUSTED from gRPC. Its own extra
  check: sequence inputs of different widths are refused, saying to pad with
  ``""`` to the contract's ``max_events`` (batched TF Serving fails on them).

* Classify, Regress and MultiInference answer what TF Serving answers for
  this Predict-only model (INVALID_ARGUMENT; UNIMPLEMENTED for a
  MultiInference task of another method).

What it does not do: batching across requests, several models, monitoring,
TLS.

Examples:

>>> from purchase_intent.serving import PurchaseIntentClient
>>> from purchase_intent.serving.local import start_server
>>> server = start_server("export/purchase_intent", "purchase_intent", rest_port=0)  # doctest: +SKIP
>>> PurchaseIntentClient(server.target).status()  # doctest: +SKIP
[{'version': 1, 'state': 'AVAILABLE', 'error_code': 'OK', 'error_message': ''}]
>>> server.stop()  # doctest: +SKIP
"""

from purchase_intent.serving.local.manager import ModelManager, RpcError
from purchase_intent.serving.local.server import LocalServer, start_server

__all__ = ["LocalServer", "ModelManager", "RpcError", "start_server"]
