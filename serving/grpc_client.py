"""Clients of a served model (ours or TF Serving's) over TF Serving's gRPC API."""

from __future__ import annotations

import grpc
import numpy as np
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.client import QueryError
from serving.tensor_proto import to_ndarray


def grpc_predict(
    stub: prediction_service_pb2_grpc.PredictionServiceStub,
    request: predict_pb2.PredictRequest,
    timeout: float = 30.0,
) -> tuple[int, dict[str, np.ndarray]]:
    """The answering version and the outputs as arrays."""
    try:
        response = stub.Predict(request, timeout=timeout)
    except grpc.RpcError as e:
        raise QueryError(f"{e.code().name}: {e.details()}") from None
    outputs = {k: to_ndarray(v) for k, v in response.outputs.items()}
    return response.model_spec.version.value, outputs


def grpc_text_predict(
    server: str, request: predict_pb2.PredictRequest, timeout: float = 30.0
) -> tuple[int, dict[str, list]]:
    """One Predict over a fresh channel to `server` (host:port): the version and the outputs."""
    with grpc.insecure_channel(server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        version, arrays = grpc_predict(stub, request, timeout)
    return version, {k: v.tolist() for k, v in arrays.items()}
