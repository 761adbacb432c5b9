"""Training the language models as the paper does: SGD, the learning rate divided by 1.5 when
validation perplexity stops improving, stop below a minimum rate; perplexity on a whole split."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence

import keras
import numpy as np

from model.lm_inputs import SequenceBatches, WindowBatches
from model.lstm_lm import LSTMLM, LSTMLMConfig
from model.memn2n_lm import MemN2NLM, MemN2NLMConfig

SCORING_BATCH = 512


@dataclasses.dataclass(frozen=True)
class LMTrainConfig:
    """Paper defaults for PTB (section 5). `model` picks MemN2N or the LSTM baseline; the LSTM
    reads `sequence_length` words per window and uses `lstm_*` sizes."""

    model: str = "memn2n"  # "memn2n" or "lstm"
    embedding_dim: int = 150  # d
    hops: int = 6
    memory_size: int = 100
    linear_units: int = 75  # half of d
    init_stddev: float = 0.05
    epochs: int = 100  # at most; training also ends when the rate falls below min_learning_rate
    learning_rate: float = 0.01
    anneal_factor: float = 1.5
    min_learning_rate: float = 1e-5
    batch_size: int = 128
    clipnorm: float = 50.0  # global gradient norm, of the loss as `loss_reduction` says
    loss_reduction: str = "sum"  # over the batch, as the paper's code; "mean": per target
    min_count: int = 1  # words seen fewer times in training become <unk> (Text8: 5)
    lstm_units: int = 200
    lstm_embedding_dim: int = 200
    sequence_length: int = 35
    jit_compile: bool = True

    def __post_init__(self) -> None:
        if self.model not in ("memn2n", "lstm"):
            raise ValueError(f"model {self.model!r} is not 'memn2n' or 'lstm'")
        for name in ("epochs", "batch_size", "sequence_length", "min_count"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.loss_reduction not in ("sum", "mean"):
            raise ValueError(f"loss_reduction {self.loss_reduction!r} is not 'sum' or 'mean'")
        if self.anneal_factor <= 1 or self.learning_rate <= 0:
            raise ValueError("anneal_factor must be above 1 and learning_rate positive")

    def build_model(self, vocab_size: int, seed: int) -> keras.Model:
        if self.model == "lstm":
            return LSTMLM(
                LSTMLMConfig(vocab_size, self.lstm_embedding_dim, self.lstm_units, self.init_stddev)
            )
        config = MemN2NLMConfig(
            vocab_size,
            self.memory_size,
            self.embedding_dim,
            self.hops,
            self.linear_units,
            init_stddev=self.init_stddev,
        )
        return MemN2NLM(config, seed=seed)

    def window(self) -> int:
        """Words a served model reads: MemN2N's memory, or the LSTM's warm-up and sequence."""
        return self.memory_size if self.model == "memn2n" else 2 * self.sequence_length

    def batches(self, stream: np.ndarray, training: bool, seed: int = 0) -> keras.utils.PyDataset:
        """Training batches (shuffled) or scoring batches (every word once, in order)."""
        size = self.batch_size if training else SCORING_BATCH
        if self.model == "lstm":
            warmup = 0 if training else self.sequence_length
            return SequenceBatches(stream, self.sequence_length, size, training, warmup, seed)
        return WindowBatches(stream, self.memory_size, size, training, seed)


def negative_log_likelihood(
    model: keras.Model, batches: keras.utils.PyDataset
) -> tuple[float, int]:
    """Summed NLL (nats) of every weighted target, and how many there were."""
    total, count = 0.0, 0
    for index in range(len(batches)):
        inputs, targets, weights = batches[index]
        logits = keras.ops.convert_to_numpy(model(inputs)["logits"]).astype("float64")
        top = logits.max(axis=-1, keepdims=True)
        log_norm = np.log(np.exp(logits - top).sum(axis=-1)) + top[..., 0]  # [B] or [B, T]
        picked = np.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
        total += float(((log_norm - picked) * weights).sum())
        count += int(weights.sum())
    return total, count


def perplexity(model: keras.Model, stream: np.ndarray, config: LMTrainConfig) -> float:
    """exp(mean NLL) over every word of a split's stream."""
    total, count = negative_log_likelihood(model, config.batches(stream, training=False))
    return math.exp(total / count)


