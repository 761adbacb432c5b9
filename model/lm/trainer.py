"""TFX Trainer entry point for language modelling: `run_fn` trains the MemN2N LM or the LSTM LM
on Transform's word ids, then exports it with both signatures of model.lm.export.

`custom_config` (from the pipeline config): `model`, `corpus` ("ptb" or "text8": the defaults of
model.lm.settings), `settings` (overrides of LMTrainConfig fields) and `seed`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from model.checkpoint import Checkpoints
from model.engine import Report, TrainResult
from model.lm.export import export_lm
from model.lm.inputs import blocks_in_order, stream_start_id
from model.lm.preprocessing import WORDS_VOCABULARY
from model.lm.settings import LMTrainConfig, trainer_settings
from model.lm.training import train_lm
from model.trainer_base import ExperimentTrainer, run


def read_stream(file_patterns: Sequence[str], words: list[str]) -> np.ndarray:
    """A split's word ids in corpus order after one `<eos>`, as model.lm.inputs.token_stream."""
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no transformed examples match {list(file_patterns)}")
    start = stream_start_id(words)
    return np.array([start, *blocks_in_order(files, "token_ids", tf.int64)], dtype="int32")


class LMTrainer(ExperimentTrainer):
    """A split as one stream of word ids, in corpus order."""

    def __init__(self, fn_args: FnArgs):
        super().__init__(fn_args)
        vocabulary = tft.TFTransformOutput(fn_args.transform_output).vocabulary_by_name(
            WORDS_VOCABULARY
        )
        self.words = [w.decode() for w in vocabulary]
        self.train_stream = read_stream(fn_args.train_files, self.words)
        self.valid_stream = read_stream(fn_args.eval_files, self.words)

    def settings(self) -> LMTrainConfig:
        return trainer_settings(self.custom_config)

    def train(
        self,
        settings,
        seeds: Sequence[int],
        report: Report,
        callbacks: list,
        checkpoints: Checkpoints | None,
    ) -> list:
        vocab_size = len(self.words)
        streams = self.train_stream, self.valid_stream
        return [
            train_lm(*streams, vocab_size, settings, s, report, callbacks, checkpoints)
            for s in seeds
        ]

    def validation_rank(self, result: TrainResult) -> tuple[float, ...]:
        return (result.validation["perplexity"],)

    def export(self, result: TrainResult, settings, export_dir: str) -> None:
        export_lm(result.model, self.words, settings.model, settings.window(), export_dir)

    def record(self, result: TrainResult) -> dict:
        return {"valid_perplexity": round(result.validation["perplexity"], 3)}


def run_fn(fn_args: FnArgs) -> None:
    """Train on the train split (the eval split drives the rate annealing), then export."""
    run(LMTrainer, fn_args)
