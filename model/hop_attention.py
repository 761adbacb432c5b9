"""How a memory hop attends (`MemoryHop`, for both experiments): the paper's one softmax over
the slots, or Multi-Token Attention's pieces (Golovneva, Wang, Weston, Sukhbaatar 2025;
facebookresearch/RAM, projects/mta), each switched on by a field of
model.attention_settings.HopAttention.

A hop has one query u^k over N slots. MTA's query axis becomes the hop axis: hop k's scores
are convolved over hops k - c_q + 1 .. k (causal, with each hop's raw scores kept) and over
c_k adjacent slots (padded on both sides). Shapes: ... leading axes (with the seed axis S first
when stacked), H heads, Q hops a kernel reads, N slots, W slots a kernel reads, c heads a
group mixes. Every kernel and mixer starts as the identity, as in the released code, so a
model at step 0 computes what the same model without them computes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from keras import ops

from model.attention_settings import HopAttention
from model.stacking import Seeds, StackableLayer


@dataclasses.dataclass
class HopTrace:
    """What earlier hops of one forward pass computed, for the convolutions over hops: each
    hop's raw scores (0 at masked slots) and its attention weights before the post-softmax
    convolution, [..., H, N] each."""

    scores: list = dataclasses.field(default_factory=list)
    weights: list = dataclasses.field(default_factory=list)


def recent(earlier: list, current, hops: int):
    """[..., H, Q, N]: the last Q - 1 of `earlier`, then `current`; zeros before the first hop."""
    kept = [*earlier, current][-hops:]
    return ops.stack([ops.zeros_like(current)] * (hops - len(kept)) + kept, axis=-2)


def split_heads(x, heads: int):
    """[..., d] -> [..., H, d / H]: head h reads units h d / H .. (h + 1) d / H - 1."""
    return ops.reshape(x, (*ops.shape(x)[:-1], heads, x.shape[-1] // heads))


def identity_kernel(heads: int, hops: int, width: int):
    """[H, Q, W]: 1 at this hop (q = Q - 1) and this slot (w = W // 2), 0 elsewhere."""
    one_hot = ops.one_hot((hops - 1) * width + width // 2, hops * width)
    return ops.broadcast_to(ops.reshape(one_hot, (1, hops, width)), (heads, hops, width))


def convolve(history, kernel):
    """history [..., H, Q, N] (hops oldest first, 0 before hop 1), kernel [..., H, Q, W] ->
    [..., H, N]: sum over q and w of kernel[q, w] history[q, n + w - W // 2], 0 past the ends."""
    width, slots = kernel.shape[-1], history.shape[-1]
    half = width // 2
    padded = ops.pad(history, [[0, 0]] * (len(history.shape) - 1) + [[half, half]])
    windows = ops.stack([padded[..., w : w + slots] for w in range(width)], axis=-1)
    return ops.sum(windows * ops.expand_dims(kernel, -2), axis=(-3, -1))  # [..., H, N]


def mix_heads(x, groups):
    """x [..., H, N], groups [..., G, c, c] (G c = H) -> [..., H, N]: head j of group g gets
    sum_i groups[g, i, j] x[g c + i], as the released code's head convolution."""
    count, size, slots = groups.shape[-3], groups.shape[-1], x.shape[-1]
    grouped = ops.reshape(x, (*ops.shape(x)[:-2], count, size, 1, slots))
    mixed = ops.sum(grouped * ops.expand_dims(groups, -1), axis=-3)  # [..., G, c, N]
    return ops.reshape(mixed, ops.shape(x))


def keep_top_k(scores, in_use, k: int):
    """[..., N] float mask: 1 at each row's k best scores among the slots in use (ties kept),
    every slot in use when fewer than k are."""
    masked = ops.where(in_use > 0, scores, -1e9)
    k = min(k, scores.shape[-1])
    kth = ops.top_k(ops.stop_gradient(masked), k)[0][..., -1:]
    return ops.cast(masked >= kth, "float32") * in_use


def rms_norm(x, scale, epsilon: float = 1e-5):
    """x [..., dh] divided by its root mean square, times scale [dh]."""
    return x * ops.rsqrt(ops.mean(ops.square(x), axis=-1, keepdims=True) + epsilon) * scale


class MemoryHop(StackableLayer):
    """One hop: attention of the controller state u over the memories, read out as o.

    The softmax can be switched off for linear start (LS): `softmax_on` is a non-trainable
    variable (one per seed when stacked), so the switch works inside compiled training steps.
    With `empty_in_denominator`, each empty slot adds exp(0) to the softmax's denominator, as the
    paper's code does (its empty slots are zero vectors: score 0, nothing read); they still get
    no attention weight (docs/decisions/empty-slots-in-denominator.md). `attention` adds heads
    and Multi-Token Attention's convolutions and mixers (model.hop_attention), for hops of
    `dim` units; they learn only while the softmax is on (`learned`).
    """

    def __init__(
        self,
        empty_in_denominator: bool = False,
        seeds: Seeds | None = None,
        attention: HopAttention | None = None,
        dim: int = 0,
        init_stddev: float = 0.1,
        **kwargs,
    ):
        super().__init__(init_stddev, seeds, **kwargs)
        self.empty_in_denominator = empty_in_denominator
        self.attention = attention = attention or HopAttention()
        attention.check_attention(dim or attention.heads)
        self.softmax_on = self.add_weight(
            shape=(len(self.seeds),) if self.seeds else (),
            initializer="ones",
            trainable=False,
            name="softmax_on",
        )
        heads, head_dim = attention.heads, (dim or attention.heads) // attention.heads
        if attention.convolves:  # [H, Q, W]
            self.kernel = self.constant_weight(
                identity_kernel(heads, attention.hop_kernel, attention.slot_kernel), "kernel"
            )
        if attention.head_mix:  # one group of all heads: [1, H, H]
            self.head_mixer = self.constant_weight(ops.eye(heads)[None], "head_mixer")
        if attention.post_convolves:
            self.post_kernel = self.constant_weight(
                identity_kernel(heads, attention.post_hop_kernel, attention.post_slot_kernel),
                "post_kernel",
            )
        if group := attention.post_head_group:  # [H / c, c, c]
            mixers = ops.broadcast_to(ops.eye(group), (heads // group, group, group))
            self.post_head_mixer = self.constant_weight(mixers, "post_head_mixer")
        if attention.head_norm:
            self.norm_scale = self.constant_weight(ops.ones(head_dim), "norm_scale")
        if attention.head_gate:
            self.gate = self.normal_weight((head_dim,), "gate")
            self.gate_bias = self.constant_weight(ops.zeros(()), "gate_bias")

    def constant_weight(self, value, name: str):
        """A trainable weight starting at `value` (for every seed when stacked)."""
        shape = (len(self.seeds), *value.shape) if self.seeds else tuple(value.shape)
        start = ops.convert_to_numpy(ops.broadcast_to(value, shape))
        return self.add_weight(shape=shape, initializer=lambda *_, **__: start, name=name)

    def learned(self, weight):
        """`weight` with no gradient while linear start is on (per seed when stacked). Without a
        softmax a kernel's centre is a free gain on the hop's read-out: trained in LS, SGD took
        the first two hops' centres from 1 to -0.03..0.05 in one epoch of bAbI 1k joint, and
        every MTA seed then failed task 16 (docs/decisions/multi-token-attention.md)."""
        on = self.aligned(self.softmax_on, len(weight.shape))
        return on * weight + (1.0 - on) * ops.stop_gradient(weight)

    def aligned(self, weight, rank: int):
        """A weight shaped to broadcast against a tensor of `rank` (stacked: its seed axis
        first, ones between it and the weight's own axes)."""
        if not self.seeds:
            return weight
        ones = (1,) * (rank - len(weight.shape))
        return ops.reshape(weight, (-1, *ones, *weight.shape[1:]))

    def call(self, u, memories_in, memories_out, in_use, trace: HopTrace | None = None):
        """u [..., B, d], memories_in/out [..., B, N, d], in_use [..., B, N] (... = S when
        stacked); returns o [..., B, d], p [..., B, H, N]."""
        heads = self.attention.heads
        keys = split_heads(memories_in, heads)  # [..., B, N, H, d / H]
        scores = ops.einsum("...nhd,...hd->...hn", keys, split_heads(u, heads))
        p = self.attend(scores, in_use, trace)
        o = ops.einsum("...hn,...nhd->...hd", p, split_heads(memories_out, heads))
        return self.read_out(o), p

    def attend(self, scores, in_use, trace: HopTrace | None = None):
        """The attention p [..., H, N] from the scores [..., H, N] of the slots in use
        ([..., N]); `trace` holds the earlier hops of this pass, for convolutions over hops.
        MTA's order: convolution, head mix, (top-k,) softmax, convolution, head mix."""
        attention, trace = self.attention, trace or HopTrace()
        in_use, rank = ops.expand_dims(in_use, -2), len(scores.shape)  # [..., 1, N]
        if attention.convolves:
            raw = scores * in_use  # masked slots are 0 before any convolution
            history = recent(trace.scores, raw, attention.hop_kernel)  # [..., H, Q, N]
            scores = convolve(history, self.aligned(self.learned(self.kernel), rank + 1))
            trace.scores.append(raw)
        if attention.head_mix:
            scores = mix_heads(scores, self.aligned(self.learned(self.head_mixer), rank + 1))
        selected = keep_top_k(scores, in_use, attention.top_k) if attention.top_k else None
        p = self.normalize(scores, in_use, selected)
        if attention.post_convolves:
            history = recent(trace.weights, p, attention.post_hop_kernel)
            trace.weights.append(p)
            post_kernel = self.aligned(self.learned(self.post_kernel), rank + 1)
            p = convolve(history, post_kernel) * in_use
        if attention.post_head_group:
            p = mix_heads(p, self.aligned(self.learned(self.post_head_mixer), rank + 1))
        return p

    def normalize(self, scores, in_use, selected=None):
        """The softmax (or, in linear start, the scores themselves) over the slots in use and,
        with top-k, `selected`; empty slots stay in the denominator when asked."""
        visible = in_use if selected is None else in_use * selected
        masked = ops.where(visible > 0, scores, -1e9)
        if self.empty_in_denominator:
            has_empty = ops.any(in_use == 0, axis=-1, keepdims=True)  # [..., 1]
            top = ops.max(masked, axis=-1, keepdims=True)  # [..., 1]
            top = ops.where(has_empty, ops.maximum(top, 0.0), top)  # the largest term is exp(0)
            weights = ops.exp(masked - top) * visible
            empty = ops.sum(1.0 - in_use, axis=-1, keepdims=True) * ops.exp(-ops.maximum(top, 0.0))
            softmax = weights / (ops.sum(weights, axis=-1, keepdims=True) + empty)
        else:
            softmax = ops.softmax(masked, axis=-1) * visible
        on = self.aligned(self.softmax_on, len(scores.shape))
        return on * softmax + (1.0 - on) * scores * visible

    def read_out(self, o):
        """o [..., H, d / H] -> [..., d]: each head's read-out, normed and gated when asked."""
        rank = len(o.shape)
        if self.attention.head_norm:
            o = rms_norm(o, self.aligned(self.learned(self.norm_scale), rank))
        if self.attention.head_gate:
            gate = ops.sum(o * self.aligned(self.learned(self.gate), rank), axis=-1, keepdims=True)
            o = o * ops.sigmoid(gate + self.aligned(self.learned(self.gate_bias), rank))
        return ops.reshape(o, (*ops.shape(o)[:-2], -1))

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "empty_in_denominator": self.empty_in_denominator,
            "attention": dataclasses.asdict(self.attention),
        }


def attention_outputs(per_hop: Sequence) -> dict:
    """Each hop's p [..., H, N] -> {"attention": [..., K, N]} (heads averaged), and with several
    heads {"head_attention": [..., K, H, N]}."""
    heads = ops.stack(per_hop, axis=-3)  # [..., K, H, N]
    if heads.shape[-2] == 1:
        return {"attention": ops.squeeze(heads, axis=-2)}
    return {"attention": ops.mean(heads, axis=-2), "head_attention": heads}
