"""`memn2n bench babi`: train on bAbI's training split, pick a seed by validation, test once.

The data goes through the same Beam transform as the pipeline's BabiExampleGen (TFRecords in a
scratch folder); the official test set is used only for the reported errors.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
from collections.abc import Callable, Sequence

import keras
import numpy as np

from ingest.babi.export import export_babi
from ingest.babi.format import missing_tasks
from ingest.files import SPLITS
from model.babi.inputs import (
    BabiArrays,
    Tokens,
    build_vocabulary,
    encode,
    longest_story,
    read_split,
)
from model.babi.inputs import sentence_size as longest_sentence
from model.babi.lstm import story_then_question
from model.babi.settings import BabiTrainConfig, LSTMConfig, Mode
from model.babi.training import predict_answers, task_errors, train_model
from model.benchmark import benchmark_record
from model.checkpoint import Checkpoints
from model.engine import TrainResult
from model.settings import MODELS, ModelKind, check_choice

FAILED_ABOVE = 5.0  # percent error: the paper's "failed task"
SELECTION_RULE = (
    "per training unit (the joint model, or each task's model in single mode), the seed with the "
    "lowest validation error on the held-out eval split, ties broken by validation loss; the "
    "test set is never used to choose"
)


@dataclasses.dataclass(frozen=True)
class EncodedSplits:
    """A training unit's data: train, eval (validation) and test arrays and their vocabulary."""

    train: BabiArrays
    eval: BabiArrays
    test: BabiArrays
    vocabulary: list[str]


def encode_unit(
    text: dict, tasks: Sequence[int], config: BabiTrainConfig | LSTMConfig
) -> EncodedSplits:
    """Encode the questions of `tasks`, with a vocabulary built from their training split only,
    in a memory of `memory_size` sentences (MemN2N's: fitted to the training split's longest
    story when `fit_memory_to_data`)."""
    tokens = Tokens()
    chosen = {
        split: dataclasses.replace(
            data,
            task=data.task[keep := np.isin(data.task, tasks)],
            story=[s for s, k in zip(data.story, keep, strict=True) if k],
            question=[q for q, k in zip(data.question, keep, strict=True) if k],
            answer=[a for a, k in zip(data.answer, keep, strict=True) if k],
        )
        for split, data in text.items()
    }
    memory_size = config.memory_size
    if isinstance(config, BabiTrainConfig):
        memory_size = config.memory_for(longest_story(chosen["train"]))
    vocabulary = build_vocabulary(chosen["train"], memory_size, tokens)
    size = longest_sentence(chosen["train"], memory_size, tokens)
    arrays = {s: encode(d, vocabulary, memory_size, size, tokens) for s, d in chosen.items()}
    return EncodedSplits(arrays["train"], arrays["eval"], arrays["test"], vocabulary)


def longest_sequence(data: BabiArrays) -> int:
    """The most words in any story-then-question sequence of `data` (the LSTM's T)."""
    sequences = keras.ops.convert_to_numpy(story_then_question(data.story, data.query))
    return int((sequences != 0).sum(axis=1).max())


def select_seed(runs: list[dict]) -> dict:
    """The run with the lowest validation error, then validation loss (never test error)."""
    return min(runs, key=lambda run: (run["val_error"], run["val_loss"]))


