"""Multi-Token Attention in the memory hops (model.hop_attention): each piece against a direct
computation, its identity start, its masking and its causality, in the bAbI model and the LM."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from model.attention_settings import HopAttention
from model.hop_attention import HopTrace, MemoryHop, convolve, mix_heads
from model.lm.inputs import RunBatches
from model.lm.memn2n import MemN2NLM, MemN2NLMConfig
from model.memn2n import MemN2N, MemN2NConfig, set_linear_start
from tests.conftest import EVERY_MTA_PIECE, context_windows

BABI = MemN2NConfig(vocab_size=30, sentence_size=5, memory_size=6, embedding_dim=8, hops=3)
LM = MemN2NLMConfig(vocab_size=40, memory_size=6, embedding_dim=8, hops=3, linear_units=4)
IDENTITY_STARTS = {  # each variant whose start is the identity, and its heads' plain model
    "slot": {"slot_kernel": 3},
    "slot and hops": {"slot_kernel": 5, "hop_kernel": 2},
    "post-softmax": {"post_slot_kernel": 3, "post_hop_kernel": 3},
    "head mix": {"heads": 2, "head_mix": True},
    "head groups": {"heads": 4, "post_head_group": 2},
    "all mixers": {**EVERY_MTA_PIECE, "head_norm": False, "head_gate": False, "top_k": 0},
    "top-k of all": {"top_k": 6},
}


def numpy_of(outputs: dict) -> dict[str, np.ndarray]:
    return {name: keras.ops.convert_to_numpy(value) for name, value in outputs.items()}


def babi_batch(sentences: int = 3) -> dict[str, np.ndarray]:
    """Four stories of `sentences` sentences (the other slots empty) and their questions."""
    rng = np.random.default_rng(1)
    story = np.zeros((4, BABI.memory_size, BABI.sentence_size), "int32")
    story[:, :sentences, :3] = rng.integers(1, BABI.vocab_size, (4, sentences, 3))
    query = np.zeros((4, BABI.sentence_size), "int32")
    query[:, :3] = rng.integers(1, BABI.vocab_size, (4, 3))
    return {"story": story, "query": query}


def lm_context() -> np.ndarray:
    """Three contexts, one with only two words (slot 0 = the previous word)."""
    rng = np.random.default_rng(2)
    context = rng.integers(1, LM.vocab_size, (3, LM.memory_size)).astype("int32")
    context[0, 2:] = 0
    return context


def layer_path(weight) -> str:
    """ "layer/weight", without the model's name (which differs between models)."""
    return "/".join(weight.path.split("/")[-2:])


def copy_shared_weights(source: keras.Model, target: keras.Model) -> None:
    """Every weight `target` has under the same layer and name in `source`, copied."""
    weights = {layer_path(w): w for w in source.weights}
    for weight in target.weights:
        if layer_path(weight) in weights:
            weight.assign(weights[layer_path(weight)])


def randomize_hops(model: keras.Model, seed: int = 0) -> None:
    """The hops' MTA weights moved off their identity start."""
    rng = np.random.default_rng(seed)
    for weight in model.trainable_weights:
        if layer_path(weight).startswith("hop_"):
            weight.assign(rng.normal(0.0, 0.5, weight.shape).astype("float32"))


def plain_of(changes: dict) -> dict:
    """The model without MTA, but with the variant's heads."""
    return {"heads": changes.get("heads", 1)}


