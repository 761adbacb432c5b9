"""The LSTM baseline of the bAbI paper: story and question read as one token sequence.

It takes the same inputs as MemN2N ({"story": [B, N, J], "query": [B, J]}), so one input
pipeline feeds both, and answers with logits over the same vocabulary.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops


@dataclasses.dataclass(frozen=True)
class LSTMConfig:
    """Model and training settings of the baseline (Adam; no paper schedule to follow)."""

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
        for name in ("embedding_dim", "units", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


def story_then_question(story, query):
    """Chronological story words then the question words, padding moved to the front.

    story [B, N, J] (slot 0 = most recent), query [B, J]; returns [B, (N + 1) J].
    """
    batch = ops.shape(story)[0]
    chronological = ops.flip(story, axis=1)  # oldest sentence first
    tokens = ops.concatenate([ops.reshape(chronological, (batch, -1)), query], axis=1)
    position = ops.arange(ops.shape(tokens)[1], dtype="int32")
    # Sort key: padding keeps its position, words move past every padding slot, order kept.
    key = ops.where(tokens != 0, position + ops.shape(tokens)[1], position)
    return ops.take_along_axis(tokens, ops.argsort(key, axis=1), axis=1)


@keras.saving.register_keras_serializable(package="memn2n")
class LSTMBaseline(keras.Model):
    """{"story", "query"} -> {"answer_logits": [B, V]} through one LSTM over the token sequence."""

    def __init__(self, config: LSTMConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.embedding = keras.layers.Embedding(
            config.vocab_size, config.embedding_dim, mask_zero=True, name="embedding"
        )
        self.lstm = keras.layers.LSTM(config.units, name="lstm")
        self.answer = keras.layers.Dense(config.vocab_size, name="answer")

    def call(self, inputs, training: bool = False):
        tokens = story_then_question(inputs["story"], inputs["query"])
        tokens = tokens[:, -self.config.max_tokens :]  # [B, T], words right-aligned
        state = self.lstm(self.embedding(tokens), training=training)  # [B, units]
        return {"answer_logits": self.answer(state)}

    @property
    def input_dtype(self) -> str:
        """Inputs are word ids (this also types the SavedModel's default signature)."""
        return "int32"

    def get_config(self) -> dict:
        return {"config": dataclasses.asdict(self.config), "name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> LSTMBaseline:
        return cls(LSTMConfig(**config["config"]), name=config["name"])


def compile_lstm(model: LSTMBaseline) -> None:
    """Adam with the same global gradient-norm clipping as MemN2N."""
    config = model.config
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate, global_clipnorm=config.clipnorm),
        loss={"answer_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
        jit_compile=config.jit_compile,
    )
