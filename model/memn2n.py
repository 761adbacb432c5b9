"""End-To-End Memory Network (Sukhbaatar, Szlam, Weston, Fergus, 2015) as small Keras 3 layers.

`keras.ops` only, so the same code runs on the TensorFlow and the JAX backends. Shapes:
B batch, N memory slots (slot 0 = most recent sentence), J words per sentence, d embedding
size, K hops, V vocabulary (id 0 is padding and never contributes).
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from model.serialization import ConfiguredModel
from model.settings import ENCODINGS, WEIGHT_TYINGS, Encoding, WeightTying, check_choice


@dataclasses.dataclass(frozen=True)
class MemN2NConfig:
    """Every variant of the paper, chosen by these fields."""

    vocab_size: int
    sentence_size: int  # J
    memory_size: int = 50  # N: the most recent N sentences
    embedding_dim: int = 20  # d
    hops: int = 3  # K
    encoding: Encoding = "position"  # "bow" or "position" (PE)
    # PE weights are l_kj times this, about the paper's released code:
    # docs/decisions/position-encoding-scale.md
    position_scale: float = 2.0
    # Empty slots count in each hop's softmax denominator (as the paper's code); see MemoryHop
    # and docs/decisions/empty-slots-in-denominator.md
    empty_in_denominator: bool = True
    temporal: bool = True  # learned T_A, T_C per memory slot
    random_noise: float = 0.1  # RN: fraction of empty memories inserted in training; 0 = off
    weight_tying: WeightTying = "adjacent"
    init_stddev: float = 0.1

    def __post_init__(self) -> None:
        check_choice("encoding", self.encoding, ENCODINGS)
        check_choice("weight_tying", self.weight_tying, WEIGHT_TYINGS)
        if not 0 <= self.random_noise < 1:
            raise ValueError(f"random_noise {self.random_noise} must be in [0, 1)")


def position_encoding(lengths, sentence_size: int, dim: int):
    """l_kj = (1 - j/J) - (k/d)(1 - 2j/J) with J each sentence's own length; 0 past its end.

    lengths: [...] word counts; returns [..., sentence_size, dim].
    """
    length = ops.expand_dims(ops.expand_dims(ops.cast(lengths, "float32"), -1), -1)  # [..., 1, 1]
    length = ops.maximum(length, 1.0)
    j = ops.reshape(ops.arange(1, sentence_size + 1, dtype="float32"), (sentence_size, 1))
    k = ops.reshape(ops.arange(1, dim + 1, dtype="float32"), (1, dim))
    weights = (1.0 - j / length) - (k / dim) * (1.0 - 2.0 * j / length)  # [..., J, d]
    return ops.where(j <= length, weights, 0.0)


def word_weights(word_ids, encoding: str, dim: int, position_scale: float = 1.0):
    """Each word's weight in its sentence's sum: scaled l_kj for PE, 1 for bag of words, 0 for
    padding.

    word_ids: [..., J] int; returns [..., J, d] (PE) or [..., J, 1] (bag of words).
    """
    present = ops.cast(ops.not_equal(word_ids, 0), "float32")  # [..., J]
    if encoding == "bow":
        return ops.expand_dims(present, -1)
    lengths = ops.sum(present, axis=-1)
    return position_scale * position_encoding(lengths, word_ids.shape[-1], dim)


class SentenceEncoder(keras.layers.Layer):
    """One embedding matrix: each sentence becomes the weighted sum of its words' embeddings."""

    def __init__(self, vocab_size: int, dim: int, init_stddev: float, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.dim, self.init_stddev = vocab_size, dim, init_stddev

    def build(self, input_shape) -> None:
        self.embeddings = self.add_weight(
            shape=(self.vocab_size, self.dim),
            initializer=keras.initializers.RandomNormal(stddev=self.init_stddev),
            name="embeddings",
        )

    def call(self, word_ids, weights):
        """word_ids [..., J] int, weights from `word_weights`; returns [..., d]."""
        return ops.sum(ops.take(self.embeddings, word_ids, axis=0) * weights, axis=-2)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "dim": self.dim,
            "init_stddev": self.init_stddev,
        }


