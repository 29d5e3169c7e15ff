"""TF Serving warm-up requests: ``assets.extra/tf_serving_warmup_requests``.

TF Serving replays this TFRecord file of ``PredictionLog`` records when it
loads a version, before the version takes traffic, so the first real
requests do not pay for lazy initialisation (see
``tensorflow_serving/example/resnet_warmup.py``). It reads at most 1000
records. Write the file into the version folder before it becomes visible:
the exporter calls :func:`write_warmup_requests` on its temporary folder,
then renames it into place. The local server (``serving/local/``) replays the
same file at load.

Examples:

>>> from purchase_intent.serving.warmup import write_warmup_requests
>>> write_warmup_requests(tmp_version_dir, test_frame.head(64), "purchase_intent",
...                       n=16, schema=schema)  # doctest: +SKIP
PosixPath('.../assets.extra/tf_serving_warmup_requests')
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from purchase_intent.schema import FeatureSchema
from purchase_intent.contract import DEFAULT_MAX_EVENTS, SIGNATURE, frame_to_arrays
from purchase_intent.serving.codec import ndarray_to_tensor_proto
from purchase_intent.serving.protos import predict_pb2, prediction_log_pb2

logger = logging.getLogger(__name__)

WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving reads no more than this


def _as_arrays(raw_examples: Any, schema: FeatureSchema | None,
               sequence_length: int | None) -> dict[str, np.ndarray]:
    if isinstance(raw_examples, pd.DataFrame):
        if schema is None:
            raise ValueError("raw_examples is a DataFrame: give its schema= too")
        df = schema.validate(raw_examples, require_label=False, where="warm-up examples")
        return frame_to_arrays(df, schema, sequence_length)
    if not isinstance(raw_examples, Mapping) or not raw_examples:
        raise TypeError("raw_examples must be a non-empty dict of arrays/tensors or a DataFrame, "
                        f"got {type(raw_examples).__name__}")
    arrays = {}
    for name, value in raw_examples.items():
        value = value.numpy() if hasattr(value, "numpy") else value
        arrays[name] = np.asarray(value)
    if schema is not None:
        missing = [n for n in schema.feature_names if n not in arrays]
        if missing:
            raise ValueError(f"raw_examples lacks the schema features {missing}")
    sizes = {name: (a.shape[0] if a.ndim else None) for name, a in arrays.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise ValueError(f"raw_examples must share one batch dimension, got sizes {sizes}")
    return arrays


def write_warmup_requests(version_dir: str | Path, raw_examples: Any,
                          model_name: str = "purchase_intent", n: int = 16, *,
                          schema: FeatureSchema | None = None,
                          batch_sizes: Sequence[int] = (1, 8),
                          sequence_length: int | None = DEFAULT_MAX_EVENTS) -> Path:
    """Writes ``n`` warm-up ``PredictRequest`` records into ``version_dir/assets.extra/``.

    Record ``k`` holds ``batch_sizes[k % len(batch_sizes)]`` examples taken in
    turn (wrapping around) from ``raw_examples``, so the warm-up covers the
    batch sizes given.

    Args:
        version_dir: str or Path. The version folder, typically the exporter's
            temporary folder before its rename.
        raw_examples: a dict ``{feature: array or tf.Tensor}`` as the signature
            takes them (sequences ``[batch, events]`` right-padded with ""),
            or a DataFrame of raw examples together with ``schema``.
        model_name: str. Written into each request's ``model_spec``.
        n: int. Number of records, 1..1000.
        schema: FeatureSchema or None. Needed for a DataFrame; for a dict,
            checks that every feature is there.
        batch_sizes: sequence of int. Examples per record, cycled.
        sequence_length: int or None. Sequence width when packing a DataFrame
            (the exporter gives the contract's ``max_events``).

    Returns:
        The path of the file written.

    Raises:
        ValueError: ``n`` outside 1..1000, bad batch sizes or inconsistent examples.
    """
    import tensorflow as tf

    if not 1 <= n <= MAX_WARMUP_RECORDS:
        raise ValueError(f"n must be in 1..{MAX_WARMUP_RECORDS} (TF Serving reads at most "
                         f"{MAX_WARMUP_RECORDS} warm-up records), got {n}")
    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise ValueError(f"batch_sizes must be positive integers, got {list(batch_sizes)}")
    arrays = _as_arrays(raw_examples, schema, sequence_length)
    total = next(iter(arrays.values())).shape[0]
    if total == 0:
        raise ValueError("raw_examples has no examples")
    extra = Path(version_dir) / "assets.extra"
    extra.mkdir(parents=True, exist_ok=True)
    path = extra / WARMUP_FILE
    start = 0
    with tf.io.TFRecordWriter(str(path)) as writer:
        for k in range(n):
            size = int(batch_sizes[k % len(batch_sizes)])
            rows = (start + np.arange(size)) % total
            start = (start + size) % total
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = SIGNATURE
            for name, arr in arrays.items():
                request.inputs[name].CopyFrom(ndarray_to_tensor_proto(arr[rows]))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    logger.info("Wrote %d warm-up requests (batch sizes %s) to %s", n, list(batch_sizes), path)
    return path


def read_warmup_requests(path: str | Path,
                         limit: int = MAX_WARMUP_RECORDS) -> list[prediction_log_pb2.PredictionLog]:
    """Reads the ``PredictionLog`` records of a warm-up file (or of a version folder's).

    Raises:
        ValueError: a record that is not a ``PredictionLog``.
    """
    import tensorflow as tf

    path = Path(path)
    if path.is_dir():
        path = path / "assets.extra" / WARMUP_FILE
    logs = []
    for i, record in enumerate(tf.data.TFRecordDataset(str(path)).take(limit).as_numpy_iterator()):
        log = prediction_log_pb2.PredictionLog()
        try:
            log.ParseFromString(record)
        except Exception as e:  # google.protobuf.message.DecodeError
            raise ValueError(f"{path}: record {i} is not a PredictionLog: {e}") from None
        logs.append(log)
    return logs
