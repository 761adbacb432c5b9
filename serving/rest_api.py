"""TF Serving's REST API: model status, metadata, and predict in the row (`instances`) and
columnar (`inputs`) formats, with TF Serving's response shapes and JSON errors."""

from __future__ import annotations

import base64
import http.server
import json
import logging
import re
from typing import Any, cast

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

from serving.core import ServerCore
from serving.servable import DEFAULT_SIGNATURE, InvalidArgument, ServingError

log = logging.getLogger(__name__)
ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<action>/metadata|:predict|:classify|:regress)?$"
)
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
}


def to_array(name: str, value: Any, is_text: bool) -> np.ndarray:
    """One input's JSON value as an array: strings as UTF-8 bytes ({"b64": ...} decoded)."""
    if not is_text:
        try:
            return np.asarray(value)
        except ValueError as e:
            raise InvalidArgument(f"input '{name}' is not a rectangular array: {e}") from None

    def encode(item: Any) -> Any:
        if isinstance(item, list):
            return [encode(i) for i in item]
        if isinstance(item, dict) and set(item) == {"b64"}:
            return base64.b64decode(item["b64"])
        if isinstance(item, str):
            return item.encode("utf-8")
        raise InvalidArgument(f"input '{name}' must hold strings, got {json.dumps(item)[:40]}")

    encoded = encode(value)
    array = np.empty(np.shape(encoded) if isinstance(encoded, list) else (), dtype=object)
    try:
        array[...] = encoded
    except ValueError as e:
        raise InvalidArgument(f"input '{name}' is not a rectangular array: {e}") from None
    return array


def request_inputs(body: dict, text_inputs: dict[str, bool]) -> tuple[dict[str, np.ndarray], bool]:
    """A predict body's inputs (row or columnar) as arrays, and whether it was the row format.

    `text_inputs` maps each of the signature's inputs to whether it takes strings.
    """
    if ("instances" in body) == ("inputs" in body):
        raise InvalidArgument("the request must hold exactly one of 'instances' or 'inputs'")
    if unknown := sorted(set(body) - {"instances", "inputs", "signature_name"}):
        raise InvalidArgument(f"unknown request field(s) {unknown}")
    single = next(iter(text_inputs)) if len(text_inputs) == 1 else None
    if "inputs" in body:
        columns = body["inputs"]
        if not isinstance(columns, dict) or (single and single not in columns):
            if single is None:
                raise InvalidArgument("'inputs' must be an object of named inputs")
            columns = {single: columns}
        row_format = False
    else:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise InvalidArgument("'instances' must be a non-empty list")
        if all(isinstance(i, dict) for i in instances):
            names = set(instances[0])
            if any(set(i) != names for i in instances):
                raise InvalidArgument("every instance must name the same inputs")
            columns = {n: [i[n] for i in instances] for n in names}
        elif single is not None:
            columns = {single: instances}
        else:
            raise InvalidArgument("each instance must be an object of named inputs")
        row_format = True
    inputs = {n: to_array(n, v, text_inputs.get(n, False)) for n, v in columns.items()}
    return inputs, row_format


def as_json(message) -> dict:
    """A response proto as TF Serving's REST API writes it: proto field names, defaults shown."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def jsonable(value: Any) -> Any:
    """Numpy output values as JSON: bytes as text, or {"b64": ...} when not UTF-8."""
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode()}
    return value


def predict_response(outputs: dict[str, np.ndarray], row_format: bool) -> dict:
    """TF Serving's `predictions` (one entry per example) or `outputs` (one entry per output)."""
    lists = {k: jsonable(v.tolist()) for k, v in outputs.items()}
    single = len(lists) == 1
    if not row_format:
        return {"outputs": next(iter(lists.values())) if single else lists}
    sizes = {len(v) if isinstance(v, list) else 0 for v in lists.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise InvalidArgument(
            "the outputs do not share a batch dimension; use the columnar 'inputs' format"
        )
    rows = [{k: v[i] for k, v in lists.items()} for i in range(sizes.pop())]
    return {"predictions": [next(iter(r.values())) for r in rows] if single else rows}


class RestHandler(http.server.BaseHTTPRequestHandler):
    """One HTTP/1.1 connection; the RestServer's core answers."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave at once: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - base class signature
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - http.server method name
        self._answer(self._get)

    def do_POST(self) -> None:  # noqa: N802 - http.server method name
        self._answer(self._post)

    def _route(self) -> tuple[model_pb2.ModelSpec, str]:
        match = ROUTE.match(self.path.split("?")[0])
        if not match:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"no such resource {self.path!r}; paths are /v1/models/NAME[/versions/N]"
                "[/metadata|:predict]",
            )
        spec = model_pb2.ModelSpec(name=match["name"], version_label=match["label"] or "")
        if match["version"]:
            spec.version.value = int(match["version"])
        return spec, match["action"] or ""

    def _get(self) -> dict:
        spec, action = self._route()
        core = cast(RestServer, self.server).core
        if action == "/metadata":
            response = core.metadata(spec, ["signature_def"])
            signature_defs = response.metadata["signature_def"]
            unpacked = get_model_metadata_pb2.SignatureDefMap()
            signature_defs.Unpack(unpacked)
            return {
                "model_spec": as_json(response.model_spec),
                "metadata": {"signature_def": as_json(unpacked)},
            }
        if action:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"{action} needs POST")
        status = core.status(spec)
        return as_json(status)

    def _post(self) -> dict:
        spec, action = self._route()
        if action in (":classify", ":regress"):
            raise ServingError(
                grpc.StatusCode.UNIMPLEMENTED, f"{action} is not served; use :predict"
            )
        if action != ":predict":
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"POST {self.path}: use :predict")
        core = cast(RestServer, self.server).core
        length = int(self.headers.get("Content-Length") or 0)
        if length > core.limits.max_request_bytes:
            self.close_connection = True  # the body is not read
            raise InvalidArgument(
                f"request of {length} bytes; the limit is {core.limits.max_request_bytes}"
            )
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise InvalidArgument(f"the request body is not valid UTF-8 (byte {e.start})") from None
        except json.JSONDecodeError as e:
            raise InvalidArgument(f"the request body is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise InvalidArgument("the request body must be a JSON object")
        spec.signature_name = body.get("signature_name", DEFAULT_SIGNATURE)
        loaded = core.resolve(spec)
        signature = loaded.signature(spec.signature_name)
        text_inputs = {n: s.dtype.name == "string" for n, s in signature.inputs.items()}
        inputs, row_format = request_inputs(body, text_inputs)
        _, outputs = core.predict(spec, inputs, request_bytes=length, loaded=loaded)
        return predict_response(outputs, row_format)

    def _answer(self, handler) -> None:
        try:
            status, body = 200, handler()
        except ServingError as e:
            status, body = HTTP_STATUS.get(e.code, 500), {"error": e.message}
        except Exception as e:
            log.exception("REST request failed")
            status, body = 500, {"error": f"{type(e).__name__}: {e}"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class RestServer(http.server.ThreadingHTTPServer):
    """TF Serving's REST API on `address`:`port`, answered by `core`; a thread per connection."""

    daemon_threads = True

    def __init__(self, core: ServerCore, address: str, port: int):
        super().__init__((address, port), RestHandler)
        self.core = core
