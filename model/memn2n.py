"""End-To-End Memory Network (Sukhbaatar, Szlam, Weston, Fergus, 2015) as small Keras 3 layers.

`keras.ops` only, so the same code runs on the TensorFlow and the JAX backends. Shapes:
B batch, N memory slots (slot 0 = most recent sentence), J words per sentence, d embedding
size, K hops, V vocabulary (id 0 is padding and never contributes), S seeds.

A model built with `seeds` trains S independent models at once: every weight has a leading
seed axis and every tensor inside is seed-major ([S, B, ...]); the layers below take either
layout (docs/decisions/stacked-seeds.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from model.attention_settings import HopAttention, hop_attention_of
from model.hop_attention import HopTrace, MemoryHop, attention_outputs
from model.serialization import ConfiguredModel
from model.settings import (
    ENCODINGS,
    TEMPORAL_GRIDS,
    WEIGHT_TYINGS,
    Encoding,
    TemporalGrid,
    WeightTying,
    check_choice,
)
from model.stacking import Seeds, StackableLayer, take_per_seed


@dataclasses.dataclass(frozen=True)
class MemN2NConfig(HopAttention):
    """Every variant of the paper, chosen by these fields (and MTA's, from HopAttention)."""

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
    temporal: bool = True  # learned T_A, T_C
    temporal_grid: TemporalGrid = "slot"  # one vector per slot (the paper), or "log": log_blend
    random_noise: float = 0.1  # RN: fraction of empty memories inserted in training; 0 = off
    weight_tying: WeightTying = "adjacent"
    init_stddev: float = 0.1

    def __post_init__(self) -> None:
        check_choice("encoding", self.encoding, ENCODINGS)
        check_choice("weight_tying", self.weight_tying, WEIGHT_TYINGS)
        check_choice("temporal_grid", self.temporal_grid, TEMPORAL_GRIDS)
        if not 0 <= self.random_noise < 1:
            raise ValueError(f"random_noise {self.random_noise} must be in [0, 1)")
        self.check_attention(self.embedding_dim)


WordWeights = tuple  # (alpha [..., J, 1], beta [..., J, 1] or None), see `word_weights`


def word_weights(word_ids, encoding: str, position_scale: float = 1.0) -> WordWeights:
    """Each word's weight in its sentence's sum, 0 for padding: 1 for bag of words; for PE
    l_kj = (1 - j/J) - (k/d)(1 - 2j/J), J the sentence's own length, in the form alpha_j +
    k beta_j (alpha_j = 1 - j/J, beta_j = -(1 - 2j/J)/d), times `position_scale`.

    The weights of dimension k then never exist as a [..., J, d] tensor: SentenceEncoder sums
    alpha-weighted and beta-weighted embeddings (a 5-seed joint forward pass: 28 -> 8 ms).
    word_ids: [..., J] int; returns (alpha, beta or None), each [..., J, 1]; d is the encoder's.
    """
    present = ops.cast(ops.not_equal(word_ids, 0), "float32")  # [..., J]
    if encoding == "bow":
        return ops.expand_dims(present, -1), None
    length = ops.maximum(ops.sum(present, axis=-1, keepdims=True), 1.0)  # [..., 1]
    j = ops.arange(1, word_ids.shape[-1] + 1, dtype="float32")  # [J]
    alpha = position_scale * (1.0 - j / length) * present
    beta = -position_scale * (1.0 - 2.0 * j / length) * present  # divided by d in the encoder
    return ops.expand_dims(alpha, -1), ops.expand_dims(beta, -1)


def sentence_table(story):
    """story [..., B, N, J] -> (table [..., 1 + B N, J], slots [..., B, N]): the sentences as
    rows after an empty row 0, and each slot's row (0 where the slot is empty)."""
    *lead, batch, slots, words = ops.shape(story)
    rows = ops.reshape(story, (*lead, batch * slots, words))
    table = ops.concatenate([ops.zeros_like(rows[..., :1, :]), rows], axis=-2)
    index = ops.reshape(ops.arange(1, batch * slots + 1, dtype="int32"), (batch, slots))
    used = ops.any(ops.not_equal(story, 0), axis=-1)  # [..., B, N]
    return table, ops.where(used, index, 0)


class SentenceEncoder(StackableLayer):
    """One embedding matrix: each sentence becomes the weighted sum of its words' embeddings."""

    def __init__(self, vocab_size: int, dim: int, init_stddev: float, **kwargs):
        super().__init__(init_stddev, **kwargs)
        self.vocab_size, self.dim = vocab_size, dim

    def build(self, input_shape) -> None:
        self.embeddings = self.normal_weight((self.vocab_size, self.dim), "embeddings")

    def call(self, word_ids, weights: WordWeights):
        """word_ids [..., J] int (stacked: [S, ..., J]), weights from `word_weights`; returns
        [..., d]: sum_j (alpha_j + k beta_j) E[w_j] in dimension k = 1..d."""
        embedded = take_per_seed(self.embeddings, word_ids, self.seeds is not None)  # [..., J, d]
        alpha, beta = weights
        encoded = ops.sum(embedded * alpha, axis=-2)
        if beta is None:
            return encoded
        k = ops.arange(1, self.dim + 1, dtype="float32") / self.dim  # [d]
        return encoded + k * ops.sum(embedded * beta, axis=-2)

    def get_config(self) -> dict:
        return {**super().get_config(), "vocab_size": self.vocab_size, "dim": self.dim}


def log_blend(memory_size: int) -> np.ndarray:
    """[N, A]: each slot's weights on A anchors at slots 0, 1, 3, 7, ..., 2^(A-1) - 1 (the
    fewest that reach slot N - 1), linear in log2(1 + slot) between its two neighbours."""
    position = np.log2(1.0 + np.arange(memory_size))  # anchor a sits at position a
    anchors = int(np.ceil(position[-1])) + 1
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, anchors - 1)
    blend = np.zeros((memory_size, anchors), "float32")
    rows = np.arange(memory_size)
    blend[rows, low] = 1.0 - (position - low)
    blend[rows, high] += position - low
    return blend


