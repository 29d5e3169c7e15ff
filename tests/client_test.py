"""serving/client.py: importing the client loads neither TensorFlow, Keras, keras-hub nor the server."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHECK = r"""
import json, sys, time
t0 = time.perf_counter()
import purchase_intent.serving.client
seconds = time.perf_counter() - t0
heavy = sorted(m for m in sys.modules
               if m.split(".")[0] in ("keras", "keras_hub", "tensorflow_text", "sklearn")
               or m == "tensorflow" or m.startswith(("tensorflow.python", "purchase_intent.serving.local")))
import tensorflow as tf  # still works afterwards, with the same proto classes
from purchase_intent.serving.protos import tensor_pb2
same = type(tf.make_tensor_proto([1.0])) is tensor_pb2.TensorProto
print(json.dumps({"heavy": heavy, "seconds": seconds, "same": same}))
"""


def test_client_import_is_light():
    proc = subprocess.run([sys.executable, "-c", CHECK], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [], result["heavy"]
    assert result["same"]
