"""The canary before a push (TFX InfraValidator's idea): serve the candidate in `memn2n serve`'s
server, send it real questions (bAbI) or text prefixes (LM) from the eval split over gRPC, and
check every answer (docs/decisions/serving-canary.md)."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import grpc
import numpy as np
from tensorflow_serving.apis import prediction_service_pb2_grpc

from model.babi.inputs import read_split
from model.lm.inputs import read_tokens
from model.settings import ExperimentName, check_choice
from model.signatures import question_request, text_request
from serving.client import QueryError
from serving.grpc_client import grpc_predict
from serving.model_manager import single_model_config
from serving.server import ModelServer

CANARY_MODEL = "canary"
PREFIX_WORDS = 20


def babi_requests(examples_dir: str, split: str, questions: int, batch: int) -> list:
    """[(PredictRequest, rows)]: up to `questions` of the split's questions, `batch` a request."""
    text = read_split(examples_dir, split)
    rows = range(min(len(text), questions))
    return [
        (
            question_request(
                CANARY_MODEL,
                ["\n".join(text.story[i]) for i in rows[start : start + batch]],
                [text.question[i] for i in rows[start : start + batch]],
            ),
            len(rows[start : start + batch]),
        )
        for start in range(0, len(rows), batch)
    ]


def lm_requests(examples_dir: str, split: str, prefixes: int, batch: int) -> list:
    """[(PredictRequest, rows)]: up to `prefixes` runs of PREFIX_WORDS words of the split."""
    words = read_tokens(examples_dir, split)
    runs = [
        " ".join(words[start : start + PREFIX_WORDS])
        for start in range(0, len(words) - PREFIX_WORDS + 1, PREFIX_WORDS)
    ][:prefixes]
    return [
        (
            text_request(CANARY_MODEL, {"prefix": runs[start : start + batch]}),
            len(runs[start : start + batch]),
        )
        for start in range(0, len(runs), batch)
    ]


def check_next_words(outputs: dict[str, np.ndarray], batch: int) -> str:
    """What is wrong with one response to `batch` prefixes ('' when nothing is)."""
    words, probabilities = outputs.get("next_words"), outputs.get("probabilities")
    if words is None or probabilities is None:
        return f"outputs {sorted(outputs)} lack 'next_words' or 'probabilities'"
    if words.shape[0] != batch or words.shape != probabilities.shape:
        return (
            f"next_words {words.shape} and probabilities {probabilities.shape} are not [{batch}, k]"
        )
    if not words.all():
        return "a next word is empty"
    if not np.all(probabilities > 0) or not np.all(probabilities.sum(axis=-1) <= 1 + 1e-4):
        return f"probabilities are not a distribution's best: {probabilities.tolist()}"
    if not np.all(np.diff(probabilities, axis=-1) <= 0):
        return "next words are not ordered best first"
    return ""


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
    # finite weights [B, hops, memory]; not a distribution in every model: MTA's post-softmax
    # convolution and head mix do not renormalise (model.hop_attention)
    if (attention := outputs.get("attention")) is not None:
        if attention.ndim != 3 or attention.shape[0] != batch or not np.all(np.isfinite(attention)):
            return f"attention {attention.shape} is not finite [B, hops, memory] weights"
    return ""


CANARIES = {  # per experiment: its requests from the examples, and the check of one response
    "babi": (babi_requests, check_answers),
    "lm": (lm_requests, check_next_words),
}


def run_canary(
    model_dir: str,
    examples_dir: str,
    split: str = "eval",
    requests: int = 10,
    batch: int = 8,
    experiment: ExperimentName = "babi",
) -> dict:
    """Load `model_dir` in the server and send `requests` gRPC Predicts of `batch` questions
    (or, for experiment "lm", text prefixes).

    Returns a report: `blessed`, `reason` (why not), `requests`, `questions`, `p50_ms`.
    """
    check_choice("experiment", experiment, tuple(CANARIES))
    build, check = CANARIES[experiment]
    predicts = build(examples_dir, split, requests * batch, batch)
    report: dict[str, Any] = {
        "blessed": False,
        "reason": "",
        "requests": 0,
        "questions": 0,
        "p50_ms": None,
    }
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
                for request, rows in predicts:
                    began = time.perf_counter()
                    try:
                        _, outputs = grpc_predict(stub, request)
                    except QueryError as e:
                        report["reason"] = f"request {report['requests'] + 1} failed: {e}"
                        return report
                    latencies.append(1000 * (time.perf_counter() - began))
                    if problem := check(outputs, rows):
                        report["reason"] = f"request {report['requests'] + 1}: {problem}"
                        return report
                    report["requests"] += 1
                    report["questions"] += rows
        finally:
            server.stop()
    if not report["requests"]:
        report["reason"] = f"no questions in split {split!r} to ask"
        return report
    report["p50_ms"] = float(np.median(latencies))
    report["blessed"] = True
    return report
