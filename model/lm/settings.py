"""Language-model training settings, free of TensorFlow so that a pipeline config can check them:
the paper's PTB settings (section 5) for MemN2N, Zaremba et al.'s small LSTM for the baseline."""

from __future__ import annotations

import dataclasses
from typing import Literal

from model.attention_settings import HopAttention
from model.settings import (
    MODELS,
    REDUCTIONS,
    ModelKind,
    Reduction,
    check_choice,
    check_positive,
    override,
)

Corpus = Literal["ptb", "text8"]
PAPER = {  # the paper's PTB figures: MemN2N's best row (7 hops, memory 200) and its LSTM
    "ptb": {"memn2n_test": 111, "memn2n_valid": 118, "lstm_test": 115},
    "text8": None,  # not checked against the paper here
}


@dataclasses.dataclass(frozen=True)
class LMTrainConfig(HopAttention):
    """Paper defaults for PTB (section 5). `model` picks MemN2N or the LSTM baseline; the LSTM
    reads `sequence_length` words per window and uses `lstm_*` sizes. MemN2N's hops take the
    Multi-Token Attention fields of HopAttention (off by default)."""

    model: ModelKind = "memn2n"
    embedding_dim: int = 150  # d
    hops: int = 6
    memory_size: int = 100
    linear_units: int = 75  # half of d
    init_stddev: float = 0.05
    epochs: int = 100  # at most; training also ends when the rate falls below min_learning_rate
    learning_rate: float = 0.01
    anneal_factor: float = 1.5
    min_learning_rate: float = 1e-5
    batch_size: int = 128
    # MemN2N trains on runs of this many consecutive targets, batch_size / run_length runs a
    # batch, whose windows share one embedded span (docs/decisions/lm-runs.md)
    run_length: int = 4
    clipnorm: float = 50.0  # global gradient norm, of the loss as `loss_reduction` says
    loss_reduction: Reduction = "sum"  # over the batch, as the paper's code; "mean": per target
    min_count: int = 1  # words seen fewer times in training become <unk> (Text8: 5)
    lstm_units: int = 200
    lstm_embedding_dim: int = 200
    sequence_length: int = 35
    # MemN2N's step runs faster in TF's graph executor (oneDNN matmuls, SparseSGD) than in XLA
    jit_compile: bool = False
    steps_per_execution: int = 8  # training steps per call into the step function; speed only

    def __post_init__(self) -> None:
        check_choice("model", self.model, MODELS)
        check_positive(
            self,
            (
                "epochs",
                "batch_size",
                "run_length",
                "sequence_length",
                "min_count",
                "steps_per_execution",
            ),
        )
        if self.model == "memn2n" and self.batch_size % self.run_length:
            raise ValueError(
                f"batch_size {self.batch_size} must be a multiple of run_length {self.run_length}"
            )
        check_choice("loss_reduction", self.loss_reduction, REDUCTIONS)
        if self.anneal_factor <= 1 or self.learning_rate <= 0:
            raise ValueError("anneal_factor must be above 1 and learning_rate positive")
        self.check_attention(self.embedding_dim)

    def window(self) -> int:
        """Words a served model reads: MemN2N's memory, or the LSTM's warm-up and sequence."""
        return self.memory_size if self.model == "memn2n" else 2 * self.sequence_length


def defaults(corpus: Corpus, model: ModelKind = "memn2n") -> LMTrainConfig:
    """MemN2N: the paper's settings. The LSTM: the small PTB LSTM of Zaremba et al. (2014), SGD
    at 1.0 with clipping at 5 on the loss summed over a window's 35 words and averaged over 20
    windows; here the same step as 1/20 of that rate and 20 times that clip on the summed loss
    (docs/decisions/lstm-lm-step.md), compiled with XLA. Text8: words seen fewer than 5 times
    become <unk>."""
    batch = 20
    config = LMTrainConfig(model=model, min_count=5 if corpus == "text8" else 1)
    if model == "memn2n":
        return config
    return dataclasses.replace(
        config,
        learning_rate=1.0 / batch,
        clipnorm=5.0 * batch,
        batch_size=batch,
        jit_compile=True,
    )


def trainer_settings(custom_config: dict, source: str = "settings") -> LMTrainConfig:
    """The LMTrainConfig of the Trainer's `custom_config` (model, corpus, settings), with its
    overrides named `source` in errors."""
    config = defaults(custom_config["corpus"], custom_config.get("model", "memn2n"))
    return override(config, custom_config.get("settings", {}), source)
