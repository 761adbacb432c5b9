"""The server core: the operations TF Serving's front ends answer (predict, metadata, status)
over the models a ModelManager holds, within the request limits.

Like TF Serving's ServerCore, it knows no protocol: `serving/grpc_api.py` and
`serving/rest_api.py` take a core and only encode requests and responses; `serving/server.py`
composes the three.
"""

from __future__ import annotations

import time

import numpy as np
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
)

from serving.model_manager import ModelManager
from serving.servable import DEFAULT_SIGNATURE, InvalidArgument, LoadedVersion, RequestLimits

SIGNATURE_DEF_FIELD = "signature_def"
FAILED_LOAD_CODE = 2  # tensorflow.error.Code UNKNOWN, as TF Serving reports a failed load
VERSION_STATE = get_model_status_pb2.ModelVersionStatus.State


class ServerCore:
    """Resolves model specs to loaded versions and answers predict, metadata and status."""

    def __init__(self, manager: ModelManager, limits: RequestLimits | None = None):
        self.manager, self.limits = manager, limits or RequestLimits()

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
        for number, state in sorted(self.manager.status(spec.name, version).items()):
            status = response.model_version_status.add(
                version=number, state=VERSION_STATE.Value(state.state)
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
