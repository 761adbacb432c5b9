"""The model server over real loopback gRPC and HTTP, serving the model the pipeline pushed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from memn2n_cli.main import main
from model.babi.export import answer_questions
from model.babi.inputs import read_split
from model.signatures import question_request
from serving.canary import run_canary
from serving.client import QueryError, rest_predict
from serving.grpc_client import grpc_predict
from serving.load_bench import copy_version, free_port
from serving.model_manager import read_model_config_file, single_model_config
from serving.servable import RequestLimits
from serving.server import ModelServer

STORY = "Mary moved to the bathroom.\nJohn went to the hallway."
QUESTION = "Where is Mary?"
INPUTS = {"story": [STORY], "question": [QUESTION]}
LIMITS = RequestLimits(max_request_bytes=1 << 16, max_lines=60, max_words=20, max_batch=64)


def pushed_version(blessed_run) -> str:
    """The version folder the pipeline's Pusher wrote."""
    base = os.path.join(blessed_run.serving_dir, "babi")
    return os.path.join(base, max(os.listdir(base), key=int))


@pytest.fixture(scope="module")
def server(blessed_run, tmp_path_factory):
    """Our server on free loopback ports, serving a copy of the pushed model as version 1."""
    base_path = str(tmp_path_factory.mktemp("serving") / "babi")
    copy_version(pushed_version(blessed_run), base_path, 1)
    model = single_model_config("babi", base_path)
    started = ModelServer(
        [model], port=0, rest_api_port=0, poll_seconds=0.2, settle_seconds=0.3, limits=LIMITS
    ).start()
    started.wait_until_available("babi")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as opened:
        yield opened


@pytest.fixture(scope="module")
def stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def rest(server, path: str, body: bytes | None = None) -> tuple[int, dict]:
    """One HTTP request to the REST port: status and JSON body."""
    request = urllib.request.Request(f"http://127.0.0.1:{server.rest_api_port}{path}", data=body)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_grpc_predict_answers_as_the_saved_model_does(blessed_run, stub):
    version, outputs = grpc_predict(stub, question_request("babi", [STORY], [QUESTION]))
    direct = answer_questions(pushed_version(blessed_run), [STORY], [QUESTION])
    assert version == 1
    assert outputs["answer"].tolist() == direct["answer"]
    np.testing.assert_allclose(outputs["probability"], direct["probability"], rtol=1e-5)
    assert outputs["attention"].shape == (1, 3, 50)  # [B, hops, memory]
    assert outputs["attention"][0, :, 2:].max() == 0  # only the two sentences get attention


def test_rest_predict_row_and_columnar_formats_match_grpc(server, stub):
    _, grpc_outputs = grpc_predict(stub, question_request("babi", [STORY, STORY], [QUESTION] * 2))
    row = {"instances": [{"story": STORY, "question": QUESTION}] * 2}
    status, body = rest(server, "/v1/models/babi:predict", json.dumps(row).encode())
    assert status == 200
    assert [p["answer"] for p in body["predictions"]] == [
        a.decode() for a in grpc_outputs["answer"]
    ]
    np.testing.assert_allclose(
        [p["attention"] for p in body["predictions"]], grpc_outputs["attention"], atol=1e-6
    )
    columnar = rest_predict(f"127.0.0.1:{server.rest_api_port}", "babi", INPUTS, 1)
    assert columnar["answer"] == [grpc_outputs["answer"][0].decode()]
    assert set(columnar) == {"answer", "probability", "attention"}