def run_babi_benchmark(
    babi_dir: str,
    train_set: str,
    mode: Mode,
    model: ModelKind,
    tasks: Sequence[int],
    seeds: int,
    config: BabiTrainConfig | LSTMConfig,
    report: Callable[[str], None] = print,
    beam_args: Sequence[str] = (),
    checkpoints: Checkpoints | None = None,
) -> dict:
    """Train `seeds` models per unit, test the selected ones, return the benchmark record; with
    `checkpoints`, every unit's runs are saved each epoch (and resumed, as they say)."""
    check_choice("model", model, MODELS)
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    absent = missing_tasks(babi_dir, train_set, tasks)
    present = [t for t in sorted(tasks) if t not in absent]
    if absent:
        report(f"{train_set}: no data for task(s) {absent}; they are reported as missing")
    if not present:
        raise ValueError(f"{babi_dir}/{train_set}: none of the tasks {list(tasks)} has data")
    with tempfile.TemporaryDirectory(prefix="memn2n-bench-") as scratch:
        examples = os.path.join(scratch, "examples")
        report(f"Beam: {train_set} tasks {present} -> TFRecords")
        counts = export_babi(babi_dir, examples, train_set, present, beam_args=beam_args)
        text = {split: read_split(examples, split) for split in SPLITS}

    units = [("joint", present)] if mode == "joint" else [(str(t), [t]) for t in present]
    per_seed, selected, per_task_error, memory = [], {}, {}, {}
    train_seconds = examples_trained = 0.0
    for unit, unit_tasks in units:
        data = encode_unit(text, unit_tasks, config)
        memory[unit] = data.train.story.shape[1]
        label = f"[{model} {unit}, {seeds} seed{'s' if seeds > 1 else ''}]"

        def epoch_report(record: dict, label: str = label) -> None:
            report(
                f"{label} epoch {record['epoch']} {record['phase']} loss {record['loss']:.4f} "
                f"val_loss {record['val_loss']:.4f} ({record['seconds']:.1f} s, "
                f"{record['examples_per_sec']:.0f} examples/s)"
            )

        results = train_model(
            data.train,
            data.eval,
            len(data.vocabulary),
            sized(config, data),
            range(1, seeds + 1),
            epoch_report,
            checkpoints=checkpoints,
            name=f"{model}-{unit}",
        )
        test_logits = [predict_answers(result.model, data.test) for result in results]
        runs = []
        for seed, result, logits in zip(range(1, seeds + 1), results, test_logits, strict=True):
            run = _run_record(unit, seed, result, task_errors(logits.argmax(-1), data.test))
            report(
                f"{label} seed {seed}: val error {run['val_error']:.1f}% "
                f"val loss {run['val_loss']:.4f}, {run['epochs']} epochs"
            )
            runs.append(run)
            train_seconds += result.train_seconds
            examples_trained += result.trained
        per_seed.extend(runs)
        best = select_seed(runs)
        selected[unit] = best["seed"]
        per_task_error.update(best["test_error"])

    errors = [per_task_error[str(t)] for t in present]
    return benchmark_record(
        "babi",
        model,
        config,
        train_seconds,
        int(examples_trained),
        "examples",
        train_set=train_set,
        mode=mode,
        tasks=present,
        missing_tasks=absent,
        seeds=seeds,
        per_task_error=per_task_error,
        mean_error=round(statistics.fmean(errors), 2),
        failed_tasks=[t for t in present if per_task_error[str(t)] > FAILED_ABOVE],
        selection={"rule": SELECTION_RULE, "selected_seed": selected},
        seed_spread=_seed_spread(per_seed, mode),
        per_seed=per_seed,
        memory_size=memory,
        data={split: counts[split] for split in SPLITS},
    )


def sized(config: BabiTrainConfig | LSTMConfig, data: EncodedSplits):
    """MemN2N's settings with the unit's memory size; the LSTM's sized by the unit's vocabulary
    and sequences."""
    if isinstance(config, BabiTrainConfig):
        return dataclasses.replace(config, memory_size=data.train.story.shape[1])
    return dataclasses.replace(
        config, vocab_size=len(data.vocabulary), max_tokens=longest_sequence(data.train)
    )


def _run_record(unit: str, seed: int, result: TrainResult, test_error: dict) -> dict:
    return {
        "unit": unit,
        "seed": seed,
        "val_error": round(result.validation["error"], 2),
        "val_loss": round(result.validation["loss"], 5),
        "test_error": {task: round(error, 2) for task, error in test_error.items()},
        "epochs": len(result.history),
        "linear_start_epochs": sum(1 for r in result.history if r["phase"] == "linear"),
        "train_seconds": round(result.train_seconds, 1),
        "train_examples_per_sec": round(result.per_second, 1),
        "history": result.history,
    }


def _seed_spread(per_seed: list[dict], mode: Mode) -> dict:
    """Mean test error and failed-task count of every seed (joint), or per task (single)."""
    if mode == "joint":
        means = [statistics.fmean(run["test_error"].values()) for run in per_seed]
        failed = [sum(e > FAILED_ABOVE for e in run["test_error"].values()) for run in per_seed]
        median = statistics.median(means)
        return {
            "mean_error": {"min": min(means), "median": median, "max": max(means)},
            "failed_tasks": {"min": min(failed), "max": max(failed)},
        }
    errors: dict[str, list[float]] = {}
    for run in per_seed:
        errors.setdefault(run["unit"], []).append(run["test_error"][run["unit"]])
    return {unit: {"min": min(e), "max": max(e)} for unit, e in errors.items()}
