"""Resumable runs: a training process killed in the middle of an epoch, started again from its
checkpoint, ends where the uninterrupted run ends; a checkpoint of other settings is refused."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from model.babi.settings import BabiTrainConfig
from model.babi.training import train_memn2n
from model.checkpoint import Checkpoints, ResumeRefusedError, fingerprint
from model.engine import TrainResult
from model.lm.inputs import LMVocabulary, token_stream
from model.lm.settings import LMTrainConfig
from model.lm.training import train_lm

TESTS = pathlib.Path(__file__).resolve().parent
KILL_AT = (2, 3)  # (epoch, batch), counted from 0: two epochs are saved, the third is cut short

BABI = BabiTrainConfig(
    memory_size=6,
    epochs=2,
    linear_start_max_epochs=3,
    linear_start_patience=1,  # the seeds leave LS at different epochs
    batch_size=16,
    random_noise=0.2,  # draws from each seed's generator every step
    jit_compile=False,
)
LM = LMTrainConfig(
    embedding_dim=16,
    linear_units=8,
    hops=2,
    memory_size=5,
    batch_size=16,
    learning_rate=0.1,
    epochs=4,
    jit_compile=False,
)


class KillAt(keras.callbacks.Callback):
    """Kills its own process, with no chance to clean up, after batch `batch` of `epoch` (or the
    first batch after it that Keras reports, with several steps per call)."""

    def __init__(self, epoch: int, batch: int):
        super().__init__()
        self.at, self.epoch = (epoch, batch), -1

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        if self.epoch == self.at[0] and batch >= self.at[1]:
            os.kill(os.getpid(), signal.SIGKILL)


def babi_run(checkpoints: Checkpoints | None, callbacks=()) -> list[TrainResult]:
    from test_stacking import small_task

    train, val = small_task(120, seed=0), small_task(40, seed=1)
    return train_memn2n(train, val, 20, BABI, (1, 2), None, callbacks, checkpoints)


def lm_run(checkpoints: Checkpoints | None, callbacks=(), config=LM) -> list[TrainResult]:
    vocabulary = LMVocabulary.from_tokens("a b c d e f".split())
    rng = np.random.default_rng(0)
    stream = token_stream(list(rng.choice(list("abcdef"), 400)), vocabulary)
    return [
        train_lm(stream, stream[:120], len(vocabulary), config, 1, None, callbacks, checkpoints)
    ]


RUNS = {"babi": babi_run, "lm": lm_run}


def killed_mid_epoch(case: str, directory: pathlib.Path) -> None:
    """Run `case` with checkpoints in `directory` in a new process and kill it mid-epoch."""
    script = (
        f"import sys; sys.path[:0] = [{str(TESTS.parent)!r}, {str(TESTS)!r}]\n"
        "import test_resume as t\n"
        "from model.checkpoint import Checkpoints\n"
        f"t.RUNS[{case!r}](Checkpoints({str(directory)!r}), [t.KillAt(*t.KILL_AT)])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]


def same_run(resumed: list[TrainResult], uninterrupted: list[TrainResult], figure: str) -> None:
    for mine, theirs in zip(resumed, uninterrupted, strict=True):
        assert [r["epoch"] for r in mine.history] == [r["epoch"] for r in theirs.history]
        assert [r["learning_rate"] for r in mine.history] == [
            r["learning_rate"] for r in theirs.history
        ]
        np.testing.assert_allclose(
            [r[figure] for r in mine.history], [r[figure] for r in theirs.history], rtol=1e-5
        )
        for a, b in zip(mine.model.weights, theirs.model.weights, strict=True):
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-6
            )


@pytest.mark.e2e  # two short trainings and a killed process per case
@pytest.mark.parametrize("case", ["babi", "lm"])
def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(case, tmp_path):
    killed_mid_epoch(case, tmp_path)
    (saved,) = list(tmp_path.glob("*.npz"))
    with np.load(saved) as stored:
        meta = json.loads(stored["meta.json"].tobytes())
    assert meta["epoch"] == KILL_AT[0] and not meta["ended"]

    resumed = RUNS[case](Checkpoints(str(tmp_path)))
    uninterrupted = RUNS[case](None)
    same_run(resumed, uninterrupted, "val_loss" if case == "babi" else "valid_perplexity")
    if case == "babi":  # each seed's own schedule came back too
        for mine, theirs in zip(resumed, uninterrupted, strict=True):
            assert [r["phase"] for r in mine.history] == [r["phase"] for r in theirs.history]
    else:
        assert resumed[0].validation == pytest.approx(uninterrupted[0].validation, rel=1e-5)

    again = RUNS[case](Checkpoints(str(tmp_path)))  # the run had ended: restored, not trained
    same_run(again, uninterrupted, "val_loss" if case == "babi" else "valid_perplexity")


def test_an_lm_run_saved_under_fewer_epochs_continues_to_a_higher_bound(tmp_path):
    short = dataclasses.replace(LM, epochs=2)
    lm_run(Checkpoints(str(tmp_path)), config=short)
    extended = lm_run(Checkpoints(str(tmp_path)))  # LM: epochs=4, from the saved epoch 2
    same_run(extended, lm_run(None), "valid_perplexity")
    # epochs only bounds an LM run; a lower bound than the saved run's is another run
    with pytest.raises(ResumeRefusedError, match="settings field 'epochs' changed: 4 .* 2 now"):
        lm_run(Checkpoints(str(tmp_path)), config=short)


def test_a_checkpoint_of_other_settings_or_data_is_refused_naming_what_changed(tmp_path):
    data = {"train": np.arange(10)}
    run = fingerprint(BABI, [1, 2], data)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    model.optimizer.build(model.trainable_variables)
    Checkpoints(str(tmp_path)).open("run", run, {}).save(model, 1, [], 1.0, ended=False)

    changed = fingerprint(dataclasses.replace(BABI, hops=2), [1, 2], data)
    with pytest.raises(ResumeRefusedError, match="settings field 'hops' changed: 3 .* 2 now"):
        Checkpoints(str(tmp_path)).open("run", changed, {})
    longer = fingerprint(dataclasses.replace(BABI, epochs=3), [1, 2], data)  # schedules read it
    with pytest.raises(ResumeRefusedError, match="settings field 'epochs' changed: 2 .* 3 now"):
        Checkpoints(str(tmp_path)).open("run", longer, {})
    other_data = fingerprint(BABI, [1, 2], {"train": np.arange(11)})
    with pytest.raises(ResumeRefusedError, match="the training data changed"):
        Checkpoints(str(tmp_path)).open("run", other_data, {})
    with pytest.raises(ResumeRefusedError, match=r"seeds changed: \[1, 2\] .* \[1\] now"):
        Checkpoints(str(tmp_path)).open("run", fingerprint(BABI, [1], data), {})
    # The Trainer's rule: the same run continues, any other starts afresh.
    assert Checkpoints(str(tmp_path), "if_same").open("run", changed, {}).saved is None
    assert Checkpoints(str(tmp_path), "if_same").open("run", run, {}).initial_epoch == 1
    assert Checkpoints(str(tmp_path), "never").open("run", run, {}).saved is None
