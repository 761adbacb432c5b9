"""The one training engine of both experiments: compile with global gradient-norm clipping, fit
under a schedule callback, log every epoch, and return a result record."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import keras

from model.checkpoint import RunCheckpoint
from model.optimizers import SGD, Adam, SeedwiseSGD, SparseSGD
from model.settings import Reduction

Optimizer = Literal["sgd", "adam"]
Report = Callable[[dict], None]


def compile_model(
    model: keras.Model,
    optimizer: Optimizer,
    learning_rate: float,
    clipnorm: float,
    output: str,
    reduction: Reduction,
    jit_compile: bool,
    steps_per_execution: int = 1,
    seeds: int = 0,
) -> None:
    """`optimizer` at `learning_rate` with the global gradient norm clipped at `clipnorm`, on the
    cross-entropy of the logits `output` against word ids, summed or averaged over the batch.

    With "sum" (the paper's code) the rate and the clip apply to the gradient of that sum. A
    model stacking `seeds` seeds trains with SeedwiseSGD: the clip and a rate for each seed; SGD
    without XLA is SparseSGD, which updates only the embedding rows a step looked up."""
    loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction="sum" if reduction == "sum" else "sum_over_batch_size"
    )
    if seeds:
        if optimizer != "sgd":
            raise ValueError(f"a stack of seeds trains with sgd, not {optimizer}")
        chosen: keras.optimizers.Optimizer = SeedwiseSGD(seeds, clipnorm)
    elif optimizer == "sgd" and not jit_compile:
        chosen = SparseSGD(learning_rate, clipnorm)
    else:
        optimizers = {"sgd": SGD, "adam": Adam}
        chosen = optimizers[optimizer](learning_rate, global_clipnorm=clipnorm)
    model.compile(
        optimizer=chosen,
        loss={output: loss},
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )


class Schedule(keras.callbacks.Callback):
    """What may set the learning rate at each epoch's start and end training (a subclass's
    callbacks); `phase` names the part of the schedule an epoch is in, for the epoch log."""

    phase = "train"

    def learning_rate(self) -> float | list[float]:
        """The rate the epoch trains at, for the epoch log."""
        return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def get_state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the schedule (model.checkpoint.Stateful)."""
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        """Take back what `get_state` gave."""


class EpochLog(keras.callbacks.Callback):
    """Keeps each epoch's phase, learning rate, logs and seconds (validation included), with
    `unit`s per second over `per_epoch` of them, passes the record to `report`, then writes the
    run's checkpoint, if it has one."""

    def __init__(
        self,
        schedule: Schedule,
        unit: str,
        per_epoch: int,
        report: Report | None,
        checkpoint: RunCheckpoint | None = None,
    ):
        super().__init__()
        self.schedule, self.unit, self.per_epoch, self.report = schedule, unit, per_epoch, report
        self.checkpoint = checkpoint
        saved = checkpoint.saved if checkpoint else None
        self.history: list[dict] = list(saved["history"]) if saved else []
        self.seconds: float = saved["seconds"] if saved else 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.phase = self.schedule.phase
        self.learning_rate = self.schedule.learning_rate()
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        seconds = time.perf_counter() - self.start
        record = {
            "epoch": epoch + 1,
            "phase": self.phase,
            "learning_rate": self.learning_rate,
            "seconds": round(seconds, 3),
            f"{self.unit}_per_sec": round(self.per_epoch / seconds, 1),
            **{key: round(float(value), 5) for key, value in (logs or {}).items()},
        }
        self.history.append(record)
        self.seconds += seconds
        if self.report:
            self.report(record)
        if self.checkpoint:
            ended = bool(self.model.stop_training)
            self.checkpoint.save(self.model, epoch + 1, self.history, self.seconds, ended)


NOT_METRICS = ("epoch", "phase", "learning_rate", "seconds")
PER_SEC = "_per_sec"


