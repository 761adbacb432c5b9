"""Training MemN2N on bAbI as the paper does: SGD, step annealing, clipping, linear start."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import keras
import numpy as np

from model.babi_inputs import BabiArrays
from model.lstm import LSTMBaseline, LSTMConfig, compile_lstm
from model.memn2n import MemN2N, MemN2NConfig, set_linear_start

MODES = ("single", "joint")
Settings = TypeVar("Settings")  # a settings dataclass: BabiTrainConfig or LSTMConfig


@dataclasses.dataclass(frozen=True)
class BabiTrainConfig:
    """The paper's bAbI settings (section 4.2); `paper_defaults(mode)` gives single or joint."""

    embedding_dim: int = 20  # d: 20 single-task, 50 joint
    hops: int = 3
    memory_size: int = 50  # the most recent 50 sentences
    encoding: str = "position"  # PE
    position_scale: float = 2.0  # as the paper's code; see MemN2NConfig
    empty_in_denominator: bool = True  # see MemN2NConfig
    temporal: bool = True
    random_noise: float = 0.1  # RN
    weight_tying: str = "adjacent"
    init_stddev: float = 0.1
    epochs: int = 100  # after linear start: 100 single-task, 60 joint
    learning_rate: float = 0.01
    halve_every: int = 25  # 25 single-task, 15 joint
    batch_size: int = 32
    clipnorm: float = 40.0  # global gradient-norm clipping
    linear_start: bool = True  # LS
    linear_start_learning_rate: float = 0.005
    linear_start_max_epochs: int = 20  # 20 single-task, 30 joint (the paper's code)
    # LS also ends after this many epochs without a new best validation loss. The default (the
    # cap) runs LS for the cap, as the paper's code does: ending it after 3 flat epochs left
    # tasks 2, 6, 9, 15, 16, 18 near chance (BUILD_NOTES.md).
    linear_start_patience: int = 20
    steps_per_execution: int = 1  # training steps per compiled call; speed only
    jit_compile: bool = True  # XLA; speed only

    def __post_init__(self) -> None:
        for name in ("embedding_dim", "hops", "memory_size", "epochs", "halve_every", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0 or self.linear_start_learning_rate <= 0:
            raise ValueError("learning rates must be positive")
        if self.steps_per_execution < 1:
            raise ValueError("steps_per_execution must be at least 1")

    def model_config(self, vocab_size: int, sentence_size: int) -> MemN2NConfig:
        return MemN2NConfig(
            vocab_size=vocab_size,
            sentence_size=sentence_size,
            memory_size=self.memory_size,
            embedding_dim=self.embedding_dim,
            hops=self.hops,
            encoding=self.encoding,
            position_scale=self.position_scale,
            empty_in_denominator=self.empty_in_denominator,
            temporal=self.temporal,
            random_noise=self.random_noise,
            weight_tying=self.weight_tying,
            init_stddev=self.init_stddev,
        )


def override(config: Settings, changes: dict, source: str) -> Settings:
    """A copy of a settings dataclass with `changes`, checked by name and type against it."""
    names = [f.name for f in dataclasses.fields(config)]
    if unknown := sorted(set(changes) - set(names)):
        raise ValueError(f"{source}: unknown setting(s) {unknown}; known: {', '.join(names)}")
    for name, value in changes.items():
        expected = type(getattr(config, name))
        if not (type(value) is expected or (expected is float and type(value) is int)):
            raise ValueError(f"{source}: {name} must be a {expected.__name__}, got {value!r}")
    return dataclasses.replace(config, **changes)


def parse_assignments(config: Settings, assignments: Sequence[str]) -> dict:
    """["epochs=40", "linear_start=false"] -> {"epochs": 40, "linear_start": False}, by type."""
    names = {f.name for f in dataclasses.fields(config)}
    changes = {}
    for assignment in assignments:
        name, equals, text = assignment.partition("=")
        if not equals or name not in names:
            raise ValueError(f"--set {assignment!r}: expected NAME=VALUE with a known NAME")
        current = getattr(config, name)
        try:
            if isinstance(current, bool):
                if text.lower() not in ("true", "false"):
                    raise ValueError(text)
                changes[name] = text.lower() == "true"
            else:
                changes[name] = type(current)(text)
        except ValueError:
            raise ValueError(
                f"--set {assignment!r}: {name} takes a {type(current).__name__}"
            ) from None
    return changes


def read_settings_file(path: str) -> dict:
    """A JSON object of settings, e.g. {"epochs": 40, "embedding_dim": 30}."""
    with open(path) as f:
        changes = json.load(f)
    if not isinstance(changes, dict):
        raise ValueError(f"{path}: expected a JSON object of settings")
    return changes


def paper_defaults(mode: str) -> BabiTrainConfig:
    """Single-task: d=20, 100 epochs halved every 25; joint: d=50, 60 epochs halved every 15."""
    if mode == "single":
        return BabiTrainConfig()
    if mode == "joint":
        return BabiTrainConfig(
            embedding_dim=50,
            epochs=60,
            halve_every=15,
            linear_start_max_epochs=30,
            linear_start_patience=30,
        )
    raise ValueError(f"mode {mode!r} is not one of {MODES}")


class PaperSchedule(keras.callbacks.Callback):
    """LS phase until the validation loss stops falling (no new best for `patience` epochs,
    at most `linear_start_max_epochs`), then step annealing.

    As in the paper's code, a run with LS starts the annealed phase at the LS rate (0.005).
    Training ends after `config.epochs` epochs with the softmax in.
    """

    def __init__(self, config: BabiTrainConfig):
        super().__init__()
        self.config = config
        self.linear = config.linear_start
        self.best_linear_loss = float("inf")
        self.linear_epochs = self.epochs_with_softmax = self.epochs_without_progress = 0
        self.initial_rate = (
            config.linear_start_learning_rate if config.linear_start else config.learning_rate
        )

    @property
    def total_epochs(self) -> int:
        extra = self.config.linear_start_max_epochs if self.config.linear_start else 0
        return self.config.epochs + extra

    @property
    def phase(self) -> str:
        return "linear" if self.linear else "softmax"

    def on_train_begin(self, logs=None) -> None:
        set_linear_start(self.model, self.linear)

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        if self.linear:
            rate = self.config.linear_start_learning_rate
        else:
            rate = self.initial_rate * 0.5 ** (self.epochs_with_softmax // self.config.halve_every)
        self.model.optimizer.learning_rate.assign(rate)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if self.linear:
            self.linear_epochs += 1
            if logs["val_loss"] < self.best_linear_loss:
                self.best_linear_loss, self.epochs_without_progress = logs["val_loss"], 0
            else:
                self.epochs_without_progress += 1
            stopped_falling = self.epochs_without_progress >= self.config.linear_start_patience
            if stopped_falling or self.linear_epochs >= self.config.linear_start_max_epochs:
                self.linear = False
                set_linear_start(self.model, False)
        else:
            self.epochs_with_softmax += 1
            if self.epochs_with_softmax >= self.config.epochs:
                self.model.stop_training = True


class EpochLog(keras.callbacks.Callback):
    """Keeps each epoch's phase, learning rate, losses and seconds, and passes it to `report`."""

    def __init__(self, schedule: PaperSchedule | None, report: Callable[[dict], None] | None):
        super().__init__()
        self.schedule, self.report = schedule, report
        self.history: list[dict] = []

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.phase = self.schedule.phase if self.schedule else "train"
        self.learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        record = {
            "epoch": epoch + 1,
            "phase": self.phase,
            "learning_rate": self.learning_rate,
            "seconds": round(time.perf_counter() - self.start, 3),
            **{key: round(float(value), 5) for key, value in (logs or {}).items()},
        }
        self.history.append(record)
        if self.report:
            self.report(record)


def compile_memn2n(model: MemN2N, config: BabiTrainConfig) -> None:
    """SGD with global gradient-norm clipping on the answer's cross-entropy.

    The loss is summed over the batch, not averaged, as in the paper's code: lr 0.01 and the
    clipping norm 40 are for the gradient of that sum.
    """
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")
    model.compile(
        optimizer=keras.optimizers.SGD(config.learning_rate, global_clipnorm=config.clipnorm),
        loss={"answer_logits": loss},
        steps_per_execution=config.steps_per_execution,
        jit_compile=config.jit_compile,
    )


@dataclasses.dataclass
class TrainResult:
    """A trained model with its record: epochs, time and validation figures."""

    model: keras.Model
    history: list[dict]
    train_seconds: float
    examples_trained: int
    val_loss: float
    val_error: float  # percent

    @property
    def examples_per_sec(self) -> float:
        return self.examples_trained / self.train_seconds


def _fit(
    model: keras.Model,
    train: BabiArrays,
    val: BabiArrays,
    batch_size: int,
    epochs: int,
    epoch_log: EpochLog,
    callbacks: list[keras.callbacks.Callback],
) -> TrainResult:
    """Fit with validation on `val`; the result holds the model and its validation figures."""
    start = time.perf_counter()
    model.fit(
        train.inputs(),
        {"answer_logits": train.answer},
        validation_data=(val.inputs(), {"answer_logits": val.answer}),
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        callbacks=[*callbacks, epoch_log],
        verbose=0,
    )
    seconds = time.perf_counter() - start
    val_loss, val_error = loss_and_error(model, val)
    trained = len(train) * len(epoch_log.history)
    return TrainResult(model, epoch_log.history, seconds, trained, val_loss, val_error)


def train_memn2n(
    train: BabiArrays,
    val: BabiArrays,
    vocab_size: int,
    config: BabiTrainConfig,
    seed: int,
    report: Callable[[dict], None] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> TrainResult:
    """Train one MemN2N from `seed` on `train`, using `val` for the LS switch."""
    keras.utils.set_random_seed(seed)
    model = MemN2N(config.model_config(vocab_size, train.story.shape[-1]), seed=seed)
    compile_memn2n(model, config)
    schedule = PaperSchedule(config)
    log = EpochLog(schedule, report)
    epochs = schedule.total_epochs
    return _fit(model, train, val, config.batch_size, epochs, log, [schedule, *callbacks])


def train_lstm(
    train: BabiArrays,
    val: BabiArrays,
    config: LSTMConfig,
    seed: int,
    report: Callable[[dict], None] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> TrainResult:
    """Train the LSTM baseline from `seed` for `config.epochs` epochs."""
    keras.utils.set_random_seed(seed)
    model = LSTMBaseline(config)
    compile_lstm(model)
    log = EpochLog(None, report)
    return _fit(model, train, val, config.batch_size, config.epochs, log, list(callbacks))


def predict_answers(model: keras.Model, data: BabiArrays) -> np.ndarray:
    """Answer logits for every question, [M, V]."""
    return model.predict(data.inputs(), batch_size=1024, verbose=0)["answer_logits"]


def loss_and_error(model: keras.Model, data: BabiArrays) -> tuple[float, float]:
    """Mean cross-entropy and error in percent over `data`."""
    logits = predict_answers(model, data).astype("float64")
    logits -= logits.max(axis=-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    loss = -log_probs[np.arange(len(data)), data.answer].mean()
    error = 100.0 * (logits.argmax(axis=-1) != data.answer).mean()
    return float(loss), float(error)


def error_per_task(model: keras.Model, data: BabiArrays) -> dict[str, float]:
    """Error in percent for each task present in `data`, keyed "1".."20"."""
    return task_errors(predict_answers(model, data).argmax(axis=-1), data)


def task_errors(answers: np.ndarray, data: BabiArrays) -> dict[str, float]:
    """Error in percent of the answer ids `answers` [M] for each task of `data`."""
    wrong = answers != data.answer
    return {str(t): float(100.0 * wrong[data.task == t].mean()) for t in np.unique(data.task)}
