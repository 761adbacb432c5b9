"""TFX Trainer entry point for bAbI: `run_fn` trains MemN2N or the LSTM baseline on Transform's
output and exports the model behind Transform's graph (model.babi.export).

`custom_config` (from the pipeline config): `model`, `mode` ("joint" or "single": the paper
defaults), `settings` (overrides of BabiTrainConfig / LSTMConfig fields), `memory_size`,
`sentence_size`, `seed`, `mixed_precision`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from model.babi.export import answer_mask, export_serving_model, read_vocabularies
from model.babi.inputs import read_transformed
from model.babi.settings import BabiTrainConfig, LSTMConfig, trainer_settings
from model.babi.training import predict_answers, task_errors, train_model
from model.checkpoint import Checkpoints
from model.engine import Report, TrainResult
from model.trainer_base import ExperimentTrainer, run


class BabiTrainer(ExperimentTrainer):
    """Questions as [N, J] story and [J] query ids; answers restricted to training answers."""

    def __init__(self, fn_args: FnArgs):
        super().__init__(fn_args)
        self.memory_size = n = self.custom_config["memory_size"]
        self.sentence_size = j = self.custom_config["sentence_size"]
        self.tft_output = tft.TFTransformOutput(fn_args.transform_output)
        self.vocabulary, self.answer_words = read_vocabularies(self.tft_output)
        spec = self.tft_output.transformed_feature_spec()
        self.train_data = read_transformed(fn_args.train_files, spec, n, j)
        self.val = read_transformed(fn_args.eval_files, spec, n, j)

    def settings(self) -> BabiTrainConfig | LSTMConfig:
        story, query = self.train_data.story, self.train_data.query
        max_tokens = int((story != 0).sum(axis=(1, 2)).max() + (query != 0).sum(1).max())
        settings = trainer_settings(self.custom_config, len(self.vocabulary), max_tokens)
        if isinstance(settings, BabiTrainConfig):
            longest = int(story.any(axis=2).sum(axis=1).max())  # slots holding a sentence
            settings = dataclasses.replace(settings, memory_size=settings.memory_for(longest))
        return settings

    def train(
        self,
        settings,
        seeds: Sequence[int],
        report: Report,
        callbacks: list,
        checkpoints: Checkpoints | None,
    ) -> list:
        vocab_size = len(self.vocabulary)
        train_data, val = self.train_data, self.val
        if isinstance(settings, BabiTrainConfig):  # Transform's memory, cut to what MemN2N uses
            train_data, val = (
                train_data.recent(settings.memory_size),
                val.recent(settings.memory_size),
            )
        return train_model(
            train_data, val, vocab_size, settings, seeds, report, callbacks, checkpoints
        )

    def validation_rank(self, result: TrainResult) -> tuple[float, ...]:
        return (result.validation["error"], result.validation["loss"])

    def export(self, result: TrainResult, settings, export_dir: str) -> None:
        export_serving_model(
            result.model, self.tft_output, self.memory_size, self.sentence_size, export_dir
        )

    def record(self, result: TrainResult) -> dict:
        """The eval split's answers and errors per task, restricted to answer words as the
        served model is."""
        val = self.val.recent(result.model.config.memory_size)
        logits = predict_answers(result.model, val)
        allowed = answer_mask(self.vocabulary, self.answer_words)
        answers = np.argmax(np.where(allowed, logits, -np.inf), axis=-1)
        return {
            "val_error": round(result.validation["error"], 2),
            "val_error_per_task": task_errors(answers, val),
            "val_answers": [self.vocabulary[i] for i in answers],
        }


def run_fn(fn_args: FnArgs) -> None:
    """Train on the train split (the eval split drives LS), then export the serving model."""
    run(BabiTrainer, fn_args)
