"""`memn2n serve`: a model server that speaks TF Serving's gRPC and REST APIs.

Both front ends call the same three operations here (predict, metadata, status); they differ only
in how requests and responses are encoded (`serving/grpc_api.py`, `serving/rest_api.py`).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent import futures

import grpc
import numpy as np
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from serving.model_manager import ModelManager
from serving.servable import DEFAULT_SIGNATURE, InvalidArgument, LoadedVersion, RequestLimits

log = logging.getLogger(__name__)
SIGNATURE_DEF_FIELD = "signature_def"
FAILED_LOAD_CODE = 2  # tensorflow.error.Code UNKNOWN, as TF Serving reports a failed load


class ModelServer:
    """Serves the configured models over gRPC (`port`) and REST (`rest_api_port`; None: off).

    Port 0 binds a free port; `port` and `rest_api_port` hold the bound ports after `start()`.
    """

    def __init__(
        self,
        models: list[model_server_config_pb2.ModelConfig],
        port: int = 8500,
        rest_api_port: int | None = 8501,
        bind_address: str = "127.0.0.1",
        poll_seconds: float = 1.0,
        settle_seconds: float = 1.0,
        limits: RequestLimits | None = None,
        enable_batching: bool = False,
        workers: int = 32,
    ):
        self.manager = ModelManager(models, poll_seconds, settle_seconds, enable_batching)
        self.port, self.rest_api_port, self.bind_address = port, rest_api_port, bind_address
        self.limits, self.workers = limits or RequestLimits(), workers
        self._grpc_server: grpc.Server | None = None
        self._http_server = None

    def start(self) -> ModelServer:
        """Load the models found now, then open both ports."""
        from serving import grpc_api, rest_api

        self.manager.start()
        message_limit = self.limits.max_request_bytes + (1 << 20)  # our check answers first
        self._grpc_server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.workers),
            options=[
                ("grpc.max_receive_message_length", message_limit),
                ("grpc.max_send_message_length", -1),
            ],
        )
        grpc_api.add_services(self._grpc_server, self)
        self.port = self._grpc_server.add_insecure_port(f"{self.bind_address}:{self.port}")
        if not self.port:
            raise OSError(f"cannot bind gRPC to {self.bind_address}:{self.port}")
        self._grpc_server.start()
        if self.rest_api_port is not None:
            self._http_server = rest_api.make_http_server(
                self, self.bind_address, self.rest_api_port
            )
            self.rest_api_port = self._http_server.server_address[1]
            threading.Thread(target=self._http_server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._http_server:
            self._http_server.shutdown()
            self._http_server.server_close()
        if self._grpc_server:
            self._grpc_server.stop(grace=1).wait()
        self.manager.stop()

    def wait_until_available(self, name: str, timeout: float = 120.0) -> int:
        """Block until some version of `name` is AVAILABLE; its number."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.manager.status(name)
            if available := [v for v, s in states.items() if s.state == "AVAILABLE"]:
                return max(available)
            if time.monotonic() > deadline:
                errors = "; ".join(s.error for s in states.values() if s.error)
                raise TimeoutError(
                    f"model {name!r}: no version available after {timeout} s. {errors}"
                )
            time.sleep(0.05)

    def predict(
        self,
        spec: model_pb2.ModelSpec,
        inputs: dict[str, np.ndarray],
        output_filter: list[str] | None = None,
        request_bytes: int = 0,
        loaded: LoadedVersion | None = None,
    ) -> tuple[model_pb2.ModelSpec, dict[str, np.ndarray]]:
        """Run the signature a ModelSpec names (on `loaded`, when the caller already resolved
        the spec); the spec that answered and the outputs."""
        if request_bytes > self.limits.max_request_bytes:
            raise InvalidArgument(
                f"request of {request_bytes} bytes; the limit is {self.limits.max_request_bytes}"
            )
        loaded = loaded or self.resolve(spec)
        signature_name = spec.signature_name or DEFAULT_SIGNATURE
        outputs = loaded.predict(signature_name, inputs, self.limits, output_filter)
        return self._answered_spec(spec, loaded, signature_name), outputs

    def metadata(
        self, spec: model_pb2.ModelSpec, fields: list[str]
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """The version's SignatureDefs, the only metadata field TF Serving defines."""
        if list(fields) != [SIGNATURE_DEF_FIELD]:
            raise InvalidArgument(
                f"metadata_field must be ['{SIGNATURE_DEF_FIELD}'], not {list(fields)}"
            )
        loaded = self.resolve(spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse(
            model_spec=self._answered_spec(spec, loaded, "")
        )
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        for name, signature_def in loaded.signature_defs.items():
            signature_defs.signature_def[name].CopyFrom(signature_def)
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_defs)
        return response

    def status(self, spec: model_pb2.ModelSpec) -> get_model_status_pb2.GetModelStatusResponse:
        """Every version's state (or the one version the spec names)."""
        version = spec.version.value if spec.HasField("version") else None
        response = get_model_status_pb2.GetModelStatusResponse()
        State = get_model_status_pb2.ModelVersionStatus.State  # noqa: N806 - proto enum
        for number, state in sorted(self.manager.status(spec.name, version).items()):
            status = response.model_version_status.add(
                version=number, state=State.Value(state.state)
            )
            status.status.SetInParent()  # error_code OK unless loading failed
            if state.error:
                status.status.error_code = FAILED_LOAD_CODE
                status.status.error_message = state.error
        return response

    def resolve(self, spec: model_pb2.ModelSpec) -> LoadedVersion:
        version = spec.version.value if spec.HasField("version") else None
        return self.manager.resolve(spec.name, version, spec.version_label)

    @staticmethod
    def _answered_spec(
        spec: model_pb2.ModelSpec, loaded: LoadedVersion, signature_name: str
    ) -> model_pb2.ModelSpec:
        answered = model_pb2.ModelSpec(name=spec.name, signature_name=signature_name)
        answered.version.value = loaded.version
        return answered