class TemporalEncoding(keras.layers.Layer):
    """A learned vector per memory slot (T_A or T_C), added to the encoded memories."""

    def __init__(self, memory_size: int, dim: int, init_stddev: float, **kwargs):
        super().__init__(**kwargs)
        self.memory_size, self.dim, self.init_stddev = memory_size, dim, init_stddev

    def build(self, input_shape) -> None:
        self.table = self.add_weight(
            shape=(self.memory_size, self.dim),
            initializer=keras.initializers.RandomNormal(stddev=self.init_stddev),
            name="table",
        )

    def call(self, memories):
        """memories: [B, N, d]; returns [B, N, d]."""
        return memories + self.table

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "memory_size": self.memory_size,
            "dim": self.dim,
            "init_stddev": self.init_stddev,
        }


class RandomEmptyMemories(keras.layers.Layer):
    """RN: in training only, inserts empty memories among the story's sentences.

    Each slot becomes empty with probability `rate`; the sentences move to older slots (so
    their temporal vectors change) and the oldest fall off. The empties hold no words and get
    no attention, so the noise is in the time index, as in the paper's code.
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.seed = rate, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, story, training: bool = False):
        """story: [B, N, J] int; returns the story with empties inserted, [B, N, J]."""
        if not training or self.rate == 0:
            return story
        has_words = ops.any(ops.not_equal(story, 0), axis=-1)  # [B, N]
        noise = keras.random.uniform(ops.shape(has_words), seed=self.seed_generator) < self.rate
        noise = ops.logical_and(noise, has_words)  # insert only among the story's sentences
        inserted = ops.cumsum(ops.cast(noise, "int32"), axis=1)  # empties up to each slot [B, N]
        source = ops.arange(ops.shape(story)[1], dtype="int32") - inserted  # [B, N]
        moved = ops.take_along_axis(story, ops.expand_dims(ops.maximum(source, 0), -1), axis=1)
        return moved * ops.cast(ops.expand_dims(ops.logical_not(noise), -1), story.dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class MemoryHop(keras.layers.Layer):
    """One hop: attention of the controller state u over the memories, read out as o.

    The softmax can be switched off for linear start (LS): `softmax_on` is a non-trainable
    variable, so the switch works inside compiled training steps. With `empty_in_denominator`,
    each empty slot adds exp(0) to the softmax's denominator, as the paper's code does (its empty
    slots are zero vectors: score 0, nothing read); they still get no attention weight
    (docs/decisions/empty-slots-in-denominator.md).
    """

    def __init__(self, empty_in_denominator: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.empty_in_denominator = empty_in_denominator
        self.softmax_on = self.add_weight(
            shape=(), initializer="ones", trainable=False, name="softmax_on"
        )

    def call(self, u, memories_in, memories_out, in_use):
        """u [B, d], memories_in/out [B, N, d], in_use [B, N]; returns o [B, d], p [B, N]."""
        scores = ops.einsum("bnd,bd->bn", memories_in, u)
        masked = ops.where(in_use > 0, scores, -1e9)
        if self.empty_in_denominator:
            has_empty = ops.any(in_use == 0, axis=-1, keepdims=True)  # [B, 1]
            top = ops.max(masked, axis=-1, keepdims=True)  # [B, 1]
            top = ops.where(has_empty, ops.maximum(top, 0.0), top)  # the largest term is exp(0)
            weights = ops.exp(masked - top) * in_use  # [B, N]
            empty = ops.sum(1.0 - in_use, axis=-1, keepdims=True) * ops.exp(-ops.maximum(top, 0.0))
            softmax = weights / (ops.sum(weights, axis=-1, keepdims=True) + empty)
        else:
            softmax = ops.softmax(masked, axis=-1) * in_use
        p = self.softmax_on * softmax + (1.0 - self.softmax_on) * scores * in_use
        return ops.einsum("bn,bnd->bd", p, memories_out), p

    def get_config(self) -> dict:
        return {**super().get_config(), "empty_in_denominator": self.empty_in_denominator}


@keras.saving.register_keras_serializable(package="memn2n")
class MemN2N(ConfiguredModel):
    """{"story": [B, N, J], "query": [B, J]} -> {"answer_logits": [B, V], "attention": [B, K, N]}"""

    config_class = MemN2NConfig

    def __init__(self, config: MemN2NConfig, seed: int | None = None, **kwargs):
        super().__init__(config, seed, **kwargs)
        d, k, stddev = config.embedding_dim, config.hops, config.init_stddev

        def encoder(name: str) -> SentenceEncoder:
            return SentenceEncoder(config.vocab_size, d, stddev, name=name)

        def temporal(name: str) -> TemporalEncoding | None:
            return (
                TemporalEncoding(config.memory_size, d, stddev, name=name)
                if config.temporal
                else None
            )

        if config.weight_tying == "adjacent":
            # E_0..E_K: A_k = E_(k-1), C_k = E_k, B = A_1, answer W = C_K transposed.
            embeddings = [encoder(f"embedding_{i}") for i in range(k + 1)]
            temporals = [temporal(f"temporal_{i}") for i in range(k + 1)]
            self.a, self.c = embeddings[:-1], embeddings[1:]
            self.t_a, self.t_c = temporals[:-1], temporals[1:]
            self.b, self.h, self.w = embeddings[0], None, None
        else:
            # One A and one C for all hops, separate B and W, and u(k+1) = H u(k) + o(k).
            self.a, self.c = [encoder("embedding_a")] * k, [encoder("embedding_c")] * k
            self.t_a, self.t_c = [temporal("temporal_a")] * k, [temporal("temporal_c")] * k
            self.b = encoder("embedding_b")
            normal = keras.initializers.RandomNormal(stddev=stddev)
            self.h = keras.layers.Dense(d, use_bias=False, kernel_initializer=normal, name="H")
            self.w = keras.layers.Dense(
                config.vocab_size, use_bias=False, kernel_initializer=normal, name="W"
            )
        self.random_noise = RandomEmptyMemories(config.random_noise, seed=seed, name="random_noise")
        self.hops = [MemoryHop(config.empty_in_denominator, name=f"hop_{i + 1}") for i in range(k)]

    def call(self, inputs, training: bool = False):
        story = self.random_noise(inputs["story"], training=training)
        in_use = ops.cast(ops.any(ops.not_equal(story, 0), axis=-1), "float32")  # [B, N]
        config = self.config
        encoding, d, scale = config.encoding, config.embedding_dim, config.position_scale
        story_weights = word_weights(story, encoding, d, scale)  # [B, N, J, d or 1], shared by all
        query_weights = word_weights(inputs["query"], encoding, d, scale)  # [B, J, d or 1]
        u = self.b(inputs["query"], query_weights)  # [B, d]
        memories: dict[str, object] = {}

        def memory(encoder: SentenceEncoder, temporal: TemporalEncoding | None):
            """[B, N, d]; each embedding of the story is computed once, however often it is used."""
            if encoder.name not in memories:
                encoded = encoder(story, story_weights)
                memories[encoder.name] = temporal(encoded) if temporal is not None else encoded
            return memories[encoder.name]

        attention = []
        for hop, memory_hop in enumerate(self.hops):
            m_in = memory(self.a[hop], self.t_a[hop])
            m_out = memory(self.c[hop], self.t_c[hop])
            o, p = memory_hop(u, m_in, m_out, in_use)
            attention.append(p)
            u = (self.h(u) if self.h is not None else u) + o
        if self.w is None:
            logits = ops.matmul(u, ops.transpose(self.c[-1].embeddings))  # [B, V]
        else:
            logits = self.w(u)
        return {"answer_logits": logits, "attention": ops.stack(attention, axis=1)}

    def build_from_config(self, build_config: dict) -> None:
        """Create every variable (by one call on padding) so that saved weights can load."""
        n, j = self.config.memory_size, self.config.sentence_size
        self({"story": ops.zeros((1, n, j), "int32"), "query": ops.zeros((1, j), "int32")})


def set_linear_start(model: keras.Model, linear: bool) -> None:
    """LS: remove (linear=True) or put back every memory layer's softmax."""
    for layer in model.layers:
        if isinstance(layer, MemoryHop):
            layer.softmax_on.assign(0.0 if linear else 1.0)
