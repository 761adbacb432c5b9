"""The model server against hostile and careless clients, and TF Serving's own REST cases.

Each defect an outside probe found has a case here (raw sockets where the framing is the point);
the REST conformance cases are ported from TF Serving's http_rest_api_handler_test.cc.
"""

from __future__ import annotations

import base64
import glob
import http.client
import json
import logging
import os
import shutil
import socket
import threading
import time

import grpc
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from model.signatures import EXAMPLES_SIGNATURE, question_request
from serving.grpc_client import grpc_predict
from serving.load_bench import copy_version
from serving.model_manager import ModelManager, single_model_config
from serving.rest_api import ConnectionLimits
from serving.server import ModelServer
from tests.conftest import LIMITS, QUESTION, STORY, pushed_version, rest

PREDICT = "/v1/models/babi:predict"
GOOD = json.dumps({"instances": [{"story": STORY, "question": QUESTION}]}).encode()
TIGHT = ConnectionLimits(max_connections=6, idle_seconds=1.0, body_seconds=2.0, drain_seconds=8.0)


def exchange(port: int, data: bytes, wait: float = 10.0) -> bytes:
    """Send raw bytes to the REST port; all that comes back until the server closes (or `wait`
    seconds of silence)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as connection:
        connection.sendall(data)
        answer = b""
        while True:
            try:
                chunk = connection.recv(1 << 16)
            except (TimeoutError, ConnectionResetError):
                return answer
            if not chunk:
                return answer
            answer += chunk


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def post(path: str, headers: str, body: bytes = b"") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n"
    return head.encode() + body


@pytest.fixture(scope="module")
def tight(blessed_run, tmp_path_factory):
    """A second server with small connection limits, and a model that has no version yet."""
    root = tmp_path_factory.mktemp("tight")
    copy_version(pushed_version(blessed_run), str(root / "babi"), 1)
    os.makedirs(root / "empty")
    models = [single_model_config(n, str(root / n)) for n in ("babi", "empty")]
    started = ModelServer(
        models, port=0, rest_api_port=0, settle_seconds=0, limits=LIMITS, connection_limits=TIGHT
    ).start()
    started.wait_until_available("babi")
    yield started
    started.stop()


def test_content_lengths_that_are_not_sizes_or_too_big_are_refused_at_once(server):
    port = server.rest_api_port
    for length in ("-1", "abc", "1e9"):
        answer = exchange(port, post(PREDICT, f"Content-Length: {length}\r\n", b"{}"))
        assert status_of(answer) == 400, (length, answer)
    start = time.monotonic()
    answer = exchange(port, post(PREDICT, "Content-Length: 209715200\r\n", b"x" * 4096))
    assert status_of(answer) == 400 and b"the limit is 65536" in answer
    assert time.monotonic() - start < 5  # answered without reading (or waiting for) the body
    chunk = b"x" * 40000
    over = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2 + b"0\r\n\r\n"
    answer = exchange(port, post(PREDICT, "Transfer-Encoding: chunked\r\n", over))
    assert status_of(answer) == 400 and b"the limit is 65536" in answer


def test_chunked_bodies_are_read_and_a_post_without_framing_is_not_smuggled(server):
    chunked = b"%x\r\n" % len(GOOD) + GOOD + b"\r\n0\r\n\r\n"
    headers = "Transfer-Encoding: chunked\r\nConnection: close\r\n"
    answer = exchange(server.rest_api_port, post(PREDICT, headers, chunked))
    assert status_of(answer) == 200 and b'"predictions"' in answer
    smuggled = b"GET /v1/models/babi HTTP/1.1\r\nHost: localhost\r\n\r\n"
    answer = exchange(server.rest_api_port, post(PREDICT, "") + smuggled)
    assert status_of(answer) == 411 and answer.count(b"HTTP/1.1 ") == 1, answer


def test_client_mistakes_are_400_with_a_json_error_and_nothing_logged(server, caplog):
    instance = {"story": STORY, "question": QUESTION}
    deep = b'{"instances": ' + b"[" * 30000 + b"]" * 30000 + b"}"
    cases = [
        (PREDICT, deep, "nested too deeply"),
        (PREDICT, {"instances": [{**instance, "story": {"b64": 5}}]}, "must be a string"),
        (PREDICT, {"instances": [{**instance, "story": {"b64": "abc"}}]}, "base64"),
        (PREDICT, b'{"instances": [{"story": "\\ud800", "question": "Q"}]}', "lone surrogate"),
        (PREDICT, {"inputs": {"story": [[STORY], [STORY, STORY]], "question": [[QUESTION]] * 2}},
         "rectangular"),
        ("/v1/models/babi/versions/99999999999999999999:predict", instance,
         "Failed to convert version"),
        (PREDICT, {"signature_name": 5, "instances": [instance]}, "must be a string value"),
    ]  # fmt: skip
    with caplog.at_level(logging.WARNING):
        for path, body, message in cases:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            status, error = rest(server, path, data)
            assert status == 400 and message in error["error"], (path, error)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert rest(server, PREDICT, GOOD)[0] == 200


UNSUPPORTED_API_CALLS = [  # http_rest_api_handler_test.cc, UnsupportedApiCalls
    ("GET", "/v1/foo", "Malformed request"),
    ("POST", "/v1/foo", "Malformed request"),
    ("GET", "/v1/models", "Missing model name"),
    ("GET", "/v1/models/debug/model_name", "Malformed request"),
    ("POST", "/v1/models", "Malformed request"),
    ("GET", "/v1/models/foo:predict", "Malformed request"),
    ("GET", "/v1/models/foo/version/50:predict", "Malformed request"),
    ("POST", "/v1/models/foo/version/50:regress", "Malformed request"),
    ("POST", "/v1/models/foo/versions/HELLO:regress", "Malformed request"),
    ("POST", f"/v1/models/foo/versions/{(1 << 64) - 1}:regress", "Failed to convert version"),
    ("POST", "/v1/models/foo/metadata", "Malformed request"),
    ("POST", "/v1/models/foo/label/some_label:regress", "Malformed request"),
    ("POST", "/v1/models/foo/versions/50/labels/some_label:regress", "Malformed request"),
    ("POST", "/v1/models/foo/versions/some_label:regress", "Malformed request"),
    ("PUT", "/v1/models/babi", "Malformed request"),  # any other method, as TF Serving
    ("DELETE", "/v1/models/babi:predict", "Malformed request"),
]


def request(server, method: str, path: str, body: bytes = b"") -> tuple[int, dict, dict]:
    """Status, JSON body and headers of one request with any method."""
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_api_port, timeout=30)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read()), dict(response.getheaders())
    finally:
        connection.close()


@pytest.mark.parametrize("method,path,message", UNSUPPORTED_API_CALLS)
def test_tf_serving_unsupported_api_calls_are_400(server, method, path, message):
    status, body, _ = request(server, method, path, b"{}" if method != "GET" else b"")
    assert status == 400 and message in body["error"], body


def test_tf_serving_predict_name_version_and_request_errors(server):
    instances = json.dumps({"instances": [1]}).encode()
    assert request(server, "POST", "/v1/models/foo:predict", instances)[0] == 404
    assert request(server, "POST", "/v1/models/foo/versions/50:predict", instances)[0] == 404
    assert request(server, "POST", "/v1/models/babi/versions/99:predict", instances)[0] == 404
    cases = [
        (PREDICT, b"", "JSON Parse error: The document is empty"),
        (PREDICT, b"instances = [1, 2]", "JSON Parse error"),
        ("/v1/models/babi/labels/nope:predict", GOOD, "Unrecognized servable version label"),
        (PREDICT, b'{"signature_name": 100}', "'signature_name' key must be a string value."),
    ]
    for path, body, message in cases:
        status, error, _ = request(server, "POST", path, body)
        assert status == 400 and message in error["error"], (path, error)


def test_tf_serving_leniency_paths_decoded_unknown_keys_and_extra_inputs_ignored(server):
    body = {
        "inputs": {"story": [STORY], "question": [QUESTION], "extra": [1]},
        "comment": "ignored, as TF Serving ignores it",
    }
    status, answer, _ = request(
        server, "POST", "/v1/models/ba%62i:predict", json.dumps(body).encode()
    )
    assert status == 200 and set(answer["outputs"]) == {"answer", "probability", "attention"}
    assert request(server, "GET", "/V1/MODELS/babi")[0] == 200  # TF's routes ignore case
    assert request(server, "GET", "/v2/whatever")[0] == 404  # outside /v1/: not TF's handler


def test_answers_leak_no_paths_exceptions_or_server_software(tight, monkeypatch):
    status, error, headers = request(tight, "POST", "/v1/models/empty:predict", GOOD)
    assert status == 404 and "available yet" in error["error"]
    assert os.sep + "empty" not in error["error"]
    assert "Python" not in headers.get("Server", "") and "BaseHTTP" not in headers.get("Server", "")

    def broken(*args, **kwargs):
        raise RuntimeError("secret /etc/passwd")

    monkeypatch.setattr(tight.core, "predict", broken)
    status, error, _ = request(tight, "POST", PREDICT, GOOD)
    assert status == 500 and "secret" not in error["error"] and "RuntimeError" not in error["error"]
    with grpc.insecure_channel(f"127.0.0.1:{tight.port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as failed:
            stub.Predict(question_request("babi", [STORY], [QUESTION]), timeout=30)
    assert (
        failed.value.code() == grpc.StatusCode.INTERNAL and "secret" not in failed.value.details()
    )


def test_connections_are_capped_idle_ones_closed_and_a_burst_queued(tight):
    port = tight.rest_api_port
    idle = [
        socket.create_connection(("127.0.0.1", port), timeout=10)
        for _ in range(TIGHT.max_connections)
    ]
    try:
        time.sleep(0.2)
        refused = exchange(port, b"GET /v1/models/babi HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(refused) == 503 and b"too many connections" in refused
        start = time.monotonic()
        assert all(s.recv(1) == b"" for s in idle)  # closed by the server, idle past 1 s
        assert time.monotonic() - start < 5
    finally:
        for s in idle:
            s.close()
    time.sleep(0.2)
    burst = []
    start = time.monotonic()
    for _ in range(64):  # connections the kernel completes before the server accepts them
        s = socket.socket()
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        burst.append(s)
    connected = time.monotonic() - start
    for s in burst:
        s.close()
    assert connected < 1.0  # a backlog of 5 left most of 64 waiting for SYN retries (>= 1 s)
    deadline = time.monotonic() + 10  # the server sees the burst close, then takes more again
    while (status := rest(tight, "/v1/models/babi")[0]) == 503 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status == 200


def test_stop_drains_requests_in_flight_on_both_ports(blessed_run, tmp_path):
    base = str(tmp_path / "babi")
    copy_version(pushed_version(blessed_run), base, 1)
    server = ModelServer(
        [single_model_config("babi", base)], port=0, rest_api_port=0, settle_seconds=0,
        limits=LIMITS, connection_limits=TIGHT,
    ).start()  # fmt: skip
    server.wait_until_available("babi")
    model, entered, release = server.core.predict, threading.Semaphore(0), threading.Event()

    def slow_model(*args, **kwargs):  # a model that takes a second, as a big batch might
        entered.release()
        release.wait(10)
        return model(*args, **kwargs)

    server.core.predict = slow_model
    answers: dict[str, object] = {}
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        grpc_request = question_request("babi", [STORY], [QUESTION])
        calls = [
            threading.Thread(target=lambda: answers.update(grpc=stub.Predict(grpc_request))),
            threading.Thread(target=lambda: answers.update(rest=rest(server, PREDICT, GOOD))),
        ]
        for call in calls:
            call.start()
        assert entered.acquire(timeout=20) and entered.acquire(timeout=20)  # both in the model
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        time.sleep(0.5)
        release.set()
        for thread in (*calls, stopper):
            thread.join(30)
    assert answers["rest"][0] == 200 and "predictions" in answers["rest"][1]
    assert list(answers["grpc"].outputs["answer"].string_val)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.rest_api_port), timeout=2).close()


def tensor(dtype: int, dims: list[int], **values) -> tensor_pb2.TensorProto:
    shape = tensor_shape_pb2.TensorShapeProto(dim=[{"size": d} for d in dims])
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, **values)


def test_grpc_shapes_the_request_does_not_back_are_refused_before_anything_is_built(stub):
    cases = [
        (tensor(types_pb2.DT_STRING, [5_000_000], string_val=[b"a"]), "declares shape"),
        (tensor(types_pb2.DT_INT32, [250_000_000]), "declares shape"),
        (tensor(types_pb2.DT_STRING, [-1], string_val=[b"a"]), "must be >= 0"),
        (tensor(types_pb2.DT_INT32, [4], tensor_content=b"\0" * 8), "holds 8 bytes, not 16"),
    ]
    for proto, message in cases:
        request = question_request("babi", [STORY], [QUESTION])
        request.inputs["story"].CopyFrom(proto)
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as error:
            stub.Predict(request, timeout=30)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in error.value.details() and time.monotonic() - start < 2


def test_serialized_examples_are_not_checked_as_text(blessed_run, server, stub):
    [records] = [
        f
        for f in glob.glob(f"{blessed_run.pipeline_root}/**/Split-test/*.gz", recursive=True)
        if "BabiExampleGen" in f
    ][:1]
    examples = [
        r.numpy() for r in tf.data.TFRecordDataset(records, compression_type="GZIP").take(2)
    ]
    request = question_request("babi", [STORY], [QUESTION])
    request.model_spec.signature_name = EXAMPLES_SIGNATURE
    del request.inputs["story"], request.inputs["question"]
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto(examples))
    _, outputs = grpc_predict(stub, request)
    assert len(outputs["answer"]) == 2
    body = {"signature_name": EXAMPLES_SIGNATURE,
            "instances": [{"b64": base64.b64encode(e).decode()} for e in examples]}  # fmt: skip
    status, answer = rest(server, PREDICT, json.dumps(body).encode())
    assert status == 200 and len(answer["predictions"]) == 2


def test_an_unreadable_version_folder_blocks_no_other_version_or_model(blessed_run, tmp_path):
    source = pushed_version(blessed_run)
    for model in ("a", "b"):
        copy_version(source, str(tmp_path / model), 1)
    broken = tmp_path / "a" / "2"
    shutil.copytree(source, broken)
    os.symlink(tmp_path / "nowhere", broken / "variables" / "dangling")
    configs = [single_model_config(m, str(tmp_path / m)) for m in ("a", "b")]
    manager = ModelManager(configs, poll_seconds=0, settle_seconds=0)
    manager.poll()
    assert set(manager.models["a"].loaded) == {1} and set(manager.models["b"].loaded) == {1}
    copy_version(source, str(tmp_path / "a"), 3)
    manager.poll()
    assert set(manager.models["a"].loaded) == {3}


def test_a_version_whose_load_failed_is_retried_once_its_files_change(blessed_run, tmp_path):
    source, version = pushed_version(blessed_run), tmp_path / "babi" / "1"
    os.makedirs(version)
    shutil.copy(os.path.join(source, "saved_model.pb"), version)  # as `cp -r` may, pb first
    manager = ModelManager([single_model_config("babi", str(tmp_path / "babi"))], 0, 0)
    manager.poll()
    assert manager.status("babi")[1].state == "END" and manager.status("babi")[1].error
    manager.poll()  # unchanged: not retried
    assert not manager.models["babi"].loaded
    time.sleep(0.05)
    rest = shutil.ignore_patterns("saved_model.pb")  # the rest lands; saved_model.pb unchanged
    shutil.copytree(source, version, dirs_exist_ok=True, copy_function=shutil.copy, ignore=rest)
    manager.poll()
    assert manager.status("babi")[1].state == "AVAILABLE" and not manager.status("babi")[1].error
