"""serving/codec.py: numpy <-> TensorProto and numpy -> tf.Tensor, without TensorFlow ops."""

import numpy as np
import pytest

from purchase_intent.serving.codec import (
    dtype_name,
    ndarray_to_tensor_proto,
    tensor_proto_to_ndarray,
    to_tensors,
)
from purchase_intent.serving.protos import tensor_pb2, types_pb2


@pytest.mark.parametrize("array", [
    np.array([[0.25, np.nan], [1e-8, -3.0]], np.float32),
    np.array([1, -2, 3], np.int64),
    np.array([True, False]),
    np.zeros((0, 4), np.float32),
])
def test_numbers_round_trip(array):
    proto = ndarray_to_tensor_proto(array)
    assert [d.size for d in proto.tensor_shape.dim] == list(array.shape)
    np.testing.assert_array_equal(tensor_proto_to_ndarray(proto), array)


def test_strings_are_utf8_bytes_and_match_tensorflow():
    import tensorflow as tf

    proto = ndarray_to_tensor_proto(np.array([["a", ""], ["é", b"\xff"]], dtype=object))
    assert dtype_name(proto.dtype) == "DT_STRING"
    assert tensor_proto_to_ndarray(proto).tolist() == [[b"a", b""], ["é".encode(), b"\xff"]]
    np.testing.assert_array_equal(tf.make_ndarray(proto), tensor_proto_to_ndarray(proto))
    assert isinstance(tf.make_tensor_proto([1.0]), tensor_pb2.TensorProto)  # one proto class for both


def test_short_value_lists_repeat_the_last_value_and_bad_protos_fail_clearly():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[0.5])
    proto.tensor_shape.dim.add(size=3)
    assert tensor_proto_to_ndarray(proto).tolist() == [0.5, 0.5, 0.5]
    proto.dtype = types_pb2.DT_HALF
    with pytest.raises(ValueError, match="unsupported dtype DT_HALF"):
        tensor_proto_to_ndarray(proto)
    with pytest.raises(ValueError, match="float16"):
        ndarray_to_tensor_proto(np.zeros(2, np.float16))


def test_to_tensors_makes_strings_and_keeps_number_dtypes():
    tensors = to_tensors({"s": np.array([b"a", "b", 3], dtype=object), "x": np.ones(3, np.float32)})
    assert tensors["s"].numpy().tolist() == [b"a", b"b", b"3"]
    assert tensors["x"].dtype.name == "float32"