class TemporalEncoding(StackableLayer):
    """A learned vector per memory slot (T_A or T_C), added to the encoded memories; with the
    "log" grid, each slot's vector is blended from a few learned anchors (`log_blend`), so that
    a memory of 1000 slots learns 11 vectors, each trained by every slot near it."""

    def __init__(
        self, memory_size: int, dim: int, init_stddev: float, grid: str = "slot", **kwargs
    ):
        super().__init__(init_stddev, **kwargs)
        check_choice("grid", grid, TEMPORAL_GRIDS)
        self.memory_size, self.dim, self.grid = memory_size, dim, grid
        self.blend = log_blend(memory_size) if grid == "log" else None  # [N, A]

    def build(self, input_shape) -> None:
        rows = self.memory_size if self.blend is None else self.blend.shape[1]
        self.table = self.normal_weight((rows, self.dim), "table")

    def call(self, memories):
        """memories: [B, N, d], or [S, B, N, d] when stacked; returns the same shape."""
        table = self.table  # [(S,) N or A, d]
        if self.blend is not None:
            table = ops.einsum("na,...ad->...nd", self.blend, table)
        return memories + ops.expand_dims(table, -3)

    def get_config(self) -> dict:
        config = {"memory_size": self.memory_size, "dim": self.dim, "grid": self.grid}
        return {**super().get_config(), **config}


class Linear(StackableLayer):
    """x W without bias (the layer-wise variant's H and W)."""

    def __init__(self, units_in: int, units_out: int, init_stddev: float, **kwargs):
        super().__init__(init_stddev, **kwargs)
        self.units_in, self.units_out = units_in, units_out

    def build(self, input_shape) -> None:
        self.kernel = self.normal_weight((self.units_in, self.units_out), "kernel")

    def call(self, x):
        """x: [B, in], or [S, B, in] when stacked; returns [..., out]."""
        return ops.einsum("...bi,...io->...bo", x, self.kernel)

    def get_config(self) -> dict:
        return {**super().get_config(), "units_in": self.units_in, "units_out": self.units_out}


