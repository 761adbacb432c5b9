"""One loaded SavedModel version: its signatures, request checks, warm-up and optional batching."""

from __future__ import annotations

import collections
import dataclasses
import os
import threading

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from model.signatures import TEXT_SIGNATURE, WARMUP_FILE

DEFAULT_SIGNATURE = "serving_default"  # TF Serving's default signature key
# Only TEXT_SIGNATURE takes raw text; the others take serialized tf.Examples, which are bytes
# that the model parses (and rejects as INVALID_ARGUMENT when they are not Examples).


class ServingError(Exception):
    """A request the server answers with a gRPC status (and the matching HTTP status)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class InvalidArgument(ServingError):  # noqa: N818 - named as its gRPC status
    """A request that does not fit the signature or the limits."""

    def __init__(self, message: str):
        super().__init__(grpc.StatusCode.INVALID_ARGUMENT, message)


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """What one request may hold; every text element is checked line by line."""

    max_request_bytes: int = 1 << 22
    max_lines: int = 1000  # sentences in a story
    max_words: int = 200  # words in one sentence
    max_batch: int = 1024  # examples in one request


def check_text(name: str, values: np.ndarray, limits: RequestLimits) -> None:
    """UTF-8, not blank, and within the line and word limits, for every string of an input."""
    for index, value in enumerate(values.reshape(-1)):
        where = f"input '{name}' element {index}"
        try:
            text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        except UnicodeDecodeError as e:
            raise InvalidArgument(f"{where} is not valid UTF-8 (byte {e.start})") from None
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            raise InvalidArgument(f"{where} is empty")
        if len(lines) > limits.max_lines:
            raise InvalidArgument(
                f"{where} has {len(lines)} lines; the limit is {limits.max_lines}"
            )
        for number, line in enumerate(lines, 1):
            if (words := len(line.split())) > limits.max_words:
                raise InvalidArgument(
                    f"{where} line {number} has {words} words; the limit is {limits.max_words}"
                )


def check_inputs(
    inputs: dict[str, np.ndarray],
    specs: dict[str, tf.TensorSpec],
    limits: RequestLimits,
    raw_text: bool = True,
) -> None:
    """The request's inputs against the signature: names, dtypes, shapes, one batch size; and,
    for a signature of raw text (`raw_text`), every string as text within the limits."""
    if missing := sorted(set(specs) - set(inputs)):
        raise InvalidArgument(f"missing input(s) {missing}; the signature takes {sorted(specs)}")
    if extra := sorted(set(inputs) - set(specs)):
        raise InvalidArgument(f"unknown input(s) {extra}; the signature takes {sorted(specs)}")
    batch_sizes = set()
    for name, spec in specs.items():
        value = inputs[name]
        is_text = value.dtype == object or value.dtype.kind in "SU"
        if is_text != (spec.dtype == tf.string) or (
            not is_text and value.dtype != spec.dtype.as_numpy_dtype
        ):
            raise InvalidArgument(
                f"input '{name}' has dtype {value.dtype if not is_text else 'string'}; "
                f"the signature expects {spec.dtype.name}"
            )
        if not spec.shape.is_compatible_with(value.shape):
            raise InvalidArgument(
                f"input '{name}' has shape {list(value.shape)}; the signature expects "
                f"{spec.shape.as_list()} (None: any size)"
            )
        if spec.shape.rank and spec.shape[0] is None:
            batch_sizes.add(value.shape[0])
        if is_text and raw_text:
            check_text(name, value, limits)
    if len(batch_sizes) > 1:
        raise InvalidArgument(f"inputs have different batch sizes {sorted(batch_sizes)}")
    if batch_sizes and max(batch_sizes) > limits.max_batch:
        raise InvalidArgument(f"batch of {max(batch_sizes)}; the limit is {limits.max_batch}")


def read_signature_defs(folder: str) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The SignatureDefs of the serving MetaGraph, as GetModelMetadata returns them."""
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(folder, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    return dict(saved_model.meta_graphs[0].signature_def)


def warmup_requests(folder: str) -> list:
    """The PredictRequests in `assets.extra/tf_serving_warmup_requests`, as TF Serving reads it."""
    path = os.path.join(folder, WARMUP_FILE)
    if not os.path.exists(path):
        return []
    requests = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if log.WhichOneof("log_type") == "predict_log":
            requests.append(log.predict_log.request)
    return requests


class Signature:
    """One signature function with its input specs and, when batching, a batching queue."""

    def __init__(self, function, batching: bool):
        self.function = function
        self.inputs: dict[str, tf.TensorSpec] = function.structured_input_signature[1]
        self.outputs: dict[str, tf.TensorSpec] = function.structured_outputs
        batchable = all(s.shape.rank and s.shape[0] is None for s in self.inputs.values()) and all(
            s.shape.rank and s.shape[0] is None for s in self.outputs.values()
        )
        self.batcher = RequestBatcher(self.run) if batching and batchable else None

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            outputs = self.function(**{k: tf.constant(v) for k, v in inputs.items()})
        except tf.errors.InvalidArgumentError as e:
            raise InvalidArgument(f"the model rejected the request: {e.message}") from None
        return {k: v.numpy() for k, v in outputs.items()}

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.batcher.submit(inputs) if self.batcher else self.run(inputs)


class LoadedVersion:
    """A SavedModel version ready to answer: loaded, its signatures read, warmed up."""

    def __init__(self, folder: str, version: int, batching: bool = False):
        self.folder, self.version = folder, version
        self.signature_defs = read_signature_defs(folder)
        self.model = tf.saved_model.load(folder)
        self.signatures = {
            name: Signature(function, batching) for name, function in self.model.signatures.items()
        }
        for request in warmup_requests(folder):
            name = request.model_spec.signature_name or DEFAULT_SIGNATURE
            self.signature(name).run({k: tf.make_ndarray(v) for k, v in request.inputs.items()})

    def signature(self, name: str) -> Signature:
        if name not in self.signatures:
            raise InvalidArgument(
                f"signature_name {name!r} not found; the model has {sorted(self.signatures)}"
            )
        return self.signatures[name]

    def predict(
        self,
        signature_name: str,
        inputs: dict[str, np.ndarray],
        limits: RequestLimits,
        output_filter: list[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Check the inputs, run the signature, keep the outputs asked for (default all)."""
        signature = self.signature(signature_name or DEFAULT_SIGNATURE)
        if unknown := sorted(set(output_filter or ()) - set(signature.outputs)):
            raise InvalidArgument(
                f"output_filter names unknown output(s) {unknown}; "
                f"the signature has {sorted(signature.outputs)}"
            )
        raw_text = (signature_name or DEFAULT_SIGNATURE) == TEXT_SIGNATURE
        check_inputs(inputs, signature.inputs, limits, raw_text)
        outputs = signature(inputs)
        return {k: v for k, v in outputs.items() if not output_filter or k in output_filter}


@dataclasses.dataclass(eq=False)
class BatchedRequest:
    """One request's inputs, and its outputs or error once its batch has run."""

    inputs: dict[str, np.ndarray]
    size: int
    wake: threading.Event = dataclasses.field(default_factory=threading.Event)
    finished: bool = False
    outputs: dict[str, np.ndarray] | None = None
    error: Exception | None = None


class RequestBatcher:
    """Merges concurrent requests into one call along the batch dimension (TF Serving's
    --enable_batching), with no thread of its own: a request that finds fewer than `threads`
    batches running runs the queued ones (up to `max_batch` examples, oldest first) itself;
    the others wait for theirs. A lone request so runs at once in its own thread."""

    def __init__(self, run, max_batch: int = 64, threads: int = 1):
        # One batch at a time: a second (threads=2) cut 32 gRPC clients from 1,841 to 1,467
        # requests/s on 2 CPUs, both batches waiting for the GIL (2026-12-05).
        self.run, self.max_batch, self.threads = run, max_batch, threads
        self.lock = threading.Lock()
        self.pending: collections.deque[BatchedRequest] = collections.deque()
        self.running = 0

    def submit(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = BatchedRequest(inputs, len(next(iter(inputs.values()))))
        with self.lock:
            self.pending.append(request)
        while True:
            with self.lock:
                if request.finished:
                    break
                batch = self._take() if self.running < self.threads else []
                if batch:
                    self.running += 1
                else:
                    request.wake.clear()  # set again, under the lock, when there is news
            if batch:
                self._run_batch(batch)
            else:
                request.wake.wait()
        if request.error:
            raise request.error
        assert request.outputs is not None  # finished without an error
        return request.outputs

    def _take(self) -> list[BatchedRequest]:
        batch: list[BatchedRequest] = []
        size = 0
        while self.pending and (not batch or size + self.pending[0].size <= self.max_batch):
            batch.append(self.pending.popleft())
            size += batch[-1].size
        return batch

    def _run_batch(self, batch: list[BatchedRequest]) -> None:
        try:
            if len(batch) == 1:  # alone: nothing to merge or split
                batch[0].outputs = self.run(batch[0].inputs)
            else:
                self._run_merged(batch)
        except Exception as e:
            for request in batch:
                request.error = e
        with self.lock:
            self.running -= 1
            for request in batch:
                request.finished = True
                request.wake.set()
            if self.pending:
                self.pending[0].wake.set()  # a slot is free: the oldest waiting runs next

    def _run_merged(self, batch: list[BatchedRequest]) -> None:
        merged = {k: np.concatenate([r.inputs[k] for r in batch]) for k in batch[0].inputs}
        outputs = self.run(merged)
        start = 0
        for request in batch:
            request.outputs = {k: v[start : start + request.size] for k, v in outputs.items()}
            start += request.size
