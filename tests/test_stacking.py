"""Several seeds in one stack: the optimizer, the data order, and a stack that trains each seed
exactly as the seed would train alone."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from model.babi.batches import SentenceBatches
from model.babi.inputs import BabiArrays
from model.babi.settings import BabiTrainConfig
from model.babi.training import train_memn2n
from model.optimizers import SeedwiseSGD
from model.stacking import SeedBatches, epoch_order


def test_each_seed_is_clipped_and_stepped_on_its_own():
    weights = keras.Variable(np.zeros((3, 2), "float32"))  # seed axis first
    optimizer = SeedwiseSGD(seeds=3, clipnorm=1.0)
    optimizer.seed_rates.assign([0.5, 0.5, 0.0])
    grads = np.array([[3.0, 4.0], [0.3, 0.4], [3.0, 4.0]], "float32")  # norms 5, 0.5, 5
    optimizer.apply([grads], [weights])
    # Seed 0 clipped to norm 1, seed 1 under the clip, seed 2 frozen by its rate of 0.
    expected = [[-0.3, -0.4], [-0.15, -0.2], [0.0, 0.0]]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(weights), expected, rtol=1e-6)


def test_each_seed_reads_every_example_once_an_epoch_in_its_own_order():
    inputs = {"x": np.arange(10)[:, None] * np.ones((10, 2), "int32")}
    batches = SeedBatches(inputs, {"y": np.arange(10)}, seeds=(1, 2), batch_size=4)
    assert len(batches) == 3
    for epoch in (0, 1):
        batches.epoch = epoch
        seen = np.concatenate([batches[i][1]["y"] for i in range(len(batches))])  # [M, S]
        assert seen.shape == (10, 2)
        for column, seed in enumerate((1, 2)):
            np.testing.assert_array_equal(seen[:, column], epoch_order(seed, epoch, 10))
        assert batches[0][0]["x"].shape == (4, 2, 2)
    assert not np.array_equal(epoch_order(1, 0, 10), epoch_order(1, 1, 10))
    assert not np.array_equal(epoch_order(1, 0, 10), epoch_order(2, 0, 10))


def small_task(count: int, seed: int) -> BabiArrays:
    """Stories of 4 three-word sentences; the answer is the most recent sentence's first word."""
    rng = np.random.default_rng(seed)
    story = np.zeros((count, 6, 4), "int32")
    story[:, :4, :3] = rng.integers(2, 20, (count, 4, 3))
    query = np.zeros((count, 4), "int32")
    query[:, :2] = rng.integers(2, 20, (count, 2))
    return BabiArrays(story, query, story[:, 0, 0].copy(), np.ones(count, "int32"))


@pytest.mark.e2e  # three short trainings
def test_a_two_seed_stack_trains_each_seed_as_it_trains_alone():
    """Own initialisation, data order, random noise, clipping and schedule: seeds 1 and 2
    stacked end where each ends alone (same validation losses every epoch, same weights)."""
    config = BabiTrainConfig(
        memory_size=6,
        epochs=2,
        linear_start_max_epochs=3,
        linear_start_patience=1,  # LS ends at different epochs for different seeds
        batch_size=16,
        clipnorm=1.0,  # binds on some steps
        jit_compile=False,  # the same steps without an XLA compile per table size
    )
    train, val = small_task(120, seed=0), small_task(40, seed=1)
    stacked = train_memn2n(train, val, 20, config, seeds=(1, 2))
    for result, seed in zip(stacked, (1, 2), strict=True):
        (alone,) = train_memn2n(train, val, 20, config, seeds=(seed,))
        assert [r["phase"] for r in result.history] == [r["phase"] for r in alone.history]
        np.testing.assert_allclose(
            [r["val_loss"] for r in result.history],
            [r["val_loss"] for r in alone.history],
            atol=1e-4,
        )
        for mine, theirs in zip(result.model.weights, alone.model.weights, strict=True):
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(theirs), atol=1e-5
            )
    assert stacked[0].history != stacked[1].history


def test_sentence_batches_are_refused_when_several_replicas_would_split_their_table(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr("model.babi.training.replicas_in_sync", lambda: 2)
    train = small_task(8, seed=0)
    batches = SentenceBatches(train, (1,), 4, "answer")
    with pytest.raises(ValueError, match="2 replicas would split"):
        train_memn2n(train, train, 20, BabiTrainConfig(memory_size=6), (1,), batches=batches)
