"""Training MemN2N on bAbI as the paper does: SGD, step annealing, clipping, linear start; and
the LSTM baseline, with the same engine."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from model.babi.inputs import BabiArrays
from model.babi.lstm import LSTMBaseline
from model.babi.settings import BabiTrainConfig, LSTMConfig
from model.engine import Report, Schedule, TrainResult, compile_model, fit
from model.memn2n import MemN2N, MemN2NConfig, set_linear_start

OUTPUT = "answer_logits"


def memn2n_config(config: BabiTrainConfig, vocab_size: int, sentence_size: int) -> MemN2NConfig:
    """The model part of the training settings, for a vocabulary and sentence length J."""
    return MemN2NConfig(
        vocab_size=vocab_size,
        sentence_size=sentence_size,
        memory_size=config.memory_size,
        embedding_dim=config.embedding_dim,
        hops=config.hops,
        encoding=config.encoding,
        position_scale=config.position_scale,
        empty_in_denominator=config.empty_in_denominator,
        temporal=config.temporal,
        random_noise=config.random_noise,
        weight_tying=config.weight_tying,
        init_stddev=config.init_stddev,
    )


def compile_memn2n(model: MemN2N, config: BabiTrainConfig) -> None:
    """SGD on the answer's cross-entropy summed over the batch, as the paper's code: lr 0.01 and
    the clipping norm 40 are for the gradient of that sum (docs/decisions/babi-summed-loss.md)."""
    compile_model(
        model,
        "sgd",
        config.learning_rate,
        config.clipnorm,
        OUTPUT,
        "sum",
        config.jit_compile,
        config.steps_per_execution,
    )


class PaperSchedule(Schedule):
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
    def phase(self) -> str:  # type: ignore[override]
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


class FixedRate(Schedule):
    """The LSTM baseline's schedule: its optimizer's rate for `epochs` epochs."""


def train(
    model: keras.Model,
    train_data: BabiArrays,
    val: BabiArrays,
    batch_size: int,
    epochs: int,
    schedule: Schedule,
    report: Report | None,
    callbacks: Sequence[keras.callbacks.Callback],
) -> TrainResult:
    """Fit with validation on `val`; the result holds the validation loss and error (%)."""
    result = fit(
        model,
        train_data.inputs(),
        {OUTPUT: train_data.answer},
        epochs=epochs,
        schedule=schedule,
        unit="examples",
        per_epoch=len(train_data),
        validation_data=(val.inputs(), {OUTPUT: val.answer}),
        batch_size=batch_size,
        report=report,
        callbacks=callbacks,
    )
    val_loss, val_error = loss_and_error(model, val)
    result.validation = {"loss": val_loss, "error": val_error}
    return result


def train_memn2n(
    train_data: BabiArrays,
    val: BabiArrays,
    vocab_size: int,
    config: BabiTrainConfig,
    seed: int,
    report: Report | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> TrainResult:
    """Train one MemN2N from `seed` on `train_data`, using `val` for the LS switch."""
    keras.utils.set_random_seed(seed)
    sentence_size = train_data.story.shape[-1]
    model = MemN2N(memn2n_config(config, vocab_size, sentence_size), seed=seed)
    compile_memn2n(model, config)
    schedule = PaperSchedule(config)
    epochs = schedule.total_epochs
    return train(model, train_data, val, config.batch_size, epochs, schedule, report, callbacks)


def train_lstm(
    train_data: BabiArrays,
    val: BabiArrays,
    config: LSTMConfig,
    seed: int,
    report: Report | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> TrainResult:
    """Train the LSTM baseline from `seed` for `config.epochs` epochs (Adam, mean loss)."""
    keras.utils.set_random_seed(seed)
    model = LSTMBaseline(config)
    compile_model(
        model, "adam", config.learning_rate, config.clipnorm, OUTPUT, "mean", config.jit_compile
    )
    return train(
        model, train_data, val, config.batch_size, config.epochs, FixedRate(), report, callbacks
    )


def train_model(
    train_data: BabiArrays,
    val: BabiArrays,
    vocab_size: int,
    config: BabiTrainConfig | LSTMConfig,
    seed: int,
    report: Report | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> TrainResult:
    """MemN2N or the LSTM baseline (already sized for the data), as the settings' type says."""
    if isinstance(config, BabiTrainConfig):
        return train_memn2n(train_data, val, vocab_size, config, seed, report, callbacks)
    return train_lstm(train_data, val, config, seed, report, callbacks)


def predict_answers(model: keras.Model, data: BabiArrays) -> np.ndarray:
    """Answer logits for every question, [M, V]."""
    return model.predict(data.inputs(), batch_size=1024, verbose=0)[OUTPUT]


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
