"""numpy <-> ``TensorProto`` and numpy -> ``tf.Tensor``: the one place these conversions live.

Used by the client (requests out, responses in), the local server (requests
in, responses out), the warm-up writer and offline prediction. Importing this
module does not import TensorFlow (see ``protos.py``); only :func:`to_tensors`
does, when called.

Examples:

>>> import numpy as np
>>> from purchase_intent.serving.codec import dtype_name, ndarray_to_tensor_proto, tensor_proto_to_ndarray
>>> proto = ndarray_to_tensor_proto(np.array([["a", ""], ["b", "c"]], dtype=object))
>>> dtype_name(proto.dtype), [d.size for d in proto.tensor_shape.dim]
('DT_STRING', [2, 2])
>>> tensor_proto_to_ndarray(proto).tolist()
[[b'a', b''], [b'b', b'c']]
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from purchase_intent.serving.protos import tensor_pb2, tensor_shape_pb2, types_pb2

_NUMPY_TO_DT = {
    np.dtype(np.float32): types_pb2.DT_FLOAT,
    np.dtype(np.float64): types_pb2.DT_DOUBLE,
    np.dtype(np.int32): types_pb2.DT_INT32,
    np.dtype(np.int64): types_pb2.DT_INT64,
    np.dtype(np.bool_): types_pb2.DT_BOOL,
}
_DT_TO_NUMPY = {v: k for k, v in _NUMPY_TO_DT.items()}
_DT_TO_LITTLE_ENDIAN = {k: v.newbyteorder("<") for k, v in _DT_TO_NUMPY.items()}  # tensor_content's order
_DT_VAL_FIELD = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_BOOL: "bool_val",
}


def dtype_name(dtype: int) -> str:
    """``types_pb2.DT_FLOAT`` -> ``"DT_FLOAT"``."""
    try:
        return types_pb2.DataType.Name(dtype)
    except ValueError:
        return f"DataType({dtype})"


def dtype_of_name(name: str) -> int:
    """``"DT_FLOAT"`` -> ``types_pb2.DT_FLOAT``.

    Raises:
        ValueError: not a TensorFlow dtype name.
    """
    return types_pb2.DataType.Value(name)


def numpy_dtype(dtype: int) -> np.dtype:
    """The numpy dtype of a TF dtype enum (``object`` for ``DT_STRING``).

    Raises:
        ValueError: a dtype this codec does not handle.
    """
    if dtype == types_pb2.DT_STRING:
        return np.dtype(object)
    if dtype not in _DT_TO_NUMPY:
        raise ValueError(f"unsupported dtype {dtype_name(dtype)}")
    return _DT_TO_NUMPY[dtype]


def ndarray_to_tensor_proto(array: Any) -> tensor_pb2.TensorProto:
    """A numpy array (or nested lists) -> ``TensorProto``, without TensorFlow ops.

    Strings (``str``/``bytes``/object arrays) become ``DT_STRING`` (UTF-8);
    numbers keep their numpy dtype (float32 -> ``DT_FLOAT``, float64 ->
    ``DT_DOUBLE``, ...), packed in ``tensor_content`` like ``tf.make_tensor_proto``.

    Raises:
        ValueError: a dtype with no TensorFlow counterpart here.
    """
    arr = np.asarray(array)
    proto = tensor_pb2.TensorProto(
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in arr.shape]))
    if arr.dtype.kind in "OUS":
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(
            v if isinstance(v, bytes) else str(v).encode("utf-8") for v in arr.reshape(-1).tolist())
        return proto
    if arr.dtype not in _NUMPY_TO_DT:
        raise ValueError(f"Cannot send numpy dtype {arr.dtype} (use float32, int64, str, ...)")
    proto.dtype = _NUMPY_TO_DT[arr.dtype]
    proto.tensor_content = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
    return proto


def tensor_proto_to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """``TensorProto`` -> numpy array; strings come back as an object array of ``bytes``.

    Follows TensorFlow's rules: ``tensor_content`` must hold exactly the shape's
    values; a shorter ``*_val`` list is extended with its last value.

    Raises:
        ValueError: unknown rank, negative dimensions, an unsupported dtype or
            a value count that does not fit the shape.
    """
    shape_proto = proto.tensor_shape
    if shape_proto.unknown_rank:
        raise ValueError("the tensor has an unknown rank")
    shape = tuple(d.size for d in shape_proto.dim)
    if min(shape, default=0) < 0:
        raise ValueError(f"the tensor has a negative dimension: {list(shape)}")
    n = math.prod(shape)
    dtype = proto.dtype
    if dtype == types_pb2.DT_STRING:  # one pass over the repeated field, no Python loop
        arr = np.array(proto.string_val, dtype=object)
    elif dtype not in _DT_TO_NUMPY:
        raise ValueError(f"unsupported dtype {dtype_name(dtype)}")
    elif proto.tensor_content:
        little_endian = _DT_TO_LITTLE_ENDIAN[dtype]
        if len(proto.tensor_content) != n * little_endian.itemsize:
            raise ValueError(f"tensor_content has {len(proto.tensor_content)} bytes, the shape "
                             f"{list(shape)} of {dtype_name(dtype)} needs {n * little_endian.itemsize}")
        return np.frombuffer(proto.tensor_content, dtype=little_endian).astype(_DT_TO_NUMPY[dtype]).reshape(shape)
    else:
        arr = np.array(getattr(proto, _DT_VAL_FIELD[dtype]), dtype=_DT_TO_NUMPY[dtype])
    if len(arr) == n:
        return arr.reshape(shape)
    if 0 < len(arr) < n:
        return np.concatenate([arr, np.repeat(arr[-1:], n - len(arr))]).reshape(shape)
    raise ValueError(f"{len(arr)} values do not fit the shape {list(shape)} ({n} values)")


def to_tensors(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """``{name: array}`` -> ``{name: tf.Tensor}`` for a serving function.

    Object, unicode and bytes arrays become ``tf.string`` (``bytes`` kept as
    is, ``str`` as UTF-8, anything else through ``str()``); numeric arrays keep
    their dtype (``frame_to_arrays`` gives float32).
    """
    import tensorflow as tf

    out = {}
    for name, arr in arrays.items():
        arr = np.asarray(arr)
        if arr.dtype.kind == "O":
            flat = [v if isinstance(v, (bytes, str)) else str(v) for v in arr.reshape(-1).tolist()]
            arr = np.array(flat, dtype=object).reshape(arr.shape)
        out[name] = tf.constant(arr, dtype=tf.string) if arr.dtype.kind in "OUS" else tf.constant(arr)
    return out
