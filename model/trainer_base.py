"""The TFX Trainer `run_fn` both experiments share: read Transform's output, train under the
distribution strategy, export the serving model, and write `training.json` in the run folder.

An experiment's trainer module subclasses `ExperimentTrainer` (what it reads, trains and
exports) and its `run_fn` calls `run`; `custom_config` always holds `model` ("memn2n" or
"lstm"), `settings` (overrides of the experiment's settings dataclass), `seed` and `seeds`
(models trained from seed, seed + 1, ...; the one best on validation is exported), and may
hold `checkpoint_dir`: a folder that outlives the execution, where each epoch is saved, so that
a Trainer retried after a crash continues the same run (settings, seeds and data unchanged).
"""

from __future__ import annotations

import abc
import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import keras
import tensorflow as tf
import tqdm
from tfx.components.trainer.fn_args_utils import FnArgs

from model.checkpoint import Checkpoints
from model.engine import Report, TrainResult, describe_epoch

TRAINING_FILE = "training.json"  # in the run folder: settings, seeds, every epoch's record
PROGRESS_ENV = "MEMN2N_PROGRESS"  # "json": each epoch's record as JSON, not a rounded line


class BatchBar(keras.callbacks.Callback):
    """A bar of the epoch's batches on a terminal (stderr), gone when the epoch ends; nothing
    where stderr is not a terminal (logs, CI)."""

    def __init__(self, label: str, stream: TextIO | None = None):
        super().__init__()
        self.label, self.stream, self.bar = label, stream or sys.stderr, None  # stderr now

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        if self.stream.isatty():
            self.bar = tqdm.tqdm(
                total=self.params.get("steps"),
                desc=f"{self.label} epoch {epoch + 1}",
                unit="batch",
                leave=False,
                file=self.stream,
            )

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        """`batch`: the last batch done (once per `steps_per_execution` batches)."""
        if self.bar is not None:
            self.bar.update(batch + 1 - self.bar.n)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def distribution_strategy() -> tf.distribute.Strategy:
    """Multi-worker if TF_CONFIG names a cluster, all GPUs when there are several, else default."""
    if json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def for_several_replicas(settings: Any) -> Any:
    """`settings` without what TF's collectives cannot run in: XLA on CPU ("Collectives are not
    yet implemented for CPU devices when compiling with XLA") and several steps per call (the
    language model's 8 failed in Keras's step loop: "You must feed a value for placeholder
    tensor 'while/cond/Placeholder'"). Both are speed settings only."""
    fields = {field.name for field in dataclasses.fields(settings)}
    changes = {"steps_per_execution": 1} if "steps_per_execution" in fields else {}
    if not tf.config.list_logical_devices("GPU"):
        changes["jit_compile"] = False
    return dataclasses.replace(settings, **changes)


class ExperimentTrainer(abc.ABC):
    """One experiment's part of the Trainer; built from FnArgs, it reads its data first."""

    def __init__(self, fn_args: FnArgs):
        self.fn_args = fn_args
        self.custom_config: dict = fn_args.custom_config or {}

    @abc.abstractmethod
    def settings(self) -> Any:
        """The typed settings of `custom_config`, overrides applied."""

    @abc.abstractmethod
    def train(
        self,
        settings: Any,
        seeds: Sequence[int],
        report: Report,
        callbacks: list,
        checkpoints: Checkpoints | None,
    ) -> list[TrainResult]:
        """Train a model per seed on the train split, validating on the eval split, saving
        (and resuming) each run in `checkpoints`."""

    @abc.abstractmethod
    def validation_rank(self, result: TrainResult) -> tuple[float, ...]:
        """What selects the exported seed, lowest first (never a test figure)."""

    @abc.abstractmethod
    def export(self, result: TrainResult, settings: Any, export_dir: str) -> None:
        """Write the serving SavedModel of `result.model`."""

    def record(self, result: TrainResult) -> dict:
        """Fields of `training.json` beyond the shared ones."""
        return {}


def run(make_trainer: Callable[[FnArgs], ExperimentTrainer], fn_args: FnArgs) -> None:
    """Train, export to the serving model folder, and write the run's `training.json`. The
    strategy comes first: a multi-worker one must exist before TensorFlow runs any op. Every
    worker trains and exports (TF's rule for multi-worker saving); a worker besides the chief
    writes into `<task type>-<index>` of the run folder, its model in `serving_model` there."""
    strategy = distribution_strategy()
    run_dir, export_dir = fn_args.model_run_dir, fn_args.serving_model_dir
    if not strategy.extended.should_checkpoint:  # a worker besides the chief: a folder its own
        task = strategy.cluster_resolver
        run_dir = os.path.join(run_dir, f"{task.task_type}-{task.task_id}")
        export_dir = os.path.join(run_dir, "serving_model")
    trainer = make_trainer(fn_args)
    config = trainer.custom_config
    settings = trainer.settings()
    if strategy.num_replicas_in_sync > 1:
        settings = for_several_replicas(settings)
    if config.get("mixed_precision"):
        keras.mixed_precision.set_global_policy("mixed_float16")
    tensorboard = keras.callbacks.TensorBoard(log_dir=os.path.join(run_dir, "logs"))
    label = f"[{config.get('model', 'memn2n')}]"
    as_json = os.environ.get(PROGRESS_ENV) == "json"

    def report(record: dict) -> None:
        print(f"{label} {json.dumps(record) if as_json else describe_epoch(record)}", flush=True)

    first = config.get("seed", 1)
    seeds = range(first, first + config.get("seeds", 1))
    checkpoints = None  # with several workers, each would write the same files
    if config.get("checkpoint_dir") and strategy.num_replicas_in_sync == 1:
        checkpoints = Checkpoints(config["checkpoint_dir"], "if_same")
        print(f"{label} checkpoints in {checkpoints.directory}", flush=True)
    with strategy.scope():
        results = trainer.train(
            settings, seeds, report, [tensorboard, BatchBar(label)], checkpoints
        )
    seed, result = min(
        zip(seeds, results, strict=True), key=lambda pair: trainer.validation_rank(pair[1])
    )
    trainer.export(result, settings, export_dir)
    record = {
        "settings": dataclasses.asdict(settings),
        "selected_seed": seed,
        "seed_validation": {str(s): r.validation for s, r in zip(seeds, results, strict=True)},
        "history": result.history,
        "train_seconds": round(result.train_seconds, 1),
        f"train_{result.unit}_per_sec": round(result.per_second, 1),
        **trainer.record(result),
    }
    tf.io.gfile.makedirs(run_dir)
    with tf.io.gfile.GFile(os.path.join(run_dir, TRAINING_FILE), "w") as f:
        json.dump(record, f, indent=1)
    if checkpoints:  # the run is exported and recorded: nothing left to resume
        shutil.rmtree(checkpoints.directory, ignore_errors=True)
