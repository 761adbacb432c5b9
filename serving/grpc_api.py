"""TF Serving's gRPC services: PredictionService (Predict, GetModelMetadata) and ModelService
(GetModelStatus), over the tensorflow-serving-api protos."""

from __future__ import annotations

import contextlib
import logging
import math

import grpc
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.core import ServerCore
from serving.servable import InvalidArgument, ServingError
from serving.tensor_proto import to_ndarray, to_tensor_proto

log = logging.getLogger(__name__)


@contextlib.contextmanager
def status_on_error(context: grpc.ServicerContext):
    """Turn a ServingError into its status; anything else into INTERNAL. The server stays up."""
    try:
        yield
    except ServingError as e:
        context.abort(e.code, e.message)
    except Exception:
        log.exception("request failed")
        context.abort(grpc.StatusCode.INTERNAL, "internal error; the server's log has the details")


def declared_elements(name: str, proto: tensor_pb2.TensorProto) -> int:
    """The element count a TensorProto's shape declares, once its values are seen to hold
    exactly that many: nothing is built from a shape that the request's bytes do not back."""
    dims = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or any(d < 0 for d in dims):
        raise InvalidArgument(f"input '{name}' has shape {dims}; every dimension must be >= 0")
    count = math.prod(dims)
    if proto.dtype == types_pb2.DT_STRING:
        held = len(proto.string_val)
    elif proto.tensor_content:
        itemsize = tf.dtypes.as_dtype(proto.dtype).size
        held, count = len(proto.tensor_content), count * itemsize
    else:
        held = sum(len(v) for f, v in proto.ListFields() if f.name.endswith("_val"))
    if held != count:
        raise InvalidArgument(
            f"input '{name}' declares shape {dims} but holds "
            f"{held}{' bytes' if proto.tensor_content else ' values'}, not {count}"
        )
    return count


def tensor_inputs(request: predict_pb2.PredictRequest) -> dict:
    """The request's TensorProtos as numpy arrays."""
    inputs = {}
    for name, proto in request.inputs.items():
        declared_elements(name, proto)
        try:
            inputs[name] = to_ndarray(proto)
        except Exception as e:
            raise InvalidArgument(f"input '{name}' is not a valid TensorProto: {e}") from None
    return inputs


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: ServerCore):
        self.core = core

    def Predict(self, request, context):  # noqa: N802 - gRPC method name
        with status_on_error(context):
            spec, outputs = self.core.predict(
                request.model_spec,
                tensor_inputs(request),
                list(request.output_filter),
                request.ByteSize(),
            )
            return predict_pb2.PredictResponse(
                model_spec=spec, outputs={k: to_tensor_proto(v) for k, v in outputs.items()}
            )

    def GetModelMetadata(self, request, context):  # noqa: N802 - gRPC method name
        with status_on_error(context):
            return self.core.metadata(request.model_spec, list(request.metadata_field))

    def Classify(self, request, context):  # noqa: N802 - gRPC method name
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Classify is not served; use Predict")

    def Regress(self, request, context):  # noqa: N802 - gRPC method name
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Regress is not served; use Predict")

    def MultiInference(self, request, context):  # noqa: N802 - gRPC method name
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not served; use Predict")


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: ServerCore):
        self.core = core

    def GetModelStatus(self, request, context):  # noqa: N802 - gRPC method name
        with status_on_error(context):
            return self.core.status(request.model_spec)

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802 - gRPC method name
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "reloading the config is not supported")


def add_services(grpc_server: grpc.Server, core: ServerCore) -> None:
    """TF Serving's PredictionService and ModelService, answered by `core`."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(core), grpc_server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(core), grpc_server)