def describe_epoch(record: dict) -> str:
    """An epoch record of `EpochLog` as a line a person reads, figures rounded: "epoch 3
    (linear): loss 251.6, val_loss 1.406, lr 0.005; 14.5 s, 6,219 examples/s"."""
    metrics, speeds = [], [f"{record['seconds']:.1f} s"]
    for name, value in record.items():
        if name.endswith(PER_SEC):
            speeds.append(f"{value:,.0f} {name.removesuffix(PER_SEC)}/s")
        elif name not in NOT_METRICS:
            metrics.append(f"{name} {value:.4g}")
    rates = record.get("learning_rate")
    if rates is not None:
        rates = sorted(set(rates)) if isinstance(rates, list) else [rates]
        metrics.append(
            "lr " + " to ".join(f"{r:.3g}" for r in dict.fromkeys([rates[0], rates[-1]]))
        )
    phase = f" ({record['phase']})" if record.get("phase", "train") != "train" else ""
    return f"epoch {record['epoch']}{phase}: {', '.join(metrics)}; {', '.join(speeds)}"


@dataclasses.dataclass
class TrainResult:
    """A trained model with its record: epochs, time, throughput and validation figures."""

    model: keras.Model
    history: list[dict]
    train_seconds: float
    trained: int  # training examples (bAbI) or tokens (language models) seen
    unit: str  # "examples" or "tokens"
    validation: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.trained / self.train_seconds


def fit(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    epochs: int,
    schedule: Schedule,
    unit: str,
    per_epoch: int,
    validation_data: Any = None,
    batch_size: int | None = None,
    report: Report | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    fit_per_epoch: bool = False,
    shuffle: bool = True,
    checkpoint: RunCheckpoint | None = None,
) -> TrainResult:
    """Train for at most `epochs` epochs (the schedule may stop sooner); `callbacks` (e.g.
    TensorBoard) run after the schedule and before the epoch log. `shuffle`: Keras shuffles
    arrays, and the order of a PyDataset's batches (with Python's `random`).

    With a `checkpoint`, every epoch's end is saved, and a saved run continues from its last
    epoch (or, if it had ended, is only restored); its time counts the saved epochs' seconds.

    `fit_per_epoch` calls Keras's fit once per epoch. Keras reshuffles a PyDataset each time a
    fit starts, so this keeps the data order, and so the results, of the language models' runs
    made before the engine existed (docs/decisions/one-training-engine.md)."""
    log = EpochLog(schedule, unit, per_epoch, report, checkpoint)
    fit_args = {
        "validation_data": validation_data,
        "batch_size": batch_size,
        "shuffle": shuffle,
        "callbacks": [schedule, *callbacks, log],
        "verbose": 0,
    }
    start = time.perf_counter()
    first = checkpoint.initial_epoch if checkpoint else 0
    if checkpoint:  # before fit: Keras's fit moves a PyDataset on an epoch as it starts
        checkpoint.restore(model, first_inputs(x))
    if checkpoint and checkpoint.saved and checkpoint.saved["ended"]:
        pass  # the saved run had finished: nothing left to train
    elif fit_per_epoch:
        for epoch in range(first, epochs):
            model.fit(x, y, initial_epoch=epoch, epochs=epoch + 1, **fit_args)
            if model.stop_training:
                break
    else:
        model.fit(x, y, initial_epoch=first, epochs=epochs, **fit_args)
    saved_seconds = checkpoint.saved["seconds"] if checkpoint and checkpoint.saved else 0.0
    seconds = saved_seconds + time.perf_counter() - start
    return TrainResult(model, log.history, seconds, per_epoch * len(log.history), unit)


def first_inputs(x: Any) -> Any:
    """The inputs of the first batch of training data `x` (a PyDataset, a tf.data dataset of
    (inputs, targets) or a dict of arrays), to build a model on."""
    if isinstance(x, keras.utils.PyDataset):
        return x[0][0]
    if isinstance(x, dict):
        return {name: values[:1] for name, values in x.items()}
    return next(iter(x))[0]
