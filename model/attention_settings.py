"""The settings of each hop's attention (`HopAttention`), free of Keras and TensorFlow so that a
pipeline config can check them; model.hop_attention computes what they ask for."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, kw_only=True)
class HopAttention:
    """Each hop's attention; every field at its default is the paper's hop. Inherited by the
    model and training settings of both experiments, so that each is a flat setting."""

    heads: int = 1  # H: d split into H slices, each with its own softmax over the slots
    slot_kernel: int = 1  # c_k (odd) of the pre-softmax convolution over adjacent slots
    hop_kernel: int = 1  # c_q of the pre-softmax convolution over this and earlier hops
    post_slot_kernel: int = 1  # the same two, convolving the attention weights after softmax
    post_hop_kernel: int = 1
    head_mix: bool = False  # an H x H mix of the heads' scores before the softmax
    post_head_group: int = 0  # c: heads mixed in groups of c after the softmax; 0 = off
    head_norm: bool = False  # RMS norm of each head's read-out (a weight per unit, shared)
    head_gate: bool = False  # sigmoid(w . o_h + b) times each head's read-out (w, b shared)
    top_k: int = 0  # each hop keeps its k best scores before the softmax; 0 = all

    def check_attention(self, embedding_dim: int) -> None:
        """Fail naming the field that does not fit, for hops of `embedding_dim` units."""
        for name in ("heads", "slot_kernel", "hop_kernel", "post_slot_kernel", "post_hop_kernel"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("slot_kernel", "post_slot_kernel"):
            if getattr(self, name) % 2 == 0:
                raise ValueError(
                    f"{name} must be odd (padded on both sides), got {getattr(self, name)}"
                )
        if embedding_dim % self.heads:
            raise ValueError(f"heads {self.heads} must divide embedding_dim {embedding_dim}")
        if self.post_head_group < 0 or (self.post_head_group and self.heads % self.post_head_group):
            raise ValueError(
                f"post_head_group {self.post_head_group} must be 0 or divide heads {self.heads}"
            )
        if self.top_k < 0:
            raise ValueError(f"top_k must be 0 (off) or positive, got {self.top_k}")

    @property
    def convolves(self) -> bool:
        """Whether the scores are convolved before the softmax."""
        return self.slot_kernel > 1 or self.hop_kernel > 1

    @property
    def post_convolves(self) -> bool:
        """Whether the attention weights are convolved after the softmax."""
        return self.post_slot_kernel > 1 or self.post_hop_kernel > 1


def attention_of(settings: HopAttention) -> dict:
    """The HopAttention fields of any settings that inherit them, to build another from."""
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(HopAttention)}


def hop_attention_of(settings: HopAttention) -> HopAttention:
    """The hops' attention alone, out of any settings that inherit it (a model's config)."""
    return HopAttention(**attention_of(settings))
