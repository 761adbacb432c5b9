"""The MemN2N Keras model: every variant's structure and behaviour."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from model.hop_attention import MemoryHop
from model.memn2n import (
    MemN2N,
    MemN2NConfig,
    RandomEmptyMemories,
    SentenceEncoder,
    TemporalEncoding,
    log_blend,
    set_linear_start,
    unstack,
    word_weights,
)
from tests.conftest import EVERY_MTA_PIECE

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = MemN2NConfig(vocab_size=30, sentence_size=5, memory_size=6, embedding_dim=8, hops=3)


def batch(stories: int = 2, sentences: int = 2) -> dict[str, np.ndarray]:
    """`stories` examples, each with `sentences` sentences of 3 words in the first slots."""
    rng = np.random.default_rng(0)
    story = np.zeros((stories, CONFIG.memory_size, CONFIG.sentence_size), "int32")
    story[:, :sentences, :3] = rng.integers(1, CONFIG.vocab_size, (stories, sentences, 3))
    query = np.zeros((stories, CONFIG.sentence_size), "int32")
    query[:, :3] = rng.integers(1, CONFIG.vocab_size, (stories, 3))
    return {"story": story, "query": query}


def encode_sentence(words: list[int], encoding: str) -> tuple[np.ndarray, np.ndarray]:
    """The encoder's output for one sentence padded to 6 words, and its embedding matrix."""
    encoder = SentenceEncoder(vocab_size=10, dim=4, init_stddev=0.1)
    padded = np.array([words + [0] * (6 - len(words))], "int32")
    encoded = encoder(padded, word_weights(padded, encoding))
    return keras.ops.convert_to_numpy(encoded)[0], keras.ops.convert_to_numpy(encoder.embeddings)


def test_position_encoding_follows_the_formula():
    words = [4, 7, 4]  # J = 3; word 4 twice, so its bag entry sums two positions
    encoded, embeddings = encode_sentence(words, "position")
    for k in range(1, 5):
        expected = sum(
            ((1 - j / 3) - (k / 4) * (1 - 2 * j / 3)) * embeddings[w, k - 1]
            for j, w in enumerate(words, start=1)
        )
        assert encoded[k - 1] == pytest.approx(expected, abs=1e-6)


def test_bag_of_words_sums_the_embeddings():
    encoded, embeddings = encode_sentence([4, 7, 4], "bow")
    np.testing.assert_allclose(encoded, 2 * embeddings[4] + embeddings[7], atol=1e-6)


def test_output_and_attention_shapes():
    outputs = MemN2N(CONFIG)(batch())
    assert tuple(outputs["answer_logits"].shape) == (2, 30)
    assert tuple(outputs["attention"].shape) == (2, 3, 6)


def test_the_log_grid_blends_a_few_anchors_linearly_in_log_slot():
    blend = log_blend(1000)
    assert blend.shape == (1000, 11)
    np.testing.assert_allclose(blend.sum(1), 1.0, rtol=1e-6)
    for a in range(10):  # anchor a is slot 2^a - 1 exactly
        np.testing.assert_array_equal(blend[2**a - 1], np.eye(11)[a])
    # slot 2 sits log2(3) - 1 of the way from anchor 1 (slot 1) to anchor 2 (slot 3)
    np.testing.assert_allclose(blend[2, 1:3], [2 - np.log2(3), np.log2(3) - 1], rtol=1e-6)
    assert log_blend(50).shape == (50, 7) and log_blend(1).tolist() == [[1.0]]


def test_the_log_grid_adds_each_slots_blend_of_its_anchors():
    layer = TemporalEncoding(memory_size=20, dim=4, init_stddev=0.1, grid="log")
    added = keras.ops.convert_to_numpy(layer(np.zeros((2, 20, 4), "float32")))
    anchors = keras.ops.convert_to_numpy(layer.table)
    assert anchors.shape == (6, 4)  # slots 0, 1, 3, 7, 15 and 31
    np.testing.assert_allclose(added[1], log_blend(20) @ anchors, atol=1e-6)
    with pytest.raises(ValueError, match="temporal_grid 'linear'"):
        dataclasses.replace(CONFIG, temporal_grid="linear")


@pytest.mark.parametrize(
    ("tying", "temporal", "expected"),
    [
        ("adjacent", True, 8),  # E_0..E_3 and their temporal tables
        ("adjacent", False, 4),
        ("layerwise", True, 7),  # A, C, B, T_A, T_C, H, W
        ("layerwise", False, 5),
    ],
)
def test_weight_tying_shares_exactly_the_right_weights(tying, temporal, expected):
    model = MemN2N(dataclasses.replace(CONFIG, weight_tying=tying, temporal=temporal))
    model(batch())
    assert len({id(v) for v in model.trainable_variables}) == expected
    if tying == "adjacent":
        assert model.b is model.a[0]
        assert all(model.a[i + 1] is model.c[i] for i in range(CONFIG.hops - 1))
    else:
        assert len({id(layer) for layer in model.a}) == 1 and model.h is not None


