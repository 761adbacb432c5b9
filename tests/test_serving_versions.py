"""The model server's versions, batching and processes: swaps under load, failed loads, the
canary, several models, `memn2n serve` as a process, real TF Serving, and `bench serve`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import grpc
import pytest
from tensorflow_serving.apis import (
    prediction_service_pb2_grpc,
)

from model.babi.export import answer_questions
from model.babi.inputs import read_split
from model.signatures import question_request
from serving.canary import run_canary
from serving.client import QueryError, rest_predict
from serving.grpc_client import grpc_predict
from serving.load_bench import copy_version, free_port
from serving.model_manager import read_model_config_file, single_model_config
from serving.server import ModelServer
from tests.conftest import INPUTS, QUESTION, STORY, pushed_version, rest


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
    [measured] = result["rounds"]
    assert set(measured) == {"in_process", "grpc", "rest", "grpc_no_batching", "rest_no_batching"}
    for [point] in measured.values():
        assert point["clients"] == 1 and point["requests"] > 0 and point["failed"] == 0
        assert 0 < point["p50_ms"] <= point["p99_ms"]
    assert result["tensorflow_threads"] == {"intra_op": 1, "inter_op": 0}
    assert result["swap"]["failed"] == 0 and result["swap"]["versions"] == [1, 2]
    targets = result["targets"]
    [over] = targets["grpc_p50_over_in_process_at_1_client"]
    assert over == round(measured["grpc"][0]["p50_ms"] / measured["in_process"][0]["p50_ms"], 3)
    assert targets["grpc_p50_within_2x_in_process_every_round"] == (over <= 2)
    assert set(targets["batching_over_no_batching"]["rest"]["1"]) == {"requests_per_sec", "p50_ms"}
