"""TensorProto to numpy and back, for both sides of TF Serving's gRPC API.

The dtypes our signatures take and return (strings, float32, int32, int64) are read from and
written to the proto's fields directly; `tf.make_ndarray` and `tf.make_tensor_proto` check and
convert in Python per call, which cost the gRPC path ~0.2 ms per request across the three
outputs (2026-12-05). Every other dtype, and values sent in `*_val` fields, go through them.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

NUMERIC: dict[
    int, np.dtype
] = {  # TensorProto dtype <-> numpy dtype, little-endian as tensor_content is
    types_pb2.DT_FLOAT: np.dtype("<f4"),
    types_pb2.DT_INT32: np.dtype("<i4"),
    types_pb2.DT_INT64: np.dtype("<i8"),
}
NUMERIC_TYPES = {dtype.type: proto_dtype for proto_dtype, dtype in NUMERIC.items()}


def to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """The proto's values as an array of its shape; strings as an object array of bytes."""
    shape = [d.size for d in proto.tensor_shape.dim]
    if proto.dtype == types_pb2.DT_STRING:
        return np.array(list(proto.string_val), dtype=object).reshape(shape)
    if proto.dtype in NUMERIC and proto.tensor_content:
        return np.frombuffer(proto.tensor_content, NUMERIC[proto.dtype]).reshape(shape)
    return tf.make_ndarray(proto)


def to_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """An array (strings as bytes) as a TensorProto, numbers in `tensor_content`."""
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape]
    )
    if array.dtype == object and all(isinstance(v, bytes) for v in array.flat):
        return tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING, tensor_shape=shape, string_val=array.reshape(-1).tolist()
        )
    if (proto_dtype := NUMERIC_TYPES.get(array.dtype.type)) is not None:
        content = array.astype(NUMERIC[proto_dtype], copy=False).tobytes()
        return tensor_pb2.TensorProto(dtype=proto_dtype, tensor_shape=shape, tensor_content=content)
    return tf.make_tensor_proto(array)
