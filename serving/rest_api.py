"""TF Serving's REST API on aiohttp's HTTP server: model status, metadata, and predict in the row
(`instances`) and columnar (`inputs`) formats, with TF Serving's paths, status codes, response
shapes and JSON errors (`tensorflow_serving/model_servers/http_rest_api_handler.cc`).

aiohttp parses HTTP (llhttp: Content-Length and chunked framing, header limits), times out idle
connections and drains in-flight requests on stop; this module bounds bodies and connections and
runs the core's calls on a thread pool, so the event loop never waits for a model.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import dataclasses
import json
import logging
import re
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

from serving.core import ServerCore
from serving.servable import DEFAULT_SIGNATURE, InvalidArgument, ServingError

log = logging.getLogger(__name__)
http_log = logging.getLogger(f"{__name__}.http")  # aiohttp's, without the clients' mistakes
# TF Serving's routes (http_rest_api_util.cc): POST predictions, GET status and metadata.
PREDICT_ROUTE = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(classify|regress|predict)"
)
STATUS_ROUTE = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?(?:/(metadata))?"
)
API_PATHS = re.compile(r"(?i)/v1/.*")  # TF Serving's handler answers these; others are 404
INT64_MAX = (1 << 63) - 1
HTTP_STATUS = {  # TF Serving's ToHTTPStatusCode (http_server.cc), for the codes we raise
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.INTERNAL: 500,
}
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b'Content-Length: 45\r\nConnection: close\r\n\r\n{"error": "too many connections; try again"}\n'
)


@dataclasses.dataclass(frozen=True)
class ConnectionLimits:
    """What the REST port allows its clients: connections, waits and the time to drain."""

    backlog: int = 1024  # connections the kernel queues before we accept them
    max_connections: int = 1000  # open at once; more are answered 503 and closed
    idle_seconds: float = 30.0  # a connection with no request (or half a header) is closed
    body_seconds: float = 30.0  # to send a whole request body
    drain_seconds: float = 10.0  # in-flight requests get this long to finish on stop
    linger_seconds: float = 1.0  # the unread rest of a refused body is dropped this long


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
            if not isinstance(item["b64"], str):
                raise InvalidArgument(f"input '{name}': a 'b64' value must be a string")
            try:
                return base64.b64decode(item["b64"], validate=True)
            except binascii.Error:
                raise InvalidArgument(f"input '{name}': Unable to base64 decode") from None
        if isinstance(item, str):
            try:
                return item.encode("utf-8")
            except UnicodeEncodeError as e:
                raise InvalidArgument(
                    f"input '{name}' holds a lone surrogate (\\u{ord(item[e.start]):04x})"
                ) from None
        raise InvalidArgument(f"input '{name}' must hold strings, got {json.dumps(item)[:40]}")

    encoded = encode(value)
    try:
        array = np.empty(np.shape(encoded) if isinstance(encoded, list) else (), dtype=object)
        array[...] = encoded
    except ValueError as e:
        raise InvalidArgument(f"input '{name}' is not a rectangular array: {e}") from None
    return array


def request_inputs(body: dict, text_inputs: dict[str, bool]) -> tuple[dict[str, np.ndarray], bool]:
    """A predict body's inputs (row or columnar) as arrays, and whether it was the row format.

    `text_inputs` maps each of the signature's inputs to whether it takes strings. As TF
    Serving, other top-level keys and columnar inputs the signature does not take are ignored.
    """
    if ("instances" in body) == ("inputs" in body):
        raise InvalidArgument("the request must hold exactly one of 'instances' or 'inputs'")
    single = next(iter(text_inputs)) if len(text_inputs) == 1 else None
    if "inputs" in body:
        columns = body["inputs"]
        if not isinstance(columns, dict) or set(columns) == {"b64"}:
            if single is None:
                raise InvalidArgument("'inputs' must be an object of named inputs")
            columns = {single: columns}
        if missing := sorted(set(text_inputs) - set(columns)):
            raise InvalidArgument(f"missing input(s) {missing} in 'inputs'")
        columns = {n: columns[n] for n in text_inputs}
        row_format = False
    else:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise InvalidArgument("'instances' must be a non-empty list")
        if all(isinstance(i, dict) and set(i) != {"b64"} for i in instances):
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


def model_spec(name: str, version: str | None, label: str | None) -> model_pb2.ModelSpec:
    """The ModelSpec a path names: name and label URL-decoded, the version within int64."""
    spec = model_pb2.ModelSpec(name=urllib.parse.unquote(name))
    if label:
        spec.version_label = urllib.parse.unquote(label)
    if version:
        if int(version) > INT64_MAX:
            raise InvalidArgument(f"Failed to convert version: {version} to numeric.")
        spec.version.value = int(version)
    return spec


def route(method: str, path: str) -> tuple[model_pb2.ModelSpec, str]:
    """The spec and the action (predict, classify, regress, metadata, or "" for status) of a
    request; as TF Serving, a path under /v1/ that names nothing is a malformed request."""
    if method == "POST" and (match := PREDICT_ROUTE.fullmatch(path)):
        return model_spec(*match.groups()[:3]), match[4]
    if method == "GET" and (match := STATUS_ROUTE.fullmatch(path)):
        if not match[1]:
            raise InvalidArgument("Missing model name in request.")
        return model_spec(*match.groups()[:3]), match[4] or ""
    if API_PATHS.fullmatch(path):
        raise InvalidArgument(f"Malformed request: {method} {path}")
    raise ServingError(grpc.StatusCode.NOT_FOUND, f"no such resource {path!r}; see /v1/models/")


def parse_body(raw: bytes) -> dict:
    """The JSON object a predict request carries."""
    if not raw:
        raise InvalidArgument("JSON Parse error: The document is empty")
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise InvalidArgument(f"the request body is not valid UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"JSON Parse error: {e}") from None
    except RecursionError:
        raise InvalidArgument("JSON Parse error: the document is nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidArgument("JSON Value: the request body must be a JSON object")
    if not isinstance(body.get("signature_name", ""), str):
        raise InvalidArgument("'signature_name' key must be a string value.")
    return body


class BodyRefused(InvalidArgument):
    """A body we will not read to its end: answered with `http_status`, its connection closed."""

    def __init__(self, http_status: int, message: str):
        super().__init__(message)
        self.http_status = http_status


class RestApi:
    """What each route answers, from the core; protocol-free but for JSON."""

    def __init__(self, core: ServerCore):
        self.core = core

    def get(self, spec: model_pb2.ModelSpec, action: str) -> dict:
        if action == "metadata":
            response = self.core.metadata(spec, ["signature_def"])
            unpacked = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(unpacked)
            return {
                "model_spec": as_json(response.model_spec),
                "metadata": {"signature_def": as_json(unpacked)},
            }
        return as_json(self.core.status(spec))

    def post(self, spec: model_pb2.ModelSpec, action: str, raw: bytes) -> dict:
        if action != "predict":
            raise ServingError(
                grpc.StatusCode.UNIMPLEMENTED, f"{action} is not served; use :predict"
            )
        body = parse_body(raw)
        spec.signature_name = body.get("signature_name") or DEFAULT_SIGNATURE
        loaded = self.core.resolve(spec)
        signature = loaded.signature(spec.signature_name)
        text_inputs = {n: s.dtype.name == "string" for n, s in signature.inputs.items()}
        try:
            inputs, row_format = request_inputs(body, text_inputs)
        except RecursionError:
            raise InvalidArgument("an input is nested too deeply") from None
        _, outputs = self.core.predict(spec, inputs, request_bytes=len(raw), loaded=loaded)
        return predict_response(outputs, row_format)


class ClientMistakes(logging.Filter):
    """Drops aiohttp's tracebacks of malformed HTTP (already answered 400) and of clients that
    hung up; everything else it logs stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, (HttpProcessingError, ConnectionResetError))