def compile_lm(model: keras.Model, config: LMTrainConfig) -> None:
    """SGD at `learning_rate` with the global gradient norm clipped at `clipnorm`, on the
    next-word cross-entropy summed (or averaged) over the batch's weighted targets."""
    model.compile(
        optimizer=keras.optimizers.SGD(config.learning_rate, global_clipnorm=config.clipnorm),
        loss={
            "logits": keras.losses.SparseCategoricalCrossentropy(
                from_logits=True,
                reduction="sum" if config.loss_reduction == "sum" else "sum_over_batch_size",
            )
        },
        jit_compile=config.jit_compile,
    )


@dataclasses.dataclass
class LMTrainResult:
    model: keras.Model
    history: list[dict]  # per epoch: learning_rate, train_perplexity, valid_perplexity, seconds
    train_seconds: float
    tokens_trained: int
    valid_perplexity: float  # the best epoch's, whose weights the model holds

    @property
    def tokens_per_sec(self) -> float:
        return self.tokens_trained / self.train_seconds


def train_lm(
    train_stream: np.ndarray,
    valid_stream: np.ndarray,
    vocab_size: int,
    config: LMTrainConfig,
    seed: int,
    report: Callable[[dict], None] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> LMTrainResult:
    """Train from `seed`; after each epoch score the validation split and, as the paper's code,
    divide the rate by `anneal_factor` when it did not improve on the previous epoch's by 0.01%;
    stop when the rate falls below the minimum. The model keeps the best epoch's weights."""
    keras.utils.set_random_seed(seed)
    model = config.build_model(vocab_size, seed)
    compile_lm(model, config)
    train = config.batches(train_stream, training=True, seed=seed)
    # Keras reports the mean over batches of each batch's loss: a sum over its targets, or a mean
    targets_per_batch = (
        (len(train_stream) - 1) / len(train) if config.loss_reduction == "sum" else 1
    )
    rate, best, best_weights, history, trained = config.learning_rate, math.inf, None, [], 0
    previous = math.inf
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.optimizer.learning_rate.assign(rate)
        began = time.perf_counter()
        fit = model.fit(train, epochs=1, verbose=0, callbacks=list(callbacks))
        seconds = time.perf_counter() - began
        trained += len(train_stream) - 1
        valid = perplexity(model, valid_stream, config)
        record = {
            "epoch": epoch,
            "learning_rate": rate,
            "train_perplexity": round(math.exp(fit.history["loss"][0] / targets_per_batch), 3),
            "valid_perplexity": round(valid, 3),
            "seconds": round(seconds, 2),
            "tokens_per_sec": round((len(train_stream) - 1) / seconds, 1),
        }
        history.append(record)
        if report:
            report(record)
        if valid < best:
            best, best_weights = valid, model.get_weights()
        if math.log(valid) > math.log(previous) * 0.9999:  # the code compares mean NLL
            rate /= config.anneal_factor
            if rate < config.min_learning_rate:
                break
        previous = valid
    seconds = time.perf_counter() - start
    model.set_weights(best_weights)
    return LMTrainResult(model, history, seconds, trained, best)


class EpochProgress(keras.callbacks.Callback):
    """Reports every tenth of an epoch: batches done and tokens per second so far."""

    def __init__(self, batches: int, tokens_per_batch: float, report: Callable[[str], None]):
        super().__init__()
        self.batches, self.tokens_per_batch, self.report = batches, tokens_per_batch, report
        self.every = max(batches // 10, 1)

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        if (batch + 1) % self.every == 0 and batch + 1 < self.batches:
            rate = (batch + 1) * self.tokens_per_batch / (time.perf_counter() - self.start)
            self.report(f"  {100 * (batch + 1) // self.batches}% of the epoch, {rate:.0f} tokens/s")
