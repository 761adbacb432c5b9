"""The load `memn2n bench serve` sends: one bAbI question per request, per-client callers over
gRPC, REST and an in-process call of the signature, and the closed loop that times them.

Run as a module, it is the in-process floor at the server's TensorFlow threads.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from collections.abc import Callable

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from model.signatures import TEXT_SIGNATURE, question_request
from serving.client import QueryError
from serving.grpc_client import grpc_predict
from serving.server import set_tensorflow_threads

MODEL = "babi"
STORY = "\n".join(  # a task-1 story of 10 sentences
    [
        "Mary moved to the bathroom.",
        "John went to the hallway.",
        "Daniel went back to the hallway.",
        "Sandra moved to the garden.",
        "John moved to the office.",
        "Sandra journeyed to the bathroom.",
        "Mary moved to the hallway.",
        "Daniel travelled to the office.",
        "John went back to the garden.",
        "John moved to the bedroom.",
    ]
)
QUESTION = "Where is Sandra?"


def grpc_caller(port: int) -> Callable[[], Callable[[], int]]:
    """A factory of per-client callers; each call returns the answering version."""

    def make() -> Callable[[], int]:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{port}")
        )
        request = question_request(MODEL, [STORY], [QUESTION])
        return lambda: grpc_predict(stub, request)[0]

    return make


def rest_caller(port: int) -> Callable[[], Callable[[], int]]:
    """Per-client keep-alive HTTP connections posting the columnar predict body."""
    body = json.dumps({"inputs": {"story": [STORY], "question": [QUESTION]}})

    def make() -> Callable[[], int]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

        def call() -> int:
            connection.request("POST", f"/v1/models/{MODEL}:predict", body)
            response = connection.getresponse()
            data = response.read()
            if response.status != 200:
                raise QueryError(f"HTTP {response.status}: {data[:200]!r}")
            return 0

        return call

    return make


def in_process_caller(model_dir: str) -> Callable[[], Callable[[], int]]:
    """The floor: the same signature called directly, no server."""
    signature = tf.saved_model.load(model_dir).signatures[TEXT_SIGNATURE]
    story, question = tf.constant([STORY]), tf.constant([QUESTION])

    def make() -> Callable[[], int]:
        def call() -> int:
            outputs = signature(story=story, question=question)
            outputs["answer"].numpy()
            return 0

        return call

    return make


def closed_loop(make_caller, clients: int, seconds: float, on_start=None) -> dict:
    """`clients` threads calling as fast as answers come for `seconds` (or, with `on_start`,
    until on_start(versions answering so far) returns): latency and rate."""
    callers = [make_caller() for _ in range(clients)]
    for call in callers:
        call()  # connect and warm up outside the measurement
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[str] = []
    versions: set[int] = set()
    stop = threading.Event()

    def run(index: int) -> None:
        call = callers[index]
        while not stop.is_set():
            began = time.perf_counter()
            try:
                versions.add(call())
            except (QueryError, OSError, http.client.HTTPException) as e:
                failures.append(str(e))
                continue
            latencies[index].append(time.perf_counter() - began)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    if on_start:
        on_start(versions)
    else:
        time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    done = np.concatenate([np.asarray(x) for x in latencies]) * 1000
    return {
        "clients": clients,
        "requests": int(done.size),
        "failed": len(failures),
        "first_failures": failures[:3],
        "p50_ms": round(float(np.percentile(done, 50)), 3) if done.size else None,
        "p99_ms": round(float(np.percentile(done, 99)), 3) if done.size else None,
        "requests_per_sec": round(done.size / elapsed, 1),
        "versions": sorted(v for v in versions if v),
    }


if __name__ == "__main__":  # the in-process floor, run by load_bench.in_process_floor
    model, counts, duration, intra_op, inter_op = sys.argv[1:]
    set_tensorflow_threads(int(intra_op), int(inter_op))
    floor = in_process_caller(model)
    print(json.dumps([closed_loop(floor, int(c), float(duration)) for c in counts.split(",")]))
