"""TFX Trainer entry point: `run_fn` trains MemN2N or the LSTM baseline on Transform's output.

`custom_config` (from the pipeline config): `model` ("memn2n" or "lstm"), `mode` ("joint" or
"single": the paper defaults), `settings` (overrides of BabiTrainConfig / LSTMConfig fields),
`memory_size`, `sentence_size`, `seed`, `mixed_precision`. Every visible GPU is used
(MirroredStrategy); TF_CONFIG selects multi-worker training.
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from model.babi_inputs import BabiArrays, read_transformed
from model.export import answer_mask, export_serving_model, read_vocabularies
from model.lstm import LSTMConfig
from model.training import (
    TrainResult,
    override,
    paper_defaults,
    predict_answers,
    task_errors,
    train_lstm,
    train_memn2n,
)

MODELS = ("memn2n", "lstm")


def training_settings(
    custom_config: dict, vocab_size: int, max_tokens: int, source: str = "custom_config settings"
):
    """The typed settings for `custom_config["model"]`, with its overrides (named `source` in
    errors) applied."""
    model = custom_config.get("model", "memn2n")
    if model not in MODELS:
        raise ValueError(f"custom_config model {model!r} is not one of {MODELS}")
    if model == "memn2n":
        defaults = paper_defaults(custom_config.get("mode", "joint"))
    else:
        defaults = LSTMConfig(vocab_size=vocab_size, max_tokens=max_tokens)
    changes = {**custom_config.get("settings", {}), "memory_size": custom_config["memory_size"]}
    return override(defaults, changes, source)


def distribution_strategy() -> tf.distribute.Strategy:
    """Multi-worker if TF_CONFIG names a cluster, all GPUs when there are several, else default."""
    if json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def run_fn(fn_args) -> None:
    """Train on the train split (the eval split drives LS), then export the serving model."""
    config = fn_args.custom_config
    model = config.get("model", "memn2n")
    n, j = config["memory_size"], config["sentence_size"]
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    vocabulary, answer_words = read_vocabularies(tft_output)
    spec = tft_output.transformed_feature_spec()
    train = read_transformed(fn_args.train_files, spec, n, j)
    val = read_transformed(fn_args.eval_files, spec, n, j)
    max_tokens = int((train.story != 0).sum(axis=(1, 2)).max() + (train.query != 0).sum(1).max())
    settings = training_settings(config, len(vocabulary), max_tokens)
    if config.get("mixed_precision"):
        keras.mixed_precision.set_global_policy("mixed_float16")
    log_dir = os.path.join(fn_args.model_run_dir, "logs")
    tensorboard = keras.callbacks.TensorBoard(log_dir=log_dir)
    seed = config.get("seed", 1)

    def report(record: dict) -> None:
        print(f"[{model}] {json.dumps(record)}", flush=True)

    with distribution_strategy().scope():
        if model == "memn2n":
            vocab_size = len(vocabulary)
            result = train_memn2n(train, val, vocab_size, settings, seed, report, [tensorboard])
        else:
            result = train_lstm(train, val, settings, seed, report, [tensorboard])
    export_serving_model(result.model, tft_output, n, j, fn_args.serving_model_dir)
    write_training_record(fn_args.model_run_dir, result, settings, val, vocabulary, answer_words)


def write_training_record(
    run_dir: str,
    result: TrainResult,
    settings,
    val: BabiArrays,
    vocabulary: list[str],
    answer_words: list[str],
) -> None:
    """`training.json` in the run folder: settings, history, and the eval split's answers and
    errors per task (restricted to answer words, as the served model is)."""
    logits = predict_answers(result.model, val)
    answers = np.argmax(np.where(answer_mask(vocabulary, answer_words), logits, -np.inf), axis=-1)
    record = {
        "settings": dataclasses.asdict(settings),
        "history": result.history,
        "train_seconds": round(result.train_seconds, 1),
        "train_examples_per_sec": round(result.examples_per_sec, 1),
        "val_error": round(result.val_error, 2),
        "val_error_per_task": task_errors(answers, val),
        "val_answers": [vocabulary[i] for i in answers],
    }
    tf.io.gfile.makedirs(run_dir)
    with tf.io.gfile.GFile(os.path.join(run_dir, "training.json"), "w") as f:
        json.dump(record, f, indent=1)