http_log.addFilter(ClientMistakes())


class CappedServer(web.Server):
    """aiohttp's low-level server, answering 503 to connections beyond `max_connections`."""

    def __init__(self, handler, max_connections: int, **kwargs: Any):
        super().__init__(handler, **kwargs)
        self.max_connections = max_connections

    def connection_made(self, handler, transport: asyncio.Transport) -> None:
        if len(self.connections) >= self.max_connections:
            transport.write(BUSY)
            transport.close()
            return
        super().connection_made(handler, transport)


class RestServer:
    """TF Serving's REST API on `address`:`port`, answered by `core` on `threads` threads.

    The event loop runs in its own thread; `port` is the bound port after `start()`.
    """

    def __init__(
        self,
        core: ServerCore,
        address: str,
        port: int,
        threads: int = 8,
        limits: ConnectionLimits | None = None,
    ):
        self.api, self.address, self.port = RestApi(core), address, port
        self.limits = limits or ConnectionLimits()
        self.max_request_bytes = core.limits.max_request_bytes
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="rest")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.ServerRunner | None = None

    def start(self) -> RestServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()
        return self

    def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to `drain_seconds`), close."""
        if self._runner:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._pool.shutdown()

    async def _open(self) -> None:
        server = CappedServer(
            self._handle,
            self.limits.max_connections,
            keepalive_timeout=self.limits.idle_seconds,
            lingering_time=self.limits.linger_seconds,
            logger=http_log,
            access_log=None,
        )
        self._runner = web.ServerRunner(server, shutdown_timeout=self.limits.drain_seconds)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address, self.port, backlog=self.limits.backlog)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _handle(self, request: web.BaseRequest) -> web.Response:
        keep_alive = True
        try:
            spec, action = route(request.method, request.raw_path.split("?")[0])
            if request.method == "GET":
                status, body = 200, await self._run(self.api.get, spec, action)
            else:
                raw = await self._body(request)
                status, body = 200, await self._run(self.api.post, spec, action, raw)
        except BodyRefused as e:
            status, body, keep_alive = e.http_status, {"error": e.message}, False
        except ServingError as e:
            status, body = HTTP_STATUS.get(e.code, 500), {"error": e.message}
        except Exception:
            log.exception("REST %s %s failed", request.method, request.path)
            status, body = 500, {"error": "internal error; the server's log has the details"}
        response = web.Response(
            status=status,
            body=json.dumps(body).encode(),
            content_type="application/json",
            headers={"Server": "memn2n"},
        )
        if not keep_alive:
            response.force_close()
        return response

    async def _body(self, request: web.BaseRequest) -> bytes:
        """The whole body, within the byte limit and `body_seconds`; framed by Content-Length
        or chunked. A POST with neither is refused and its connection closed (whatever follows
        it is not read as a request)."""
        limit = self.max_request_bytes
        if request.content_length is None and "chunked" not in request.headers.get(
            "Transfer-Encoding", ""
        ):
            raise BodyRefused(411, "a POST needs a Content-Length or a chunked body")
        if (request.content_length or 0) > limit:
            raise BodyRefused(
                400, f"request of {request.content_length} bytes; the limit is {limit}"
            )
        try:
            async with asyncio.timeout(self.limits.body_seconds):
                raw = await request.content.read(limit + 1)
                while len(raw) <= limit and not request.content.at_eof():
                    raw += await request.content.read(limit + 1 - len(raw))
        except TimeoutError:
            raise BodyRefused(
                408, f"the body did not arrive within {self.limits.body_seconds} s"
            ) from None
        if len(raw) > limit:
            raise BodyRefused(400, f"request of more than {limit} bytes; the limit is {limit}")
        return raw

    async def _run(self, function: Callable[..., dict], *args: Any) -> dict:
        return await self._loop.run_in_executor(self._pool, function, *args)
