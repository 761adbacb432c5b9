"""The LSTM baseline of the bAbI paper: story and question read as one token sequence.

It takes the same inputs as MemN2N ({"story": [B, N, J], "query": [B, J]}), so one input
pipeline feeds both, and answers with logits over the same vocabulary.
"""

from __future__ import annotations

import keras
from keras import ops

from model.babi.settings import LSTMConfig
from model.serialization import ConfiguredModel


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
class LSTMBaseline(ConfiguredModel):
    """{"story", "query"} -> {"answer_logits": [B, V]} through one LSTM over the token sequence."""

    config_class = LSTMConfig

    def __init__(self, config: LSTMConfig, seed: int | None = None, **kwargs):
        super().__init__(config, seed, **kwargs)
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
