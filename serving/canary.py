"""The canary before a push (TFX InfraValidator's idea): serve the candidate in `memn2n serve`'s
server, send it real questions from the eval split over gRPC, and check every answer."""

from __future__ import annotations

import os
import tempfile
import time

import grpc
import numpy as np
from tensorflow_serving.apis import prediction_service_pb2_grpc

from model.babi_inputs import read_split
from model.export import predict_request
from serving.client import QueryError, grpc_predict
from serving.model_manager import single_model_config
from serving.server import ModelServer

CANARY_MODEL = "canary"


def check_answers(outputs: dict[str, np.ndarray], batch: int) -> str:
    """What is wrong with one response to `batch` questions ('' when nothing is)."""
    answer, probability = outputs.get("answer"), outputs.get("probability")
    if answer is None or probability is None:
        return f"outputs {sorted(outputs)} lack 'answer' or 'probability'"
    if answer.shape != (batch,) or probability.shape != (batch,):
        return f"answer {answer.shape} and probability {probability.shape} are not [{batch}]"
    if not all(answer):
        return "an answer is empty"
    if not np.all((probability > 0) & (probability <= 1 + 1e-6)):
        return f"probabilities outside (0, 1]: {probability.tolist()}"
    if (attention := outputs.get("attention")) is not None:
        sums = attention.sum(axis=-1)  # [B, hops]
        if attention.shape[0] != batch or not np.all(sums <= 1 + 1e-3):
            return f"attention {attention.shape} is not [B, hops, memory] weights summing to <= 1"
    return ""


def run_canary(
    model_dir: str, examples_dir: str, split: str = "eval", requests: int = 10, batch: int = 8
) -> dict:
    """Load `model_dir` in the server and send `requests` gRPC Predicts of `batch` questions.

    Returns a report: `blessed`, `reason` (why not), `requests`, `questions`, `p50_ms`.
    """
    text = read_split(examples_dir, split)
    questions = min(len(text), requests * batch)
    report = {"blessed": False, "reason": "", "requests": 0, "questions": 0, "p50_ms": None}
    with tempfile.TemporaryDirectory() as base_path:
        os.symlink(os.path.abspath(model_dir), os.path.join(base_path, "1"))
        config = single_model_config(CANARY_MODEL, base_path)
        server = ModelServer([config], port=0, rest_api_port=None, poll_seconds=0, settle_seconds=0)
        server.start()
        try:
            state = server.manager.status(CANARY_MODEL).get(1)
            if state is None or state.state != "AVAILABLE":
                report["reason"] = state.error if state else f"no saved_model.pb in {model_dir}"
                return report
            with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                latencies = []
                for start in range(0, questions, batch):
                    rows = range(start, min(start + batch, questions))
                    request = predict_request(
                        CANARY_MODEL,
                        ["\n".join(text.story[i]) for i in rows],
                        [text.question[i] for i in rows],
                    )
                    began = time.perf_counter()
                    try:
                        _, outputs = grpc_predict(stub, request)
                    except QueryError as e:
                        report["reason"] = f"request {report['requests'] + 1} failed: {e}"
                        return report
                    latencies.append(1000 * (time.perf_counter() - began))
                    if problem := check_answers(outputs, len(rows)):
                        report["reason"] = f"request {report['requests'] + 1}: {problem}"
                        return report
                    report["requests"] += 1
                    report["questions"] += len(rows)
        finally:
            server.stop()
    if not report["requests"]:
        report["reason"] = f"no questions in split {split!r} to ask"
        return report
    report["p50_ms"] = float(np.median(latencies))
    report["blessed"] = True
    return report
