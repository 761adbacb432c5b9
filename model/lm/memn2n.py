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

from model.attention_settings import HopAttention, hop_attention_of
from model.hop_attention import HopTrace, MemoryHop, attention_outputs, split_heads
from model.memn2n import SentenceEncoder, TemporalEncoding
from model.serialization import ConfiguredModel
from model.settings import check_positive


@dataclasses.dataclass(frozen=True)
class MemN2NLMConfig(HopAttention):
    """The PTB defaults of the paper: d=150, 6 hops, memory 100 (and MTA's fields, off)."""

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
        self.check_attention(self.embedding_dim)


def relu_half(u, linear_units: int):
    """u [..., d]: the first `linear_units` units unchanged, a ReLU on the others."""
    return ops.concatenate([u[..., :linear_units], ops.relu(u[..., linear_units:])], axis=-1)


def window_band(over_span, memory_size: int):
    """over_span [G, L, S] -> [G, L, N]: row l's entries l .. l + N - 1, window l's words
    oldest first (a span, S = N + L - 1 words, holds the N words before a run's first target,
    then its first L - 1 targets). Pad and reshape only (Transformer-XL's relative shift), so
    that the gradient is a pad and a slice too, not a scatter."""
    _, run_length, span_size = over_span.shape
    flat = ops.pad(ops.reshape(over_span, (-1, run_length * span_size)), [[0, 0], [0, run_length]])
    return ops.reshape(flat, (-1, run_length, span_size + 1))[:, :, :memory_size]


def spread_band(over_band, span_size: int):
    """over_band [G, L, N] -> [G, L, S]: the inverse of `window_band`, 0 outside each window."""
    _, run_length, memory_size = over_band.shape
    padded = ops.pad(over_band, [[0, 0], [0, 0], [0, span_size + 1 - memory_size]])
    flat = ops.reshape(padded, (-1, run_length * (span_size + 1)))[:, : run_length * span_size]
    return ops.reshape(flat, (-1, run_length, span_size))


def swap_heads(x):
    """[G, A, B, *] -> [G, B, A, *] (heads and window positions); a reshape when one is 1."""
    if 1 in x.shape[1:3]:
        return ops.reshape(x, (ops.shape(x)[0], x.shape[2], x.shape[1], x.shape[3]))
    return ops.transpose(x, (0, 2, 1, 3))


def per_head(band, x, size: int):
    """`window_band` or `spread_band` of each head: x [G, H, L, *] -> [G, H, L, size]."""
    groups, heads, run_length, width = ops.shape(x)[0], x.shape[1], x.shape[2], x.shape[3]
    banded = band(ops.reshape(x, (-1, run_length, width)), size)
    return ops.reshape(banded, (groups, heads, run_length, size))


@keras.saving.register_keras_serializable(package="memn2n")
class MemN2NLM(ConfiguredModel):
    """{"context": [B, N] previous word ids} -> {"logits": [B, V], "attention": [B, K, N]}, or
    {"span": [G, N + L - 1]}, G runs of L consecutive targets -> [G, L, V] and [G, L, K, N].

    A run's L windows overlap in all but one word: its span is embedded once, and each hop
    scores every window against the whole span in one matmul and keeps the window's N slots,
    so no [B, N, d] memory exists (docs/decisions/lm-runs.md). A context is the span of a run
    of one window, so serving and training share this code.
    """

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
        attention = hop_attention_of(config)
        self.hops = [
            MemoryHop(attention=attention, dim=d, init_stddev=stddev, name=f"hop_{i + 1}")
            for i in range(config.hops)
        ]

    def build(self, input_shape) -> None:
        """The memory layers, in the order their first use made them (so a seed's initial
        weights stay those of earlier runs): `call` reads T_A and T_C as tables."""
        for layer in (self.a, self.t_a, self.c, self.t_c):
            layer.build(None)

    def call(self, inputs):
        if "context" in inputs:  # [B, N], slot 0 the previous word: the span of one window
            outputs = self.call({"span": ops.flip(inputs["context"], axis=-1)})
            return {name: ops.squeeze(value, axis=1) for name, value in outputs.items()}
        span = inputs["span"]  # [G, S], S = N + L - 1
        config = self.config
        n, d, heads = config.memory_size, config.embedding_dim, config.heads
        span_size = span.shape[-1]
        run_length = span_size - n + 1
        in_span = ops.cast(ops.not_equal(span, 0), "float32")  # [G, S]
        words, weights = ops.expand_dims(span, -1), (in_span[..., None, None], None)
        keys = split_heads(self.a(words, weights), heads)  # A x: [G, S, H, d / H]
        values = split_heads(self.c(words, weights), heads)  # C x
        # inside, slots are oldest first (window_band's order): T rows reversed, p flipped back
        in_use = window_band(ops.repeat(in_span[:, None, :], run_length, axis=1), n)  # [G, L, N]
        t_a = split_heads(ops.flip(self.t_a.table, axis=0), heads)  # [N, H, d / H]
        t_c = split_heads(ops.flip(self.t_c.table, axis=0), heads)
        u = ops.full((ops.shape(span)[0], run_length, d), config.query_value)  # [G, L, d]
        attention, trace = [], HopTrace()
        for hop in self.hops:
            query = split_heads(u, heads)  # [G, L, H, d / H]
            over_span = ops.einsum("glhd,gshd->ghls", query, keys)  # [G, H, L, S]
            scores = swap_heads(per_head(window_band, over_span, n))  # [G, L, H, N]
            scores = scores + ops.einsum("glhd,nhd->glhn", query, t_a)  # u (A x_i + T_A(i))
            p = hop.attend(scores, in_use, trace)  # [G, L, H, N]
            over_span = per_head(spread_band, swap_heads(p), span_size)
            o = ops.einsum("ghls,gshd->glhd", over_span, values)
            o = o + ops.einsum("glhn,nhd->glhd", p, t_c)  # sum_i p_i (C x_i + T_C(i))
            attention.append(ops.flip(p, axis=-1))  # slot 0 = the previous word
            u = relu_half(self.h(u) + hop.read_out(o), config.linear_units)
        return {"logits": self.w(u), **attention_outputs(attention)}

    def build_from_config(self, build_config: dict) -> None:
        self({"context": ops.zeros((1, self.config.memory_size), "int32")})