def test_convolve_is_a_cross_correlation_over_earlier_hops_and_adjacent_slots():
    rng = np.random.default_rng(0)
    history = rng.normal(size=(2, 3, 2, 7)).astype("float32")  # [B, H, Q, N]
    kernel = rng.normal(size=(3, 2, 5)).astype("float32")  # [H, Q, W]
    got = keras.ops.convert_to_numpy(convolve(history, kernel))
    padded = np.pad(history, [(0, 0), (0, 0), (0, 0), (2, 2)])
    want = np.zeros((2, 3, 7), "float32")
    for n in range(7):
        want[..., n] = np.einsum("bhqw,hqw->bh", padded[..., n : n + 5], kernel)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_mix_heads_mixes_each_group_of_heads_on_its_own():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 5)).astype("float32")  # [B, H, N]
    groups = rng.normal(size=(2, 2, 2)).astype("float32")  # two groups of two heads
    got = keras.ops.convert_to_numpy(mix_heads(x, groups))
    block = np.zeros((4, 4), "float32")
    block[:2, :2], block[2:, 2:] = groups[0], groups[1]
    np.testing.assert_allclose(got, np.einsum("bin,ij->bjn", x, block), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("changes", IDENTITY_STARTS.values(), ids=IDENTITY_STARTS.keys())
@pytest.mark.parametrize("linear", [False, True], ids=["softmax", "linear start"])
def test_at_its_start_each_variant_computes_the_plain_babi_model_exactly(changes, linear):
    plain = MemN2N(dataclasses.replace(BABI, **plain_of(changes)), seed=0)
    variant = MemN2N(dataclasses.replace(BABI, **changes), seed=0)
    for model in (plain, variant):
        model.build_from_config({})
        set_linear_start(model, linear)
    copy_shared_weights(plain, variant)
    want, got = numpy_of(plain(babi_batch())), numpy_of(variant(babi_batch()))
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("changes", IDENTITY_STARTS.values(), ids=IDENTITY_STARTS.keys())
def test_at_its_start_each_variant_computes_the_plain_lm_exactly(changes):
    plain = MemN2NLM(dataclasses.replace(LM, **plain_of(changes)), seed=0)
    variant = MemN2NLM(dataclasses.replace(LM, **changes), seed=0)
    for model in (plain, variant):
        model.build_from_config({})
    copy_shared_weights(plain, variant)
    want, got = (
        numpy_of(plain({"context": lm_context()})),
        numpy_of(variant({"context": lm_context()})),
    )
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("piece", EVERY_MTA_PIECE, ids=EVERY_MTA_PIECE.keys())
def test_empty_slots_get_no_weight_and_their_scores_change_nothing(piece):
    """With the piece's weights moved off the identity: no attention on an empty slot, and its
    temporal vectors (the only part of its score) do not reach the answer."""
    changes = {piece: EVERY_MTA_PIECE[piece], "heads": EVERY_MTA_PIECE["heads"]}
    model = MemN2N(dataclasses.replace(BABI, **changes), seed=0)
    model.build_from_config({})
    randomize_hops(model)
    before = numpy_of(model(babi_batch(sentences=3)))
    for name in ("attention", "head_attention"):
        assert np.all(before[name][..., 3:] == 0), name
        assert np.all(before[name][..., :3] != 0), name
    for weight in model.weights:
        if layer_path(weight).startswith("temporal_"):
            table = keras.ops.convert_to_numpy(weight)
            table[3:] = 7.0  # the empty slots' T_A and T_C
            weight.assign(table)
    after = numpy_of(model(babi_batch(sentences=3)))
    np.testing.assert_array_equal(after["answer_logits"], before["answer_logits"])


@pytest.mark.parametrize("kernel", ["hop_kernel", "post_hop_kernel"])
def test_a_hop_reads_its_own_and_earlier_hops_never_later_ones(kernel):
    hops = [MemoryHop(attention=HopAttention(**{kernel: 2}), dim=4, name=f"h{i}") for i in range(3)]
    for hop in hops:
        randomize_hops_of(hop)
    rng = np.random.default_rng(3)
    scores = [rng.normal(size=(2, 1, 5)).astype("float32") for _ in hops]  # [B, H, N]
    in_use = np.ones((2, 5), "float32")

    def attention(all_scores):
        trace = HopTrace()
        return [
            keras.ops.convert_to_numpy(h.attend(s, in_use, trace))
            for h, s in zip(hops, all_scores, strict=True)
        ]

    base = attention(scores)
    later = attention([scores[0], scores[1], scores[2] + 1.0])
    earlier = attention(
        [scores[0] + rng.normal(size=scores[0].shape).astype("float32"), *scores[1:]]
    )
    np.testing.assert_array_equal(later[0], base[0])
    np.testing.assert_array_equal(later[1], base[1])
    assert not np.allclose(earlier[1], base[1])  # hop 2 reads hop 1 (kernel over 2 hops) ...
    np.testing.assert_array_equal(earlier[2], base[2])  # ... and hop 3 reads only hops 2 and 3


def randomize_hops_of(hop: MemoryHop) -> None:
    rng = np.random.default_rng(4)
    for weight in hop.trainable_weights:
        weight.assign(rng.normal(0.0, 0.5, weight.shape).astype("float32"))


@pytest.mark.parametrize("empty_in_denominator", [False, True])
def test_top_k_attends_over_the_k_best_slots_only(empty_in_denominator):
    hop = MemoryHop(empty_in_denominator, attention=HopAttention(top_k=2))
    scores = np.array([[[3.0, 1.0, 2.0, 0.5, 9.0]]], "float32")  # [B, H, N]
    in_use = np.array([[1.0, 1.0, 1.0, 1.0, 0.0]], "float32")  # slot 4 empty
    p = keras.ops.convert_to_numpy(hop.attend(scores, in_use))[0, 0]
    empties = 1.0 if empty_in_denominator else 0.0
    want = np.exp([3.0, 2.0]) / (np.exp(3.0) + np.exp(2.0) + empties)
    np.testing.assert_allclose(p[[0, 2]], want, rtol=1e-6)
    assert p[1] == p[3] == p[4] == 0


NEW_WEIGHTS = {  # per hop, for d = 8 and the heads given (H x Q x W kernels, mixers, norm, gate)
    "slot_kernel": ({"slot_kernel": 3}, 3),
    "hop_kernel": ({"slot_kernel": 5, "hop_kernel": 2}, 10),
    "post": ({"post_slot_kernel": 3, "post_hop_kernel": 2, "heads": 2}, 2 * 2 * 3),
    "head_mix": ({"heads": 2, "head_mix": True}, 4),
    "post_head_group": ({"heads": 4, "post_head_group": 2}, 2 * 2 * 2),
    "head_norm": ({"heads": 2, "head_norm": True}, 4),
    "head_gate": ({"heads": 2, "head_gate": True}, 4 + 1),
    "top_k": ({"top_k": 3}, 0),
}


def test_mta_weights_learn_only_while_the_softmax_is_on():
    """In a stack with seed 1 in linear start and seed 2 not: every MTA weight's gradient is 0
    for seed 1 alone; both seeds' embeddings get gradients."""
    import tensorflow as tf

    model = MemN2N(dataclasses.replace(BABI, **EVERY_MTA_PIECE), seeds=(1, 2))
    model.build_from_config({})
    set_linear_start(model, [True, False])
    with tf.GradientTape() as tape:
        loss = keras.ops.sum(keras.ops.square(model(babi_batch())["answer_logits"]))
    grads = tape.gradient(loss, model.trainable_weights)
    named = [
        (layer_path(w), keras.ops.convert_to_numpy(tf.convert_to_tensor(g)))
        for w, g in zip(model.trainable_weights, grads, strict=True)
    ]
    hops = [(name, g) for name, g in named if name.startswith("hop_")]
    assert len(hops) == 3 * 7  # kernel, head mixer, post kernel, post mixers, norm, gate, bias
    for name, grad in hops:
        assert np.all(grad[0] == 0), name
        assert np.any(grad[1] != 0), name
    for name, grad in named:
        if name.startswith("embedding_"):
            assert np.any(grad[0] != 0) and np.any(grad[1] != 0), name


@pytest.mark.parametrize("changes, per_hop", NEW_WEIGHTS.values(), ids=NEW_WEIGHTS.keys())
def test_each_variant_adds_its_weights_to_every_hop(changes, per_hop):
    for config in (BABI, LM):
        plain = MemN2N(config) if config is BABI else MemN2NLM(config)
        variant_config = dataclasses.replace(config, **changes)
        variant = MemN2N(variant_config) if config is BABI else MemN2NLM(variant_config)
        for model in (plain, variant):
            model.build_from_config({})
        assert variant.count_params() - plain.count_params() == per_hop * config.hops


def test_heads_report_their_own_attention_beside_the_average():
    model = MemN2N(dataclasses.replace(BABI, heads=2), seed=0)
    outputs = numpy_of(model(babi_batch()))
    assert outputs["head_attention"].shape == (4, 3, 2, 6)  # [B, K, H, N]
    np.testing.assert_allclose(outputs["attention"], outputs["head_attention"].mean(axis=2))
    sums = outputs["head_attention"].sum(-1)  # under 1: the empty slots' share
    assert np.all((sums > 0) & (sums <= 1 + 1e-6)) and not np.allclose(sums[:, :, 0], sums[:, :, 1])
    assert "head_attention" not in numpy_of(MemN2N(BABI, seed=0)(babi_batch()))


def test_with_every_piece_a_run_of_windows_gives_each_window_what_it_gives_alone():
    model = MemN2NLM(dataclasses.replace(LM, **EVERY_MTA_PIECE), seed=0)
    model.build_from_config({})
    randomize_hops(model)
    stream = np.random.default_rng(0).integers(1, 40, size=30)
    runs = RunBatches(stream, memory_size=6, run_length=5, batch_size=10, shuffle=False)
    inputs, _, _ = runs[0]
    in_runs = numpy_of(model(inputs))
    assert in_runs["head_attention"].shape == (2, 5, 3, 2, 6)  # [G, L, K, H, N]
    alone = numpy_of(model({"context": context_windows(stream, np.arange(1, 11), 6)}))
    for name, value in alone.items():
        np.testing.assert_allclose(
            np.reshape(in_runs[name], value.shape), value, rtol=1e-5, atol=1e-6, err_msg=name
        )


def test_settings_name_the_field_that_does_not_fit():
    for changes, field in [
        ({"slot_kernel": 4}, "slot_kernel"),
        ({"heads": 3}, "heads"),
        ({"heads": 4, "post_head_group": 3}, "post_head_group"),
        ({"top_k": -1}, "top_k"),
        ({"hop_kernel": 0}, "hop_kernel"),
    ]:
        with pytest.raises(ValueError, match=field):
            dataclasses.replace(BABI, **changes)


def test_query_shows_each_heads_attention_after_its_hop():
    from serving.client import attention_table, next_words_table

    story = "Mary moved to the bathroom.\nJohn went to the hallway."
    attention = [[0.5, 0.25], [0.5, 0.5]]  # [K, N], slot 0 = the last sentence
    heads = [[[0.75, 0.0], [0.25, 0.5]], [[1.0, 0.0], [0.0, 1.0]]]  # [K, H, N]
    assert attention_table(story, attention, heads).splitlines() == [
        "  #  sentence                     hop 1    1.1    1.2  hop 2    2.1    2.2",
        "  1  Mary moved to the bathroom.  0.250  0.000  0.500  0.500  0.000  1.000",
        "  2  John went to the hallway.    0.500  0.750  0.250  0.500  1.000  0.000",
    ]
    outputs = {
        "next_words": [[b"the"]],
        "probabilities": [[0.5]],
        "context": [[b"cat", b""]],
        "attention": [attention],
        "head_attention": [heads],
    }
    assert next_words_table(outputs).splitlines()[-1] == (
        "cat              0.500  0.750  0.250  0.500  1.000  0.000"
    )


def test_the_trainers_take_each_piece_as_a_setting_and_name_a_wrong_one():
    from model.babi.settings import trainer_settings as babi_settings
    from model.lm.settings import trainer_settings as lm_settings

    babi = babi_settings({"settings": {"slot_kernel": 5, "heads": 2}, "memory_size": 50})
    assert (babi.slot_kernel, babi.heads) == (5, 2)
    assert lm_settings({"corpus": "ptb", "settings": {"hop_kernel": 3}}).hop_kernel == 3
    with pytest.raises(ValueError, match="slot_kernel must be odd"):
        babi_settings({"settings": {"slot_kernel": 4}, "memory_size": 50})
    with pytest.raises(ValueError, match="heads 4 must divide embedding_dim 150"):
        lm_settings({"corpus": "ptb", "settings": {"heads": 4}})
