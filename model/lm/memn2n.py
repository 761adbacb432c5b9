"""The paper's language model (section 5): a memory of the previous N words, no recurrence.

Each memory is one word (A x_i + T_A(i), C x_i + T_C(i)); the query is the constant vector 0.1;
one A and one C serve every hop, with u(k+1) = H u(k) + o(k) and a ReLU on the second half of
u's units; W (no bias, as in the paper's code) maps the last u to next-word logits. Shapes:
B batch, N memory slots (slot 0 = the previous word), d embedding size, K hops, V vocabulary
(id 0 is an empty slot).
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from model.memn2n import MemoryHop, SentenceEncoder, TemporalEncoding
from model.serialization import ConfiguredModel
from model.settings import check_positive


@dataclasses.dataclass(frozen=True)
class MemN2NLMConfig:
    """The PTB defaults of the paper: d=150, 6 hops, memory 100."""

    vocab_size: int
    memory_size: int = 100  # N previous words
    embedding_dim: int = 150  # d
    hops: int = 6  # K
    linear_units: int = 75  # u's first units stay linear; a ReLU acts on the rest
    query_value: float = 0.1
    init_stddev: float = 0.05

    def __post_init__(self) -> None:
        check_positive(self, ("vocab_size", "memory_size", "embedding_dim", "hops"))
        if not 0 <= self.linear_units <= self.embedding_dim:
            raise ValueError(f"linear_units {self.linear_units} must be in [0, embedding_dim]")


def relu_half(u, linear_units: int):
    """u [B, d]: the first `linear_units` units unchanged, a ReLU on the others."""
    return ops.concatenate([u[:, :linear_units], ops.relu(u[:, linear_units:])], axis=-1)


@keras.saving.register_keras_serializable(package="memn2n")
class MemN2NLM(ConfiguredModel):
    """{"context": [B, N] previous word ids} -> {"logits": [B, V], "attention": [B, K, N]}"""

    config_class = MemN2NLMConfig

    def __init__(self, config: MemN2NLMConfig, seed: int | None = None, **kwargs):
        super().__init__(config, seed, **kwargs)
        v, n, d, stddev = (
            config.vocab_size,
            config.memory_size,
            config.embedding_dim,
            config.init_stddev,
        )
        normal = keras.initializers.RandomNormal(stddev=stddev)
        self.a = SentenceEncoder(v, d, stddev, name="embedding_a")
        self.c = SentenceEncoder(v, d, stddev, name="embedding_c")
        self.t_a = TemporalEncoding(n, d, stddev, name="temporal_a")
        self.t_c = TemporalEncoding(n, d, stddev, name="temporal_c")
        self.h = keras.layers.Dense(d, use_bias=False, kernel_initializer=normal, name="H")
        self.w = keras.layers.Dense(v, use_bias=False, kernel_initializer=normal, name="W")
        self.hops = [MemoryHop(name=f"hop_{i + 1}") for i in range(config.hops)]

    def call(self, inputs):
        context = inputs["context"]  # [B, N]
        words = ops.expand_dims(context, -1)  # [B, N, 1]: each memory is a one-word sentence
        in_use = ops.cast(ops.not_equal(context, 0), "float32")  # [B, N]
        weights = (ops.expand_dims(ops.expand_dims(in_use, -1), -1), None)  # [B, N, 1, 1]
        m_in = self.t_a(self.a(words, weights))  # [B, N, d]
        m_out = self.t_c(self.c(words, weights))  # [B, N, d]
        d = self.config.embedding_dim
        u = ops.full((ops.shape(context)[0], d), self.config.query_value)  # [B, d]
        attention = []
        for hop in self.hops:
            o, p = hop(u, m_in, m_out, in_use)
            attention.append(p)
            u = relu_half(self.h(u) + o, self.config.linear_units)
        return {"logits": self.w(u), "attention": ops.stack(attention, axis=1)}

    def build_from_config(self, build_config: dict) -> None:
        self({"context": ops.zeros((1, self.config.memory_size), "int32")})
