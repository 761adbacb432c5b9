"""The model server over real loopback gRPC and HTTP, serving the model the pipeline pushed."""

from __future__ import annotations

import json
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
)

from memn2n_cli.main import main
from model.babi.export import answer_questions
from model.signatures import question_request
from serving.client import rest_predict
from serving.grpc_client import grpc_predict
from serving.servable import InvalidArgument, RequestBatcher
from serving.tensor_proto import to_ndarray, to_tensor_proto
from tests.conftest import INPUTS, QUESTION, STORY, pushed_version, rest


@pytest.mark.parametrize(
    "array",
    [
        np.array([[b"Mary went", "é".encode()], [b"", b"x"]], dtype=object),
        np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7,
        np.array([[-(2**31), 2**31 - 1]], dtype=np.int32),
        np.array([-(2**63), 2**63 - 1, 0], dtype=np.int64),
        np.zeros((0, 5), dtype=np.float32),
        np.array([True, False]),  # a dtype without a fast path
    ],
)
def test_tensor_protos_are_written_and_read_as_tensorflow_does(array):
    proto = to_tensor_proto(array)
    assert proto == tf.make_tensor_proto(array)
    for decoded in (to_ndarray(proto), to_ndarray(tf.make_tensor_proto(array))):
        assert decoded.dtype == array.dtype and decoded.shape == array.shape
        np.testing.assert_array_equal(decoded, array)


def test_a_lone_request_runs_in_its_own_thread_and_concurrent_ones_are_merged():
    callers: list[tuple[threading.Thread, int]] = []
    release = threading.Event()

    def run(inputs: dict) -> dict:
        callers.append((threading.current_thread(), len(inputs["x"])))
        if len(callers) == 2:
            release.wait(10)  # hold the first merged batch while more requests queue
        return {"y": inputs["x"] * 2}

    batcher = RequestBatcher(run, max_batch=4)
    assert batcher.submit({"x": np.array([1])})["y"].tolist() == [2]
    assert callers == [(threading.current_thread(), 1)]
    answers: dict[int, list] = {}

    def ask(i: int) -> None:
        answers[i] = batcher.submit({"x": np.array([i, -i])})["y"].tolist()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(1, 6)]
    threads[0].start()
    while len(callers) < 2:
        time.sleep(0.001)
    for thread in threads[1:]:
        thread.start()
    while len(batcher.pending) < 4:
        time.sleep(0.001)
    release.set()
    for thread in threads:
        thread.join()
    assert answers == {i: [2 * i, -2 * i] for i in range(1, 6)}
    assert [size for _, size in callers[1:]] == [2, 4, 4]  # max_batch examples at most


def test_a_failed_batch_fails_each_of_its_requests_and_the_next_runs():
    def run(inputs: dict) -> dict:
        if (inputs["x"] < 0).any():
            raise InvalidArgument("negative")
        return {"y": inputs["x"]}

    batcher = RequestBatcher(run)
    with pytest.raises(InvalidArgument, match="negative"):
        batcher.submit({"x": np.array([-1])})
    assert batcher.submit({"x": np.array([3])})["y"].tolist() == [3]
    assert batcher.running == 0 and not batcher.pending


def test_grpc_predict_answers_as_the_saved_model_does(blessed_run, stub):
    version, outputs = grpc_predict(stub, question_request("babi", [STORY], [QUESTION]))
    direct = answer_questions(pushed_version(blessed_run), [STORY], [QUESTION])
    assert version == 1
    assert outputs["answer"].tolist() == direct["answer"]
    np.testing.assert_allclose(outputs["probability"], direct["probability"], rtol=1e-5)
    assert outputs["attention"].shape == (1, 3, 4)  # [B, hops, memory: longest training story]
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
        ("/v1/models/babi/labels/stable:predict", good, 400, "label 'stable'"),
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


def test_query_prints_the_answer_and_the_attention_table(server, tmp_path, capsys):
    story_file = tmp_path / "story.txt"
    story_file.write_text(STORY + "\n")
    grpc_args = ["query", "--server", f"127.0.0.1:{server.port}", "--story", str(story_file)]
    plot = tmp_path / "attention.png"
    assert main([*grpc_args, "--question", QUESTION, "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 2000
    printed = capsys.readouterr().out
    assert printed.startswith("answer: ") and "hop 3" in printed
    assert "  1  Mary moved to the bathroom." in printed and "  2  John went" in printed
    rest_args = ["query", "--rest", "--server", f"127.0.0.1:{server.rest_api_port}", "--json"]
    assert main([*rest_args, "--story", str(story_file), "--question", QUESTION]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert len(answer["attention"]) == 3 and 0 < answer["probability"] <= 1
    assert main([*grpc_args, "--question", " "]) == 1
    assert "INVALID_ARGUMENT" in capsys.readouterr().err