class RandomEmptyMemories(keras.layers.Layer):
    """RN: in training only, inserts empty memories among the story's sentences (as slots of
    the sentence table, see `sentence_table`).

    Each slot becomes empty with probability `rate`; the sentences move to older slots (so
    their temporal vectors change) and the oldest fall off. The empties hold no words and get
    no attention, so the noise is in the time index, as in the paper's code. Stacked, each
    seed draws from its own generator.
    """

    def __init__(self, rate: float, seed: int | None = None, seeds: Seeds | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.seed, self.seeds = rate, seed, tuple(seeds) if seeds else None
        self.seed_generators = [keras.random.SeedGenerator(s) for s in (self.seeds or (seed,))]

    def draw(self, shape):
        """Uniform noise of `shape` ([B, N], or [S, B, N] stacked: one generator per seed)."""
        if self.seeds is None:
            return keras.random.uniform(shape, seed=self.seed_generators[0])
        return ops.stack([keras.random.uniform(shape[1:], seed=g) for g in self.seed_generators])

    def call(self, slots, training: bool = False):
        """slots: [..., N] int, each slot's row in the sentence table (0: the empty sentence);
        returns the slots with empties inserted, same shape."""
        if not training or self.rate == 0:
            return slots
        has_words = ops.not_equal(slots, 0)  # [..., N]
        noise = self.draw(ops.shape(slots)) < self.rate
        noise = ops.logical_and(noise, has_words)  # insert only among the story's sentences
        inserted = ops.cumsum(ops.cast(noise, "int32"), axis=-1)  # empties up to each slot
        source = ops.arange(ops.shape(slots)[-1], dtype="int32") - inserted  # [..., N]
        moved = ops.take_along_axis(slots, ops.maximum(source, 0), axis=-1)
        return ops.where(noise, 0, moved)

    def get_config(self) -> dict:
        seeds = list(self.seeds) if self.seeds else None
        return {**super().get_config(), "rate": self.rate, "seed": self.seed, "seeds": seeds}


@keras.saving.register_keras_serializable(package="memn2n")
class MemN2N(ConfiguredModel):
    """{"story": [B, N, J], "query": [B, J]} -> {"answer_logits": [B, V], "attention": [B, K, N]}

    With `seeds` (S of them), S models in one: inputs [B, S, ...] give each seed its own
    examples, and inputs without the seed axis go to every seed; outputs are [B, S, ...].
    """

    config_class = MemN2NConfig

    def __init__(
        self,
        config: MemN2NConfig,
        seed: int | None = None,
        seeds: Sequence[int] | None = None,
        **kwargs,
    ):
        super().__init__(config, seed, **kwargs)
        self.seeds: Seeds | None = tuple(seeds) if seeds else None
        d, k, stddev, stack = config.embedding_dim, config.hops, config.init_stddev, self.seeds

        def encoder(name: str) -> SentenceEncoder:
            return SentenceEncoder(config.vocab_size, d, stddev, seeds=stack, name=name)

        def temporal(name: str) -> TemporalEncoding | None:
            if not config.temporal:
                return None
            grid = config.temporal_grid
            return TemporalEncoding(config.memory_size, d, stddev, grid, seeds=stack, name=name)

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
            self.h = Linear(d, d, stddev, seeds=stack, name="H")
            self.w = Linear(d, config.vocab_size, stddev, seeds=stack, name="W")
        self.random_noise = RandomEmptyMemories(
            config.random_noise, seed=seed, seeds=stack, name="random_noise"
        )
        attention = hop_attention_of(config)
        self.hops = [
            MemoryHop(config.empty_in_denominator, stack, attention, d, stddev, name=f"hop_{i + 1}")
            for i in range(k)
        ]

    def seed_major(self, x, rank: int):
        """Stacked: [B, S, ...] -> [S, B, ...], or a shared [B, ...] repeated for every seed."""
        if len(x.shape) == rank:
            return ops.broadcast_to(ops.expand_dims(x, 0), (len(self.seeds or ()), *ops.shape(x)))
        return ops.moveaxis(x, 1, 0)

    def call(self, inputs, training: bool = False):
        """{"story", "query"}, or a training batch that brings its sentence table:
        {"sentences": [(S,) U, J], "slots": [B, (S,) N], "query"} (model.babi.batches)."""
        stacked, query = self.seeds is not None, inputs["query"]
        if "slots" in inputs:
            table, slots = inputs["sentences"], inputs["slots"]
            slots = ops.moveaxis(slots, 1, 0) if stacked else slots
        else:
            story = self.seed_major(inputs["story"], 3) if stacked else inputs["story"]
            table, slots = sentence_table(story)
        query = self.seed_major(query, 2) if stacked else query
        slots = self.random_noise(slots, training=training)  # [B, N]
        in_use = ops.cast(ops.not_equal(slots, 0), "float32")  # [B, N]
        config = self.config
        encoding, scale = config.encoding, config.position_scale
        table_weights = word_weights(table, encoding, scale)  # [U, J, 1] twice, shared by all
        query_weights = word_weights(query, encoding, scale)  # [B, J, 1] twice
        u = self.b(query, query_weights)  # [B, d]
        memories: dict[str, object] = {}

        def memory(encoder: SentenceEncoder, temporal: TemporalEncoding | None):
            """[B, N, d]; each distinct sentence is embedded once per embedding, however often
            a story or a hop uses it."""
            if encoder.name not in memories:
                encoded = take_per_seed(encoder(table, table_weights), slots, stacked)
                memories[encoder.name] = temporal(encoded) if temporal is not None else encoded
            return memories[encoder.name]

        attention, trace = [], HopTrace()
        for hop, memory_hop in enumerate(self.hops):
            m_in = memory(self.a[hop], self.t_a[hop])
            m_out = memory(self.c[hop], self.t_c[hop])
            o, p = memory_hop(u, m_in, m_out, in_use, trace=trace)  # p [B, H, N]
            attention.append(p)
            u = (self.h(u) if self.h is not None else u) + o
        if self.w is None:
            logits = ops.einsum("...bd,...vd->...bv", u, self.c[-1].embeddings)  # [B, V]
        else:
            logits = self.w(u)
        outputs = {"answer_logits": logits, **attention_outputs(attention)}
        if self.seeds:  # back to [B, S, ...]
            outputs = {name: ops.moveaxis(value, 0, 1) for name, value in outputs.items()}
        return outputs

    def get_config(self) -> dict:
        return {**super().get_config(), "seeds": list(self.seeds) if self.seeds else None}

    @classmethod
    def from_config(cls, config: dict) -> MemN2N:
        return cls(
            MemN2NConfig(**config["config"]),
            seed=config.get("seed"),
            seeds=config.get("seeds"),
            name=config["name"],
        )

    def build_from_config(self, build_config: dict) -> None:
        """Create every variable (by one call on padding) so that saved weights can load."""
        n, j = self.config.memory_size, self.config.sentence_size
        self({"story": ops.zeros((1, n, j), "int32"), "query": ops.zeros((1, j), "int32")})


def unstack(stacked: MemN2N, index: int) -> MemN2N:
    """Seed `index` of a stacked model as a model of its own (for export and scoring)."""
    if not stacked.seeds:
        raise ValueError("unstack takes a model built with seeds")
    single = MemN2N(stacked.config, seed=stacked.seeds[index])
    single.build_from_config({})
    for target, source in zip(single.weights, stacked.weights, strict=True):
        target.assign(ops.convert_to_numpy(source)[index])
    return single


def set_linear_start(model: keras.Model, linear: bool | Sequence[bool]) -> None:
    """LS: remove (linear=True) or put back every memory layer's softmax; a model built with
    seeds takes one flag per seed."""
    for layer in model.layers:
        if isinstance(layer, MemoryHop):
            seeds = len(layer.seeds or ())
            flags = [linear] * seeds if isinstance(linear, bool) and seeds else linear
            layer.softmax_on.assign(ops.cast(ops.logical_not(ops.array(flags)), "float32"))
