"""Training the language models as the paper does: SGD, the learning rate divided by 1.5 when
validation perplexity stops improving, stop below a minimum rate; perplexity on a whole split."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import keras
import numpy as np

from model.attention_settings import attention_of
from model.checkpoint import Checkpoints, fingerprint
from model.engine import Report, Schedule, TrainResult, compile_model, fit
from model.lm.inputs import RunBatches, SequenceBatches
from model.lm.lstm import LSTMLM, LSTMLMConfig
from model.lm.memn2n import MemN2NLM, MemN2NLMConfig
from model.lm.settings import LMTrainConfig

SCORING_BATCH = 512
OUTPUT = "logits"


def build_model(config: LMTrainConfig, vocab_size: int, seed: int) -> keras.Model:
    """The MemN2N LM or the LSTM LM of the settings, for a vocabulary."""
    if config.model == "lstm":
        return LSTMLM(
            LSTMLMConfig(
                vocab_size, config.lstm_embedding_dim, config.lstm_units, config.init_stddev
            )
        )
    memn2n = MemN2NLMConfig(
        vocab_size,
        config.memory_size,
        config.embedding_dim,
        config.hops,
        config.linear_units,
        init_stddev=config.init_stddev,
        **attention_of(config),
    )
    return MemN2NLM(memn2n, seed=seed)


def batches(
    config: LMTrainConfig, stream: np.ndarray, training: bool, seed: int = 0
) -> keras.utils.PyDataset:
    """Training batches (shuffled) or scoring batches (every word once, in order)."""
    size = config.batch_size if training else SCORING_BATCH
    if config.model == "lstm":
        warmup = 0 if training else config.sequence_length
        return SequenceBatches(stream, config.sequence_length, size, training, warmup, seed)
    if not training:  # a whole number of runs
        size = max(SCORING_BATCH // config.run_length, 1) * config.run_length
    return RunBatches(stream, config.memory_size, config.run_length, size, training, seed)


def negative_log_likelihood(
    model: keras.Model, scoring: keras.utils.PyDataset
) -> tuple[float, int]:
    """Summed NLL (nats) of every weighted target, and how many there were."""
    total, count = 0.0, 0
    for index in range(len(scoring)):
        inputs, targets, weights = scoring[index]
        logits = keras.ops.convert_to_numpy(model(inputs)[OUTPUT]).astype("float64")
        top = logits.max(axis=-1, keepdims=True)
        log_norm = np.log(np.exp(logits - top).sum(axis=-1)) + top[..., 0]  # [B] or [B, T]
        picked = np.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
        total += float(((log_norm - picked) * weights).sum())
        count += int(weights.sum())
    return total, count


def perplexity(model: keras.Model, stream: np.ndarray, config: LMTrainConfig) -> float:
    """exp(mean NLL) over every word of a split's stream."""
    total, count = negative_log_likelihood(model, batches(config, stream, training=False))
    return math.exp(total / count)


def compile_lm(model: keras.Model, config: LMTrainConfig) -> None:
    """SGD on the next-word cross-entropy, summed (or averaged) over the weighted targets."""
    compile_model(
        model,
        "sgd",
        config.learning_rate,
        config.clipnorm,
        OUTPUT,
        config.loss_reduction,
        config.jit_compile,
        config.steps_per_execution,
    )


class AnnealOnPlateau(Schedule):
    """After each epoch, scores the validation stream and, as the paper's code, divides the rate
    by `anneal_factor` when it did not improve on the previous epoch's by 0.01%; stops when the
    rate falls below the minimum. `best_weights` are the best epoch's."""

    def __init__(self, config: LMTrainConfig, valid_stream: np.ndarray, targets_per_batch: float):
        super().__init__()
        self.config, self.valid_stream = config, valid_stream
        self.targets_per_batch = targets_per_batch
        self.rate, self.previous, self.best = config.learning_rate, math.inf, math.inf
        self.best_weights: list | None = None

    def get_state(self) -> dict:
        best = {f"best_weights.{i}": w for i, w in enumerate(self.best_weights or [])}
        return {"rate": self.rate, "previous": self.previous, "best": self.best, **best}

    def set_state(self, state: dict) -> None:
        self.rate, self.previous, self.best = state["rate"], state["previous"], state["best"]
        count = sum(key.startswith("best_weights.") for key in state)
        self.best_weights = [state[f"best_weights.{i}"] for i in range(count)] or None

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.model.optimizer.learning_rate.assign(self.rate)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        valid = perplexity(self.model, self.valid_stream, self.config)
        logs["train_perplexity"] = math.exp(logs["loss"] / self.targets_per_batch)
        logs["valid_perplexity"] = valid
        if valid < self.best:
            self.best, self.best_weights = valid, self.model.get_weights()
        if math.log(valid) > math.log(self.previous) * 0.9999:  # the code compares mean NLL
            self.rate /= self.config.anneal_factor
            if self.rate < self.config.min_learning_rate:
                self.model.stop_training = True
        self.previous = valid


def train_lm(
    train_stream: np.ndarray,
    valid_stream: np.ndarray,
    vocab_size: int,
    config: LMTrainConfig,
    seed: int,
    report: Report | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    checkpoints: Checkpoints | None = None,
) -> TrainResult:
    """Train from `seed` under AnnealOnPlateau; the result's validation perplexity is the best
    epoch's, whose weights the model holds. With `checkpoints`, saved each epoch as run
    `model`-seed`seed` and resumed from there, also under a higher `epochs`."""
    keras.utils.set_random_seed(seed)
    model = build_model(config, vocab_size, seed)
    compile_lm(model, config)
    train = batches(config, train_stream, training=True, seed=seed)
    # Keras reports the mean over batches of each batch's loss: a sum over its targets, or a mean
    targets_per_batch = (
        (len(train_stream) - 1) / len(train) if config.loss_reduction == "sum" else 1
    )
    schedule = AnnealOnPlateau(config, valid_stream, targets_per_batch)
    checkpoint = None
    if checkpoints is not None:
        data = {"train": train_stream, "valid": valid_stream}
        run = fingerprint(config, [seed], data, budget=["epochs"])  # no schedule reads epochs
        parts = {"schedule": schedule, "batches": train}
        checkpoint = checkpoints.open(f"{config.model}-seed{seed}", run, parts)
    result = fit(
        model,
        train,
        epochs=config.epochs,
        schedule=schedule,
        unit="tokens",
        per_epoch=len(train_stream) - 1,
        report=report,
        callbacks=callbacks,
        fit_per_epoch=True,
        checkpoint=checkpoint,
    )
    if schedule.best_weights is not None:
        model.set_weights(schedule.best_weights)
    result.validation = {"perplexity": schedule.best}
    return result


class EpochProgress(keras.callbacks.Callback):
    """Reports every tenth of an epoch: batches done and tokens per second so far."""

    def __init__(self, batches: int, tokens_per_batch: float, report: Callable[[str], None]):
        super().__init__()
        self.batches, self.tokens_per_batch, self.report = batches, tokens_per_batch, report
        self.every = max(batches // 10, 1)

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.start, self.reported = time.perf_counter(), 0

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        """`batch`: the last batch done (Keras calls this once per `steps_per_execution`)."""
        tenths = (batch + 1) // self.every
        if tenths > self.reported and batch + 1 < self.batches:
            self.reported = tenths
            rate = (batch + 1) * self.tokens_per_batch / (time.perf_counter() - self.start)
            self.report(f"  {100 * (batch + 1) // self.batches}% of the epoch, {rate:.0f} tokens/s")