def test_linear_start_removes_and_restores_the_softmax():
    model = MemN2N(CONFIG)
    inputs = batch(sentences=CONFIG.memory_size)  # no empty slot: each hop's weights sum to 1
    softmax = keras.ops.convert_to_numpy(model(inputs)["attention"])
    np.testing.assert_allclose(softmax.sum(-1), 1.0, rtol=1e-5)
    set_linear_start(model, True)
    linear = keras.ops.convert_to_numpy(model(inputs)["attention"])
    assert not np.allclose(linear.sum(-1), 1.0)
    set_linear_start(model, False)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(inputs)["attention"]), softmax, rtol=1e-6
    )


@pytest.mark.parametrize("linear", [False, True])
def test_padding_slots_get_zero_attention(linear):
    model = MemN2N(CONFIG)
    set_linear_start(model, linear)
    attention = keras.ops.convert_to_numpy(model(batch(sentences=2))["attention"])
    assert np.all(attention[:, :, 2:] == 0)
    assert np.all(attention[:, :, :2] != 0)


def test_empty_slots_can_count_in_the_softmax_denominator_without_getting_attention():
    u = np.array([[1.0, 0.0]], "float32")
    memories = np.array([[[2.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]], "float32")
    in_use = np.array([[1.0, 1.0, 0.0, 0.0]], "float32")  # p: [B, H, N], one head
    _, p = MemoryHop(empty_in_denominator=True)(u, memories, memories, in_use)
    expected = np.exp([2.0, 1.0]) / (np.exp(2.0) + np.exp(1.0) + 2 * np.exp(0.0))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(p)[0, 0], [*expected, 0, 0], rtol=1e-6)
    _, p = MemoryHop()(u, memories, memories, in_use)
    expected = np.exp([2.0, 1.0]) / (np.exp(2.0) + np.exp(1.0))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(p)[0, 0], [*expected, 0, 0], rtol=1e-6)
    far = np.array([[[-200.0, 0.0], [-201.0, 0.0]]], "float32")  # no empty slot, scores << 0
    _, p = MemoryHop(empty_in_denominator=True)(u, far, far, np.ones((1, 2), "float32"))
    expected = np.exp([0.0, -1.0]) / (1 + np.exp(-1.0))  # no 0/0 from underflow
    np.testing.assert_allclose(keras.ops.convert_to_numpy(p)[0, 0], expected, rtol=1e-6)


def story_slots(stories: int, sentences: int) -> np.ndarray:
    """[B, 6] sentence-table rows: `sentences` sentences (rows 1.. of the table), then empty."""
    slots = np.zeros((stories, 6), "int32")
    slots[:, :sentences] = np.arange(1, stories * sentences + 1).reshape(stories, sentences)
    return slots


def test_random_noise_acts_only_in_training():
    layer = RandomEmptyMemories(rate=0.5, seed=1)
    slots = story_slots(stories=64, sentences=4)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(slots, training=False)), slots)

    noisy = keras.ops.convert_to_numpy(layer(slots, training=True))
    assert not np.array_equal(noisy, slots)
    moved = 0
    for original, shifted in zip(slots, noisy, strict=True):
        kept = [s for s in shifted if s]
        # Sentences keep their order; the oldest may fall off the end of the memory.
        assert kept == list(original[: len(kept)])
        moved += not np.array_equal(original, shifted)
    assert moved > 32  # with rate 0.5 most of the 64 stories get an empty slot


def test_save_and_reload_give_identical_outputs(tmp_path):
    model = MemN2N(dataclasses.replace(CONFIG, weight_tying="layerwise"))
    inputs = batch()
    before = model(inputs)
    model.save(tmp_path / "memn2n.keras")
    after = keras.saving.load_model(tmp_path / "memn2n.keras")(inputs)
    for name in ("answer_logits", "attention"):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(after[name]), keras.ops.convert_to_numpy(before[name])
        )


@pytest.mark.parametrize(
    "changes",
    [
        {"weight_tying": "adjacent"},
        {"weight_tying": "layerwise"},
        EVERY_MTA_PIECE,
        {"temporal_grid": "log"},
    ],
    ids=["adjacent", "layerwise", "mta", "log-temporal"],
)
def test_a_stack_is_its_seeds_side_by_side(changes, tmp_path):
    """Seed s of a stack computes what seed s alone computes, on shared or per-seed inputs, and
    starts from the weights it would have in a stack of its own."""
    config = dataclasses.replace(CONFIG, **changes)
    stack = MemN2N(config, seeds=(1, 2, 3))
    stack.build_from_config({})
    own = MemN2N(config, seeds=(2,))
    own.build_from_config({})
    for mine, theirs in zip(own.weights, stack.weights, strict=True):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(mine)[0], keras.ops.convert_to_numpy(theirs)[1]
        )
    rng = np.random.default_rng(0)
    for weight in stack.trainable_weights:  # MTA's identity starts made seed-specific
        if weight.path.split("/")[-2].startswith("hop_"):
            weight.assign(rng.normal(0.0, 0.5, weight.shape).astype("float32"))
    inputs = batch(stories=4, sentences=3)
    shared = {k: keras.ops.convert_to_numpy(v) for k, v in stack(inputs).items()}
    assert shared["answer_logits"].shape == (4, 3, 30) and shared["attention"].shape == (4, 3, 3, 6)
    per_seed = {k: np.stack([v[::-1], v, v], axis=1) for k, v in inputs.items()}  # [B, S, ...]
    routed = keras.ops.convert_to_numpy(stack(per_seed)["answer_logits"])
    np.testing.assert_allclose(routed[:, 0], shared["answer_logits"][::-1, 0], atol=1e-6)
    for s in range(3):
        alone = {k: keras.ops.convert_to_numpy(v) for k, v in unstack(stack, s)(inputs).items()}
        assert alone.keys() == shared.keys()
        for name, value in alone.items():
            np.testing.assert_allclose(value, shared[name][:, s], atol=1e-6, err_msg=name)
    stack.save(tmp_path / "stack.keras")
    reloaded = keras.saving.load_model(tmp_path / "stack.keras")(inputs)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(reloaded["answer_logits"]), shared["answer_logits"]
    )


