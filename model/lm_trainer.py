"""TFX Trainer entry point for language modelling: `run_fn` trains the MemN2N LM or the LSTM LM
on Transform's word ids, then exports it with both signatures of model.lm_export.

`custom_config` (from the pipeline config): `model` ("memn2n" or "lstm"), `corpus` ("ptb" or
"text8": the defaults of model.lm_benchmark.lm_defaults), `settings` (overrides of
LMTrainConfig fields) and `seed`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from model.lm_benchmark import lm_defaults
from model.lm_export import export_lm
from model.lm_inputs import blocks_in_order, stream_start_id
from model.lm_preprocessing import WORDS_VOCABULARY
from model.lm_training import LMTrainConfig, train_lm
from model.trainer import distribution_strategy
from model.training import override


def lm_training_settings(custom_config: dict, source: str = "custom_config settings"):
    """The LMTrainConfig for `custom_config`'s model and corpus, with its overrides applied."""
    defaults = lm_defaults(custom_config["corpus"], custom_config.get("model", "memn2n"))
    return override(defaults, custom_config.get("settings", {}), source)


def read_stream(file_patterns: Sequence[str], words: list[str]) -> np.ndarray:
    """A split's word ids in corpus order after one `<eos>`, as model.lm_inputs.token_stream."""
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no transformed examples match {list(file_patterns)}")
    start = stream_start_id(words)
    return np.array([start, *blocks_in_order(files, "token_ids", tf.int64)], dtype="int32")


def run_fn(fn_args) -> None:
    """Train on the train split (the eval split drives the rate annealing), then export."""
    settings: LMTrainConfig = lm_training_settings(fn_args.custom_config)
    words = [
        w.decode()
        for w in tft.TFTransformOutput(fn_args.transform_output).vocabulary_by_name(
            WORDS_VOCABULARY
        )
    ]
    train = read_stream(fn_args.train_files, words)
    valid = read_stream(fn_args.eval_files, words)
    tensorboard = keras.callbacks.TensorBoard(log_dir=os.path.join(fn_args.model_run_dir, "logs"))

    def report(record: dict) -> None:
        print(f"[{settings.model} LM] {json.dumps(record)}", flush=True)

    with distribution_strategy().scope():
        seed = fn_args.custom_config.get("seed", 1)
        result = train_lm(train, valid, len(words), settings, seed, report, [tensorboard])
    export_lm(result.model, words, settings.model, settings.window(), fn_args.serving_model_dir)
    record = {
        "settings": dataclasses.asdict(settings),
        "history": result.history,
        "train_seconds": round(result.train_seconds, 1),
        "tokens_per_sec": round(result.tokens_per_sec, 1),
        "valid_perplexity": round(result.valid_perplexity, 3),
    }
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, "training.json"), "w") as f:
        json.dump(record, f, indent=1)
