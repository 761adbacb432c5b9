"""The serving contract that both experiments' SavedModels keep and every client relies on:
signature names, output keys, TF Serving's warm-up file, and PredictRequest builders.

Importing it imports nothing heavy, so that clients (`memn2n query --rest`) stay light: the
request builders import TF Serving's protos, which import TensorFlow, when called.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tensorflow_serving.apis import predict_pb2

TEXT_SIGNATURE = "serving_default"  # raw text in (bAbI: story, question; LM: prefix)
EXAMPLES_SIGNATURE = "serving_examples"  # serialized raw tf.Examples in, for TFMA
TRANSFORM_SIGNATURE = "transform_features"  # bAbI: Transform's output, where TFMA finds labels
LABEL_KEY, PREDICTIONS_KEY = "answer_id", "probabilities"  # bAbI, for TFMA's accuracy
NLL_KEY, WORDS_KEY = "nll", "words"  # language models, for TFMA's perplexity
ACCURACY = "sparse_categorical_accuracy"  # the TFMA metric a bAbI candidate is blessed on
PERPLEXITY = "perplexity"  # the TFMA metric a language model is blessed on (model.lm.metrics)
ATTENTION_KEYS = ("attention", "head_attention")  # MemN2N: per hop, and per hop and head
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")  # TF Serving's name


def text_request(
    model_name: str, inputs: dict[str, Sequence[str]], version: int | None = None
) -> predict_pb2.PredictRequest:
    """A PredictRequest for `serving_default` of [B] string inputs, e.g. {"prefix": [..]} for a
    language model, {"story": [..], "question": [..]} for bAbI."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = TEXT_SIGNATURE
    if version is not None:
        request.model_spec.version.value = version
    for name, values in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(list(values), dtype=tf.string))
    return request


def question_request(
    model_name: str,
    stories: Sequence[str],
    questions: Sequence[str],
    version: int | None = None,
) -> predict_pb2.PredictRequest:
    """A PredictRequest for a bAbI model: inputs `story` and `question`, [B]."""
    return text_request(model_name, {"story": stories, "question": questions}, version)


def write_warmup_requests(export_dir: str, request: predict_pb2.PredictRequest) -> None:
    """`request` in assets.extra/, which TF Serving (and `memn2n serve`) run before serving."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(export_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))  # also on gs:// and other remote file systems
    log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    )
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(log.SerializeToString())
