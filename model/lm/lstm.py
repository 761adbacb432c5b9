"""The LSTM language-model baseline: embedding -> LSTM -> next-word logits at every position."""

from __future__ import annotations

import dataclasses

import keras

from model.serialization import ConfiguredModel
from model.settings import check_positive


@dataclasses.dataclass(frozen=True)
class LSTMLMConfig:
    """One LSTM layer read over windows of `sequence_length` words (no state between windows)."""

    vocab_size: int
    embedding_dim: int = 200
    units: int = 200
    init_stddev: float = 0.05

    def __post_init__(self) -> None:
        check_positive(self, ("vocab_size", "embedding_dim", "units"))


@keras.saving.register_keras_serializable(package="memn2n")
class LSTMLM(ConfiguredModel):
    """{"tokens": [B, T] word ids} -> {"logits": [B, T, V]}: logits[:, t] predicts word t+1."""

    config_class = LSTMLMConfig

    def __init__(self, config: LSTMLMConfig, seed: int | None = None, **kwargs):
        super().__init__(config, seed, **kwargs)
        normal = keras.initializers.RandomNormal(stddev=config.init_stddev)
        self.embedding = keras.layers.Embedding(
            config.vocab_size, config.embedding_dim, embeddings_initializer=normal, name="embedding"
        )
        self.lstm = keras.layers.LSTM(config.units, return_sequences=True, name="lstm")
        self.w = keras.layers.Dense(config.vocab_size, kernel_initializer=normal, name="W")

    def call(self, inputs):
        return {"logits": self.w(self.lstm(self.embedding(inputs["tokens"])))}  # [B, T, V]