def test_each_seed_of_a_stack_draws_its_own_random_noise():
    slots = story_slots(stories=64, sentences=4)
    stacked = np.broadcast_to(slots[None], (2, *slots.shape))  # [S, B, N]
    noisy = RandomEmptyMemories(rate=0.5, seeds=(1, 2))(stacked, training=True)
    noisy = keras.ops.convert_to_numpy(noisy)
    assert not np.array_equal(noisy[0], noisy[1])
    alone = RandomEmptyMemories(rate=0.5, seeds=(2,))(stacked[1:], training=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(alone)[0], noisy[1])


def task1_fixture(count: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Synthetic bAbI task 1: '<person> moved to the <place>' x 2-6, 'where is <person>'."""
    rng = np.random.default_rng(seed)
    people, places = list(range(1, 5)), list(range(5, 11))
    moved, to, the, where, is_ = 11, 12, 13, 14, 15
    story = np.zeros((count, CONFIG.memory_size, CONFIG.sentence_size), "int32")
    query = np.zeros((count, CONFIG.sentence_size), "int32")
    answer = np.zeros(count, "int32")
    for i in range(count):
        location = {}
        sentences = rng.integers(2, CONFIG.memory_size + 1)
        for s in range(sentences):
            person, place = rng.choice(people), rng.choice(places)
            location[person] = place
            story[i, sentences - 1 - s] = [person, moved, to, the, place]  # slot 0 = most recent
        asked = rng.choice(list(location))
        query[i, :3] = [where, is_, asked]
        answer[i] = location[asked]
    return {"story": story, "query": query}, answer


def test_small_model_learns_task1_fixture():
    keras.utils.set_random_seed(0)
    model = MemN2N(dataclasses.replace(CONFIG, embedding_dim=20, random_noise=0.0), seed=0)
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss={"answer_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
    )
    x, y = task1_fixture(2000, seed=1)
    model.fit(x, {"answer_logits": y}, batch_size=32, epochs=15, verbose=0)
    x_test, y_test = task1_fixture(500, seed=2)
    predicted = keras.ops.convert_to_numpy(
        model.predict(x_test, verbose=0)["answer_logits"]
    ).argmax(-1)
    assert (predicted == y_test).mean() > 0.95


JAX_OUTPUTS = """
import sys
import numpy as np
import keras
import model.memn2n  # registers MemN2N for loading
assert keras.backend.backend() == "jax", keras.backend.backend()
inputs = dict(np.load(sys.argv[1]))
for path in sys.argv[2:]:
    outputs = keras.saving.load_model(path + ".keras")(inputs)
    np.savez(path + ".jax.npz", **{name: np.asarray(value) for name, value in outputs.items()})
"""


@pytest.mark.e2e  # a second Python process, on the JAX backend
def test_tensorflow_and_jax_backends_agree(tmp_path):
    """The same saved weights give the same outputs under KERAS_BACKEND=jax (a subprocess)."""
    if importlib.util.find_spec("jax") is None:
        pytest.skip("JAX is not installed in this environment (it comes with the dev extra)")
    assert keras.backend.backend() == "tensorflow"
    inputs = batch(stories=4, sentences=3)
    np.savez(tmp_path / "inputs.npz", **inputs)
    expected = {}
    for tying in ("adjacent", "layerwise"):
        model = MemN2N(dataclasses.replace(CONFIG, weight_tying=tying))
        expected[tying] = model(inputs)
        model.save(tmp_path / f"{tying}.keras")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    models = [str(tmp_path / tying) for tying in expected]
    subprocess.run(
        [sys.executable, "-c", JAX_OUTPUTS, str(tmp_path / "inputs.npz"), *models],
        env=env,
        check=True,
        cwd=REPO,
        timeout=300,
    )
    for tying, outputs in expected.items():
        jax_outputs = np.load(tmp_path / f"{tying}.jax.npz")
        for name in ("answer_logits", "attention"):
            np.testing.assert_allclose(
                jax_outputs[name],
                keras.ops.convert_to_numpy(outputs[name]),
                rtol=1e-5,
                atol=1e-6,
                err_msg=f"{tying}: {name}",
            )