def test_metadata_and_status_over_grpc_and_rest(server, stub, channel):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "babi"
    response = stub.GetModelMetadata(request)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    default = signatures.signature_def["serving_default"]
    assert set(default.inputs) == {"story", "question"}
    assert set(default.outputs) == {"answer", "probability", "attention"}
    assert response.model_spec.version.value == 1

    status_stub = model_service_pb2_grpc.ModelServiceStub(channel)
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "babi"
    [version] = status_stub.GetModelStatus(status_request).model_version_status
    assert (
        version.version == 1 and version.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    )

    assert rest(server, "/v1/models/babi/versions/1") == (
        200,
        {
            "model_version_status": [
                {
                    "version": "1",
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        },
    )
    status, body = rest(server, "/v1/models/babi/metadata")
    assert status == 200 and body["model_spec"]["version"] == "1"
    assert "serving_default" in body["metadata"]["signature_def"]["signature_def"]


def strings(*values: bytes) -> np.ndarray:
    return np.array(values, dtype=object)


def bad_requests() -> list[tuple[str, dict, str]]:
    """(case, inputs to replace (None: remove), what the error message must say)."""
    return [
        ("no question", {"question": None}, "missing input(s) ['question']"),
        ("extra input", {"answer": strings(b"x")}, "unknown input(s) ['answer']"),
        ("wrong dtype", {"question": np.array([3], dtype=np.int32)}, "expects string"),
        ("wrong shape", {"story": np.array([[STORY.encode()]], dtype=object)}, "has shape [1, 1]"),
        ("empty question", {"question": strings(b"  ")}, "'question' element 0 is empty"),
        ("long story", {"story": strings(b"a b.\n" * 61)}, "61 lines; the limit is 60"),
        ("long sentence", {"story": strings(b"a " * 21)}, "21 words; the limit is 20"),
        ("bad UTF-8", {"question": strings(b"Where is \xff?")}, "not valid UTF-8"),
        ("batch sizes", {"question": strings(b"a", b"b")}, "different batch sizes"),
    ]


@pytest.mark.parametrize("case,changes,message", bad_requests(), ids=[c[0] for c in bad_requests()])
def test_bad_grpc_requests_are_invalid_argument_and_the_server_keeps_serving(
    stub, case, changes, message
):
    request = question_request("babi", [STORY], [QUESTION])
    for name, value in changes.items():
        if value is None:
            del request.inputs[name]
        else:
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.value.details()
    assert grpc_predict(stub, question_request("babi", [STORY], [QUESTION]))[0] == 1


def test_request_limits_unknown_models_versions_and_signatures(server, stub):
    huge = question_request("babi", ["Mary went home.\n" * 5000], [QUESTION])
    cases = [
        (huge, grpc.StatusCode.INVALID_ARGUMENT, "the limit is 65536"),
        (question_request("nope", [STORY], [QUESTION]), grpc.StatusCode.NOT_FOUND, "'nope'"),
        (question_request("babi", [STORY], [QUESTION], 7), grpc.StatusCode.NOT_FOUND, "version 7"),
    ]
    unknown_signature = question_request("babi", [STORY], [QUESTION])
    unknown_signature.model_spec.signature_name = "nope"
    cases.append((unknown_signature, grpc.StatusCode.INVALID_ARGUMENT, "signature_name 'nope'"))
    for request, code, message in cases:
        with pytest.raises(grpc.RpcError) as error:
            stub.Predict(request, timeout=30)
        assert error.value.code() == code and message in error.value.details()
    unseen = grpc_predict(stub, question_request("babi", [STORY], ["Where is Zorblax?"]))[1]
    assert unseen["answer"][0] in {b"bathroom", b"hallway", b"office", b"football,apple", b"milk"}


def test_bad_rest_requests_get_the_matching_status_and_a_json_error(server):
    good = {"instances": [{"story": STORY, "question": QUESTION}]}
    predict = "/v1/models/babi:predict"
    cases = [
        (predict, {"instances": [{"story": STORY}]}, 400, "['question']"),
        (predict, {"inputs": {"story": [STORY], "question": [5]}}, 400, "strings"),
        (predict, {"instances": [{"story": STORY, "question": ""}]}, 400, "empty"),
        (predict, {**good, "inputs": {}}, 400, "exactly one"),
        ("/v1/models/nope:predict", good, 404, "'nope'"),
        ("/v1/models/babi/versions/9:predict", good, 404, "version 9"),
        ("/v1/models/babi/labels/stable:predict", good, 404, "label 'stable'"),
        ("/v2/whatever", good, 404, "no such resource"),
    ]  # fmt: skip
    for path, body, status, message in cases:
        answered, error = rest(server, path, json.dumps(body).encode())
        assert answered == status and message in error["error"], (path, body, error)
    assert rest(server, "/v1/models/babi:predict", b"{not json")[0] == 400
    assert "UTF-8" in rest(server, "/v1/models/babi:predict", b'{"a": "\xff"}')[1]["error"]
    big = json.dumps({"instances": [{"story": "a.\n" * 30000, "question": QUESTION}]}).encode()
    assert rest(server, "/v1/models/babi:predict", big)[0] == 400
    assert rest(server, "/v1/models/babi:predict", json.dumps(good).encode())[0] == 200


def test_a_new_version_replaces_the_old_without_failing_a_request(blessed_run, server):
    """Eight clients (gRPC and REST) keep asking while version 2 is written Pusher-style;
    a partly written version 3 (no saved_model.pb yet) is never loaded."""
    base_path = server.manager.models["babi"].config.base_path
    failures, versions, stop = [], set(), threading.Event()

    def ask(use_rest: bool) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as opened:
            client = prediction_service_pb2_grpc.PredictionServiceStub(opened)
            while not stop.is_set():
                try:
                    if use_rest:
                        rest_predict(f"127.0.0.1:{server.rest_api_port}", "babi", INPUTS)
                    else:
                        request = question_request("babi", [STORY], [QUESTION])
                        versions.add(grpc_predict(client, request)[0])
                except QueryError as e:
                    failures.append(str(e))

    clients = [threading.Thread(target=ask, args=(i % 2 == 1,)) for i in range(8)]
    for client in clients:
        client.start()
    time.sleep(0.5)
    copy_version(pushed_version(blessed_run), base_path, 2)
    partial = os.path.join(base_path, "3")
    shutil.copytree(pushed_version(blessed_run), partial, ignore=shutil.ignore_patterns("*.pb"))
    deadline = time.monotonic() + 60
    while 2 not in versions and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    stop.set()
    for client in clients:
        client.join()
    states = server.manager.status("babi")
    assert failures == []
    assert versions == {1, 2}
    assert states[1].state == "END" and states[2].state == "AVAILABLE" and 3 not in states
    shutil.rmtree(partial)


def test_a_version_that_fails_to_load_is_reported_and_the_old_one_keeps_serving(server, stub):
    base_path = server.manager.models["babi"].config.base_path
    serving = max(server.manager.models["babi"].loaded)
    broken = os.path.join(base_path, "5")
    os.makedirs(broken)
    with open(os.path.join(broken, "saved_model.pb"), "wb") as f:
        f.write(b"not a SavedModel")
    deadline = time.monotonic() + 30
    while 5 not in server.manager.status("babi") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "loading" in server.manager.status("babi")[5].error
    assert grpc_predict(stub, question_request("babi", [STORY], [QUESTION]))[0] == serving
    assert (
        rest(server, "/v1/models/babi/versions/5")[1]["model_version_status"][0]["status"][
            "error_code"
        ]
        == "UNKNOWN"
    )
    shutil.rmtree(broken)


def test_batching_gives_the_same_answers(blessed_run, tmp_path):
    base_path = str(tmp_path / "babi")
    copy_version(pushed_version(blessed_run), base_path, 1)
    batched = ModelServer(
        [single_model_config("babi", base_path)],
        port=0,
        rest_api_port=None,
        settle_seconds=0,
        enable_batching=True,
    ).start()
    questions = [QUESTION, "Where is John?", "Where is Daniel?", "What is John carrying?"] * 4
    results: dict[int, bytes] = {}
    try:
        with grpc.insecure_channel(f"127.0.0.1:{batched.port}") as opened:
            client = prediction_service_pb2_grpc.PredictionServiceStub(opened)

            def ask(i: int) -> None:
                request = question_request("babi", [STORY], [questions[i]])
                results[i] = grpc_predict(client, request)[1]["answer"][0]

            threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(questions))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        batched.stop()
    direct = answer_questions(pushed_version(blessed_run), [STORY] * len(questions), questions)
    assert [results[i] for i in range(len(questions))] == direct["answer"]


def test_query_prints_the_answer_and_the_attention_table(server, tmp_path, capsys):
    story_file = tmp_path / "story.txt"
    story_file.write_text(STORY + "\n")
    grpc_args = ["query", "--server", f"127.0.0.1:{server.port}", "--story", str(story_file)]
    assert main([*grpc_args, "--question", QUESTION]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("answer: ") and "hop 3" in printed
    assert "  1  Mary moved to the bathroom." in printed and "  2  John went" in printed
    rest_args = ["query", "--rest", "--server", f"127.0.0.1:{server.rest_api_port}", "--json"]
    assert main([*rest_args, "--story", str(story_file), "--question", QUESTION]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert len(answer["attention"]) == 3 and 0 < answer["probability"] <= 1
    assert main([*grpc_args, "--question", " "]) == 1
    assert "INVALID_ARGUMENT" in capsys.readouterr().err


def test_the_canary_blesses_the_pushed_model_and_rejects_a_broken_one(blessed_run, tmp_path):
    from pipeline.local_runner import open_metadata_store

    store = open_metadata_store(blessed_run)
    [examples] = [a for a in store.get_artifacts_by_type("Examples") if "/BabiExampleGen/" in a.uri]
    report = run_canary(pushed_version(blessed_run), examples.uri, requests=3, batch=2)
    eval_questions = len(read_split(examples.uri, "eval"))
    assert report["blessed"] is True and report["questions"] == min(eval_questions, 6)
    assert report["requests"] == -(-report["questions"] // 2)
    broken = tmp_path / "broken"
    shutil.copytree(pushed_version(blessed_run), broken)
    (broken / "saved_model.pb").write_bytes(b"truncated")
    report = run_canary(str(broken), examples.uri)
    assert report["blessed"] is False and "loading" in report["reason"]


def test_model_config_file_names_several_models(tmp_path):
    config_file = tmp_path / "models.config"
    config_file.write_text(
        'model_config_list { config { name: "babi" base_path: "/m/babi" model_platform: '
        '"tensorflow" } config { name: "lm" base_path: "/m/lm" model_version_policy '
        "{ all {} } } }"
    )
    models = read_model_config_file(str(config_file))
    assert [(m.name, m.base_path) for m in models] == [("babi", "/m/babi"), ("lm", "/m/lm")]
    assert models[1].model_version_policy.WhichOneof("policy_choice") == "all"
    config_file.write_text("model_config_list { config { nam: 1 } }")
    with pytest.raises(ValueError, match="not a ModelServerConfig"):
        read_model_config_file(str(config_file))


def test_memn2n_serve_command_serves_the_pushed_model(blessed_run):
    """The done-when command line, as a process: Predict, REST, INVALID_ARGUMENT, NOT_FOUND."""
    port, rest_port = free_port(), free_port()
    base_path = os.path.join(blessed_run.serving_dir, "babi")
    command = [
        os.path.join(os.path.dirname(sys.executable), "memn2n"),
        "serve",
        f"--port={port}",
        f"--rest_api_port={rest_port}",
        "--model_name=babi",
        f"--model_base_path={base_path}",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        while not any(line.startswith("serving gRPC on") for line in lines):
            line = process.stdout.readline()
            assert line, "memn2n serve exited:\n" + "".join(lines)
            lines.append(line)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as opened:
            client = prediction_service_pb2_grpc.PredictionServiceStub(opened)
            _, outputs = grpc_predict(client, question_request("babi", [STORY], [QUESTION]))
            request = question_request("babi", [STORY], [QUESTION])
            del request.inputs["question"]
            with pytest.raises(grpc.RpcError) as error:
                client.Predict(request, timeout=30)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.RpcError) as error:
                client.Predict(question_request("other", [STORY], [QUESTION]), timeout=30)
            assert error.value.code() == grpc.StatusCode.NOT_FOUND
            assert grpc_predict(client, question_request("babi", [STORY], [QUESTION]))[1]["answer"]
        direct = answer_questions(pushed_version(blessed_run), [STORY], [QUESTION])
        assert outputs["answer"].tolist() == direct["answer"]
        served = rest_predict(f"127.0.0.1:{rest_port}", "babi", INPUTS)
        assert served["answer"] == [direct["answer"][0].decode()]
        assert process.poll() is None
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


@pytest.mark.skipif(
    shutil.which("tensorflow_model_server") is None,
    reason="tensorflow_model_server is not on PATH (it cannot be installed on this machine; "
    "see ../shared/notes/tfx-on-debian12.md)",
)
def test_the_same_client_works_against_real_tf_serving(blessed_run):
    port, rest_port = free_port(), free_port()
    base_path = os.path.join(blessed_run.serving_dir, "babi")
    process = subprocess.Popen(
        [
            "tensorflow_model_server",
            f"--port={port}",
            f"--rest_api_port={rest_port}",
            "--model_name=babi",
            f"--model_base_path={base_path}",
        ]
    )
    try:
        deadline = time.monotonic() + 60
        with grpc.insecure_channel(f"127.0.0.1:{port}") as opened:
            client = prediction_service_pb2_grpc.PredictionServiceStub(opened)
            while True:
                try:
                    _, outputs = grpc_predict(client, question_request("babi", [STORY], [QUESTION]))
                    break
                except QueryError:
                    assert time.monotonic() < deadline, "tensorflow_model_server did not serve"
                    time.sleep(0.5)
        direct = answer_questions(pushed_version(blessed_run), [STORY], [QUESTION])
        assert outputs["answer"].tolist() == direct["answer"]
        served = rest_predict(f"127.0.0.1:{rest_port}", "babi", INPUTS)
        assert served["answer"] == [direct["answer"][0].decode()]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_bench_serve_measures_every_protocol_and_a_swap_without_failures(blessed_run, tmp_path):
    from serving.load_bench import run_serve_benchmark

    result = run_serve_benchmark(pushed_version(blessed_run), [1], 0.5, report=lambda line: None)
    for protocol in ("in_process", "grpc", "rest", "grpc_batching"):
        [point] = result[protocol]
        assert point["clients"] == 1 and point["requests"] > 0 and point["failed"] == 0
        assert 0 < point["p50_ms"] <= point["p99_ms"]
    assert result["swap"]["failed"] == 0 and result["swap"]["versions"] == [1, 2]
    assert set(result["targets"]) == {
        "grpc_p50_over_in_process_at_1_client",
        "grpc_p50_under_2x_in_process",
        "zero_failed_across_swap",
    }
