"""bAbI training settings, free of TensorFlow so that a pipeline config can check them: the
paper's MemN2N settings (section 4.2) and the LSTM baseline's."""

from __future__ import annotations

import dataclasses
from typing import Literal

from model.attention_settings import HopAttention
from model.settings import (
    MODELS,
    TEMPORAL_GRIDS,
    Encoding,
    ModelKind,
    TemporalGrid,
    WeightTying,
    check_choice,
    check_positive,
    override,
)

Mode = Literal["single", "joint"]  # one model per task, or one model for all tasks
MODES: tuple[Mode, ...] = ("single", "joint")
DEFAULT_MEMORY_SIZE, DEFAULT_SENTENCE_SIZE = 50, 12  # N sentences, J words (Transform's shapes)


@dataclasses.dataclass(frozen=True)
class BabiTrainConfig(HopAttention):
    """The paper's bAbI settings (section 4.2); `defaults(mode)` gives single or joint. The
    hops' Multi-Token Attention fields (HopAttention) are off by default."""

    embedding_dim: int = 20  # d: 20 single-task, 50 joint
    hops: int = 3
    memory_size: int = DEFAULT_MEMORY_SIZE  # at most the most recent 50 sentences
    # ... and no more than the longest training story has, as the paper's code sizes it
    # (min(50, longest story)): docs/decisions/memory-most-recent-50.md
    fit_memory_to_data: bool = True
    encoding: Encoding = "position"  # PE
    position_scale: float = 2.0  # docs/decisions/position-encoding-scale.md
    empty_in_denominator: bool = True  # docs/decisions/empty-slots-in-denominator.md
    temporal: bool = True
    temporal_grid: TemporalGrid = "slot"  # docs/decisions/log-temporal-grid.md
    random_noise: float = 0.1  # RN
    weight_tying: WeightTying = "adjacent"
    init_stddev: float = 0.1
    epochs: int = 100  # after linear start: 100 single-task, 60 joint
    learning_rate: float = 0.01
    halve_every: int = 25  # 25 single-task, 15 joint
    batch_size: int = 32
    clipnorm: float = 40.0  # global gradient-norm clipping
    linear_start: bool = True  # LS
    linear_start_learning_rate: float = 0.005
    linear_start_max_epochs: int = 20  # 20 single-task, 30 joint (the paper's code)
    # LS also ends after this many epochs without a new best validation loss; the default (the
    # cap) runs LS for the cap, as the paper's code does: docs/decisions/linear-start-length.md
    linear_start_patience: int = 20
    steps_per_execution: int = 1  # training steps per compiled call; speed only
    jit_compile: bool = True  # XLA; speed only

    def memory_for(self, longest_story: int) -> int:
        """The memory MemN2N uses for data whose longest story has `longest_story` sentences."""
        return min(self.memory_size, longest_story) if self.fit_memory_to_data else self.memory_size

    def __post_init__(self) -> None:
        check_positive(
            self,
            (
                "embedding_dim",
                "hops",
                "memory_size",
                "epochs",
                "halve_every",
                "batch_size",
                "steps_per_execution",
            ),
        )
        if self.learning_rate <= 0 or self.linear_start_learning_rate <= 0:
            raise ValueError("learning rates must be positive")
        check_choice("temporal_grid", self.temporal_grid, TEMPORAL_GRIDS)
        self.check_attention(self.embedding_dim)


@dataclasses.dataclass(frozen=True)
class LSTMConfig:
    """The baseline's model and training settings (Adam; no paper schedule to follow)."""

    vocab_size: int = 0  # set from the data
    max_tokens: int = 0  # T: the sequence keeps the T most recent tokens; set from the data
    memory_size: int = 50  # the story's most recent sentences it sees, as MemN2N
    embedding_dim: int = 50
    units: int = 100
    epochs: int = 30
    learning_rate: float = 0.001
    batch_size: int = 32
    clipnorm: float = 40.0
    jit_compile: bool = True

    def __post_init__(self) -> None:
        check_positive(self, ("embedding_dim", "units", "epochs", "batch_size"))


def defaults(mode: Mode) -> BabiTrainConfig:
    """Single-task: d=20, 100 epochs halved every 25; joint: d=50, 60 epochs halved every 15."""
    check_choice("mode", mode, MODES)
    if mode == "single":
        return BabiTrainConfig()
    return BabiTrainConfig(
        embedding_dim=50,
        epochs=60,
        halve_every=15,
        linear_start_max_epochs=30,
        linear_start_patience=30,
    )


def model_defaults(model: ModelKind, mode: Mode) -> BabiTrainConfig | LSTMConfig:
    """MemN2N's paper defaults for `mode`, or the LSTM baseline's."""
    check_choice("model", model, MODELS)
    return defaults(mode) if model == "memn2n" else LSTMConfig()


def trainer_settings(
    custom_config: dict, vocab_size: int = 0, max_tokens: int = 0, source: str = "settings"
) -> BabiTrainConfig | LSTMConfig:
    """The typed settings of the Trainer's `custom_config` (model, mode, settings, memory_size),
    its overrides named `source` in errors; the LSTM sized by `vocab_size` and `max_tokens`."""
    model = custom_config.get("model", "memn2n")
    config = model_defaults(model, custom_config.get("mode", "joint"))
    if isinstance(config, LSTMConfig):
        config = dataclasses.replace(config, vocab_size=vocab_size, max_tokens=max_tokens)
    changes = {**custom_config.get("settings", {}), "memory_size": custom_config["memory_size"]}
    return override(config, changes, source)
