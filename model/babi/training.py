"""Training MemN2N on bAbI as the paper does: SGD, step annealing, clipping, linear start; and
the LSTM baseline, with the same engine."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence

import keras
import numpy as np

from model.attention_settings import attention_of
from model.babi.batches import SentenceBatches
from model.babi.inputs import BabiArrays
from model.babi.lstm import LSTMBaseline
from model.babi.settings import BabiTrainConfig, LSTMConfig
from model.checkpoint import Checkpoints, RunCheckpoint, fingerprint
from model.engine import Report, Schedule, TrainResult, compile_model, fit
from model.memn2n import MemN2N, MemN2NConfig, set_linear_start, unstack
from model.stacking import FollowEpochs, SeedBatches, replicas_in_sync

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
        temporal_grid=config.temporal_grid,
        random_noise=config.random_noise,
        weight_tying=config.weight_tying,
        init_stddev=config.init_stddev,
        **attention_of(config),
    )


def compile_memn2n(model: MemN2N, config: BabiTrainConfig, seeds: int = 0) -> None:
    """SGD on the answer's cross-entropy summed over the batch, as the paper's code: lr 0.01 and
    the clipping norm 40 are for the gradient of that sum (docs/decisions/babi-summed-loss.md);
    a model stacking `seeds` seeds clips and steps each seed on its own."""
    compile_model(
        model,
        "sgd",
        config.learning_rate,
        config.clipnorm,
        OUTPUT,
        "sum",
        config.jit_compile,
        config.steps_per_execution,
        seeds,
    )


@dataclasses.dataclass
class PaperPhase:
    """One seed's place in the paper's schedule: LS until the validation loss stops falling (no
    new best for `patience` epochs, at most `linear_start_max_epochs`), then `epochs` epochs with
    the softmax, the rate halved every `halve_every`.

    As in the paper's code, a run with LS starts the annealed phase at the LS rate (0.005)."""

    config: BabiTrainConfig
    linear: bool = True
    linear_epochs: int = 0
    epochs_with_softmax: int = 0
    epochs_without_progress: int = 0
    best_linear_loss: float = math.inf

    def __post_init__(self) -> None:
        self.linear = self.linear and self.config.linear_start

    @property
    def phase(self) -> str:
        return "linear" if self.linear else "softmax"

    @property
    def finished(self) -> bool:
        return not self.linear and self.epochs_with_softmax >= self.config.epochs

    def rate(self) -> float:
        """This epoch's learning rate; 0 once the schedule has finished."""
        config = self.config
        if self.finished:
            return 0.0
        if self.linear:
            return config.linear_start_learning_rate
        initial = config.linear_start_learning_rate if config.linear_start else config.learning_rate
        return initial * 0.5 ** (self.epochs_with_softmax // config.halve_every)

    def end_epoch(self, val_loss: float) -> None:
        """Count the epoch just trained; LS ends when its loss stopped falling or at its cap."""
        if not self.linear:
            self.epochs_with_softmax += 1
            return
        self.linear_epochs += 1
        if val_loss < self.best_linear_loss:
            self.best_linear_loss, self.epochs_without_progress = val_loss, 0
        else:
            self.epochs_without_progress += 1
        stopped_falling = self.epochs_without_progress >= self.config.linear_start_patience
        if stopped_falling or self.linear_epochs >= self.config.linear_start_max_epochs:
            self.linear = False


class PaperSchedule(Schedule):
    """Each seed of a stack follows its own PaperPhase: after every epoch the validation split
    is scored for every seed, and training stops once every seed has finished its schedule.

    `histories` holds each seed's epochs: phase, rate, validation loss and error (%)."""

    def __init__(self, config: BabiTrainConfig, seeds: int, validation: BabiArrays):
        super().__init__()
        self.phases = [PaperPhase(config) for _ in range(seeds)]
        self.validation = validation
        self.histories: list[list[dict]] = [[] for _ in range(seeds)]

    @property
    def phase(self) -> str:  # type: ignore[override]
        phases = {p.phase for p in self.phases if not p.finished}
        return phases.pop() if len(phases) == 1 else "mixed"

    def learning_rate(self) -> list[float]:
        return [p.rate() for p in self.phases]

    def get_state(self) -> dict:
        counters = [dataclasses.asdict(p) for p in self.phases]
        return {
            "phases": [{k: v for k, v in c.items() if k != "config"} for c in counters],
            "histories": self.histories,
        }

    def set_state(self, state: dict) -> None:
        self.phases = [
            dataclasses.replace(p, **c) for p, c in zip(self.phases, state["phases"], strict=True)
        ]
        self.histories = state["histories"]

    def on_train_begin(self, logs=None) -> None:
        set_linear_start(self.model, [p.linear for p in self.phases])

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.model.optimizer.seed_rates.assign(self.learning_rate())
        set_linear_start(self.model, [p.linear for p in self.phases])
        self.training: list[tuple[str, float] | None] = [
            (p.phase, p.rate()) if not p.finished else None for p in self.phases
        ]
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        losses, errors = seed_loss_and_error(self.model, self.validation)
        seconds = round(time.perf_counter() - self.start, 3)
        for s, (phase, trained) in enumerate(zip(self.phases, self.training, strict=True)):
            if trained is None:  # finished before this epoch
                continue
            name, rate = trained
            record = {"epoch": epoch + 1, "phase": name, "learning_rate": rate, "seconds": seconds}
            record.update(val_loss=round(losses[s], 5), val_error=round(errors[s], 2))
            self.histories[s].append(record)
            phase.end_epoch(losses[s])
        if logs is not None:
            logs["val_loss"] = float(np.mean(losses))
        if all(p.finished for p in self.phases):
            self.model.stop_training = True


class FixedRate(Schedule):
    """The LSTM baseline's schedule: its optimizer's rate for `epochs` epochs."""


def most_epochs(config: BabiTrainConfig) -> int:
    """The longest a seed's schedule can run: every LS epoch allowed, then `epochs`."""
    return config.epochs + (config.linear_start_max_epochs if config.linear_start else 0)


def train_memn2n(
    train_data: BabiArrays,
    val: BabiArrays,
    vocab_size: int,
    config: BabiTrainConfig,
    seeds: Sequence[int],
    report: Report | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    checkpoints: Checkpoints | None = None,
    name: str = "memn2n",
    batches: SentenceBatches | None = None,
) -> list[TrainResult]:
    """Train one MemN2N per seed, all in one stack, on `train_data`, using `val` for the LS
    switch; each result holds its seed's model, epochs, share of the time and validation.
    With `checkpoints`, the stack's run `name` is saved each epoch and resumed from there.
    `batches` (of `train_data`'s questions; one replica only) replaces the default ones, e.g.
    to redraw the memories each epoch."""
    seeds = tuple(seeds)
    replicas = replicas_in_sync()  # a replica gets a slice of the batch, and a sentence table
    # serves the whole batch: with several, each question brings its own story instead
    if batches is not None and replicas > 1:
        raise ValueError(
            f"train_memn2n: `batches` ({type(batches).__name__}) read one sentence table per "
            f"batch, which {replicas} replicas would split; leave `batches` out"
        )
    keras.utils.set_random_seed(seeds[0])
    sentence_size = train_data.story.shape[-1]
    stack = MemN2N(memn2n_config(config, vocab_size, sentence_size), seeds=seeds)
    compile_memn2n(stack, config, len(seeds))
    schedule = PaperSchedule(config, len(seeds), val)
    answers, size = {OUTPUT: train_data.answer}, config.batch_size
    if batches is None:
        batches = (
            SeedBatches(train_data.inputs(), answers, seeds, size)
            if replicas > 1
            else SentenceBatches(train_data, seeds, size, OUTPUT)
        )
    checkpoint = open_checkpoint(checkpoints, name, config, seeds, train_data, val, schedule)
    result = fit(
        stack,
        batches.for_fit(),
        epochs=most_epochs(config),
        schedule=schedule,
        unit="examples",
        per_epoch=len(seeds) * len(train_data),
        report=report,
        callbacks=[FollowEpochs(batches), *callbacks],
        shuffle=False,  # the batches hold each seed's own order
        checkpoint=checkpoint,
    )
    losses, errors = seed_loss_and_error(stack, val)
    share = result.train_seconds / len(seeds)
    return [
        TrainResult(
            unstack(stack, s),
            history,
            share,
            len(history) * len(train_data),
            "examples",
            {"loss": losses[s], "error": errors[s]},
        )
        for s, history in enumerate(schedule.histories)
    ]


def train_lstm(
    train_data: BabiArrays,
    val: BabiArrays,
    config: LSTMConfig,
    seed: int,
    report: Report | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    checkpoints: Checkpoints | None = None,
    name: str = "lstm",
) -> TrainResult:
    """Train the LSTM baseline from `seed` for `config.epochs` epochs (Adam, mean loss), reading
    the examples in `epoch_order(seed, epoch)`; with `checkpoints`, as run `name`-seed`seed`."""
    keras.utils.set_random_seed(seed)
    model = LSTMBaseline(config)
    compile_model(
        model, "adam", config.learning_rate, config.clipnorm, OUTPUT, "mean", config.jit_compile
    )
    schedule = FixedRate()
    batches = SeedBatches(
        train_data.inputs(), {OUTPUT: train_data.answer}, [seed], config.batch_size, stacked=False
    )
    checkpoint = open_checkpoint(
        checkpoints, f"{name}-seed{seed}", config, [seed], train_data, val, schedule
    )
    result = fit(
        model,
        batches.for_fit(),
        epochs=config.epochs,
        schedule=schedule,
        unit="examples",
        per_epoch=len(train_data),
        validation_data=(val.inputs(), {OUTPUT: val.answer}),
        report=report,
        callbacks=[FollowEpochs(batches), *callbacks],
        shuffle=False,  # the batches hold the seed's order
        checkpoint=checkpoint,
    )
    val_loss, val_error = loss_and_error(predict_answers(result.model, val), val)
    result.validation = {"loss": val_loss, "error": val_error}
    return result


def open_checkpoint(
    checkpoints: Checkpoints | None,
    name: str,
    config: BabiTrainConfig | LSTMConfig,
    seeds: Sequence[int],
    train_data: BabiArrays,
    val: BabiArrays,
    schedule: Schedule,
) -> RunCheckpoint | None:
    """Run `name`'s checkpoint, fingerprinted by its settings, seeds and both splits."""
    if checkpoints is None:
        return None
    data = {
        f"{split}.{field.name}": getattr(arrays, field.name)
        for split, arrays in (("train", train_data), ("eval", val))
        for field in dataclasses.fields(arrays)
    }
    return checkpoints.open(name, fingerprint(config, seeds, data), {"schedule": schedule})


def train_model(
    train_data: BabiArrays,
    val: BabiArrays,
    vocab_size: int,
    config: BabiTrainConfig | LSTMConfig,
    seeds: Sequence[int],
    report: Report | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    checkpoints: Checkpoints | None = None,
    name: str | None = None,
) -> list[TrainResult]:
    """MemN2N (every seed in one stack) or the LSTM baseline (one seed after another), already
    sized for the data, as the settings' type says; a result per seed. `name` names the runs'
    checkpoints (default: the model's kind)."""
    if isinstance(config, BabiTrainConfig):
        return train_memn2n(
            train_data,
            val,
            vocab_size,
            config,
            seeds,
            report,
            callbacks,
            checkpoints,
            name or "memn2n",
        )
    return [
        train_lstm(train_data, val, config, seed, report, callbacks, checkpoints, name or "lstm")
        for seed in seeds
    ]


def predict_answers(model: keras.Model, data: BabiArrays) -> np.ndarray:
    """Answer logits for every question, [M, V] (a stack's: [M, S, V])."""
    return model.predict(data.inputs(), batch_size=1024, verbose=0)[OUTPUT]


def loss_and_error(logits: np.ndarray, data: BabiArrays) -> tuple[float, float]:
    """Mean cross-entropy and error in percent of answer logits [M, V] over `data`."""
    logits = logits.astype("float64")
    logits -= logits.max(axis=-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    loss = -log_probs[np.arange(len(data)), data.answer].mean()
    error = 100.0 * (logits.argmax(axis=-1) != data.answer).mean()
    return float(loss), float(error)


def seed_loss_and_error(stack: keras.Model, data: BabiArrays) -> tuple[list[float], list[float]]:
    """Each seed's mean cross-entropy and error in percent over `data`, one pass for all."""
    logits = predict_answers(stack, data)  # [M, S, V]
    figures = [loss_and_error(logits[:, s], data) for s in range(logits.shape[1])]
    return [loss for loss, _ in figures], [error for _, error in figures]


def task_errors(answers: np.ndarray, data: BabiArrays) -> dict[str, float]:
    """Error in percent of the answer ids `answers` [M] for each task of `data`."""
    wrong = answers != data.answer
    return {str(t): float(100.0 * wrong[data.task == t].mean()) for t in np.unique(data.task)}
