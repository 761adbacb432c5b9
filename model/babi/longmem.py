"""`memn2n bench longmem`: how a memory network's accuracy falls as its memory grows, with plain
softmax hops and with each Multi-Token Attention variant (model.hop_attention).

Every (task, memory size N, placement, variant) is one unit: `seeds` single-task models trained
side by side on haystacks (model.babi.haystack) redrawn each epoch, one selected by validation
error, all tested. The JSON is rewritten after each unit, so an interrupted run resumes where it
stopped; a PNG plot is written beside it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from model.babi.batches import SentenceBatches
from model.babi.benchmark import FAILED_ABOVE, SELECTION_RULE, select_seed
from model.babi.haystack import PLACEMENTS, Haystack, HaystackSplit, Placement, haystack_splits
from model.babi.settings import BabiTrainConfig, defaults
from model.babi.training import OUTPUT, train_memn2n
from model.benchmark import environment
from model.figures import pyplot, save_figure
from model.settings import check_choice
from model.stacking import SeedBatches

# Each variant's settings: the hops' attention (fields of model.attention_settings.HopAttention),
# or plain hops with temporal vectors blended from log-spaced anchors (model.memn2n.log_blend).
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "slot-conv": {"slot_kernel": 3},
    "slot-hop-conv": {"slot_kernel": 3, "hop_kernel": 2},
    "post-conv": {"post_slot_kernel": 3},
    "heads-mixed": {"heads": 2, "head_mix": True, "post_head_group": 2},
    "top-k": {"top_k": 10},
    "log-temporal": {"temporal_grid": "log"},
}
ROWS_PER_CALL = 1 << 16  # memory slots per scoring call: bounds its [B N, d] embeddings


def longmem_defaults() -> BabiTrainConfig:
    """The paper's single-task settings without random noise (every memory is full), without
    linear start (so that a run of E epochs is E epochs; `--set linear_start=true` puts it back)
    and with empty slots out of the softmax (so that a growing memory's empty slots are absent)."""
    return dataclasses.replace(
        defaults("single"),
        random_noise=0.0,
        linear_start=False,
        fit_memory_to_data=False,
        empty_in_denominator=False,
    )


@dataclasses.dataclass(frozen=True)
class Growth:
    """Training memories that grow (a curriculum): `start` slots in the first `every` epochs,
    doubled every `every` epochs up to the unit's N, the older slots left empty; `start` 0 fills
    all N slots from the first epoch. Validation and test always fill all N."""

    start: int = 0
    every: int = 5

    def __post_init__(self) -> None:
        if self.start < 0 or self.every < 1:
            raise ValueError(
                f"a growing memory starts at 0 (off) or more slots and grows every 1 or more "
                f"epochs, got start {self.start}, every {self.every}"
            )

    def size(self, epoch: int, memory: int) -> int:
        """The slots filled in training epoch `epoch` (from 0) of a unit of N = `memory`."""
        if not self.start:
            return memory
        return min(memory, self.start * 2 ** (epoch // self.every))


class HaystackBatches(SentenceBatches):
    """A stack's training batches whose memories are redrawn every epoch."""

    def __init__(
        self,
        draw: Callable[[int], Haystack],
        first: Haystack,
        seeds: Sequence[int],
        batch_size: int,
    ) -> None:
        """`first` is `draw(0)`, drawn once by the caller; the table and rows come from draws."""
        SeedBatches.__init__(
            self, {"query": first.query}, {OUTPUT: first.answer}, seeds, batch_size
        )
        self.draw, self.sentences, self.drawn = draw, first.table, (0, first.slots)

    def memory_rows(self) -> np.ndarray:
        if self.drawn[0] != self.epoch:
            self.drawn = (self.epoch, self.draw(self.epoch).slots)
        return self.drawn[1]


def training_draws(
    train: HaystackSplit, memory: int, placement: Placement, growth: Growth
) -> Callable[[int], Haystack]:
    """Each epoch's training haystack: fresh distractors, as many slots filled as `growth` says,
    in a memory of `memory` slots."""
    return lambda epoch: train.haystack(growth.size(epoch, memory), placement, epoch).within(memory)


def score(model: keras.Model, haystack: Haystack) -> tuple[np.ndarray, np.ndarray]:
    """Answer ids [M] and attention [M, K, N] of one model on `haystack`."""
    step = max(1, ROWS_PER_CALL // haystack.slots.shape[1])
    answers, attention = [], []
    for start in range(0, len(haystack.answer), step):
        rows = slice(start, start + step)
        inputs = {"sentences": haystack.table, "slots": haystack.slots[rows]}
        outputs = model({**inputs, "query": haystack.query[rows]}, training=False)
        answers.append(keras.ops.convert_to_numpy(outputs[OUTPUT]).argmax(-1))
        attention.append(keras.ops.convert_to_numpy(outputs["attention"]))
    return np.concatenate(answers), np.concatenate(attention)


def figures_on(answers: np.ndarray, attention: np.ndarray, haystack: Haystack) -> dict:
    """Accuracy, and per hop the attention mass on the supporting facts, averaged over the
    questions; for block placement the accuracy at each depth too."""
    correct = answers == haystack.answer
    mass = (attention * haystack.supporting[:, None, :]).sum(-1).mean(0)  # [K]
    figures = {
        "accuracy": round(100.0 * float(correct.mean()), 2),
        "attention_on_support": [round(float(m), 4) for m in mass],
    }
    if not np.isnan(haystack.depth).all():
        figures["accuracy_by_depth"] = {
            f"{depth:g}": round(100.0 * float(correct[haystack.depth == depth].mean()), 2)
            for depth in np.unique(haystack.depth)
        }
    return figures


def train_unit(
    splits: dict[str, HaystackSplit],
    vocab_size: int,
    memory: int,
    placement: Placement,
    config: BabiTrainConfig,
    seeds: int,
    report: Callable[[str], None],
    growth: Growth = Growth(),
) -> dict:
    """One unit: train the stack (on memories grown as `growth` says), select a seed by
    validation, test every seed."""
    val = splits["eval"].haystack(memory, placement).arrays()
    test = splits["test"].haystack(memory, placement)
    draw = training_draws(splits["train"], memory, placement, growth)
    first = draw(0)
    results = train_memn2n(
        first.arrays(),
        val,
        vocab_size,
        dataclasses.replace(config, memory_size=memory),
        range(1, seeds + 1),
        batches=HaystackBatches(draw, first, range(1, seeds + 1), config.batch_size),
    )
    per_seed = []
    for seed, result in enumerate(results, start=1):
        epoch_seconds = [record["seconds"] for record in result.history]
        per_seed.append(
            {
                "seed": seed,
                "val_error": round(result.validation["error"], 2),
                "val_loss": round(result.validation["loss"], 5),
                **figures_on(*score(result.model, test), test),
                "epochs": len(result.history),
                "seconds_per_epoch": round(statistics.median(epoch_seconds), 2),
            }
        )
    best = select_seed(per_seed)
    accuracies = [run["accuracy"] for run in per_seed]
    report(
        f"  selected seed {best['seed']}: test accuracy {best['accuracy']:.1f}% "
        f"(seeds {min(accuracies):.1f}-{max(accuracies):.1f}), attention on the supporting "
        f"facts by hop {best['attention_on_support']}"
    )
    return {
        "selected_seed": best["seed"],
        "accuracy": best["accuracy"],
        "failed": bool(100.0 - best["accuracy"] > FAILED_ABOVE),
        "attention_on_support": best["attention_on_support"],
        **({"accuracy_by_depth": best["accuracy_by_depth"]} if "accuracy_by_depth" in best else {}),
        "accuracy_spread": {
            "min": min(accuracies),
            "median": statistics.median(accuracies),
            "max": max(accuracies),
        },
        "seconds_per_epoch": best["seconds_per_epoch"],
        "test_sha256": test.digest(),
        "per_seed": per_seed,
    }


def run_longmem_benchmark(
    babi_dir: str,
    ptb_dir: str,
    train_set: str,
    tasks: Sequence[int],
    memories: Sequence[int],
    placements: Sequence[Placement],
    variants: Sequence[str],
    seeds: int,
    config: BabiTrainConfig,
    out: str,
    resume: bool = False,
    report: Callable[[str], None] = print,
    growth: Growth = Growth(),
) -> dict:
    """Every unit of tasks x memories x placements x variants, the JSON at `out` rewritten after
    each (with `resume`, the units already there are kept and not rerun), then the plot."""
    for placement in placements:
        check_choice("placement", placement, PLACEMENTS)
    for variant in variants:
        check_choice("variant", variant, tuple(VARIANTS))
    if seeds < 1 or min(memories, default=0) < 1:
        raise ValueError("seeds and every memory size must be at least 1")
    units: list[dict] = []
    record: dict[str, Any] = {
        "benchmark": "longmem",
        "train_set": train_set,
        "tasks": list(tasks),
        "memories": list(memories),
        "placements": list(placements),
        "variants": {name: VARIANTS[name] for name in variants},
        "seeds": seeds,
        "config": dataclasses.asdict(config),
        "growth": dataclasses.asdict(growth),
        "selection": SELECTION_RULE,
        "environment": environment(),
        "units": units,
    }
    if resume and os.path.exists(out):
        with open(out) as f:
            earlier = json.load(f)
        asked = {**record["config"], "train_set": train_set, "growth": record["growth"]}
        asked_before = {  # a setting added since, absent there, had its default
            **{f.name: f.default for f in dataclasses.fields(BabiTrainConfig)},
            **earlier["config"],
            "train_set": earlier.get("train_set", "en"),
            "growth": earlier.get("growth", dataclasses.asdict(Growth())),
        }
        if changed := [k for k, v in asked.items() if asked_before.get(k) != v]:
            raise ValueError(
                f"{out} was run with other settings ({', '.join(changed)}); not resumed"
            )
        units.extend(earlier["units"])
        for field in ("tasks", "memories", "placements"):
            record[field] = sorted(set(earlier[field]) | set(record[field]))
        record["variants"] = {**earlier["variants"], **record["variants"]}
    done = {(u["task"], u["memory"], u["placement"], u["variant"]) for u in units}
    for task in tasks:
        splits, vocabulary = haystack_splits(babi_dir, ptb_dir, [task], train_set)
        for memory in memories:
            for placement in placements:
                for variant in variants:
                    if (task, memory, placement, variant) in done:
                        continue
                    report(f"qa{task}, memory {memory}, {placement}, {variant}:")
                    settings = dataclasses.replace(config, **VARIANTS[variant])
                    unit = train_unit(
                        splits, len(vocabulary), memory, placement, settings, seeds, report, growth
                    )
                    key = {"task": task, "memory": memory, "placement": placement}
                    units.append({**key, "variant": variant, **unit})
                    write_record(record, out)
    write_record(record, out)
    plot(record, os.path.splitext(out)[0] + ".png")
    return record


def write_record(record: dict, path: str) -> None:
    """`record` with its summary (recomputed from its units) at `path`."""
    record["summary"] = summarize(record)
    write_json(record, path)


def write_json(record: dict, path: str) -> None:
    """`record` at `path`, replaced whole (a half-written file never stands there)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = f"{path}.partial"
    with open(partial, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(partial, path)


def complete_tasks(record: dict, placement: str) -> list[int]:
    """The tasks that each variant of `placement` has at every memory size it was run at: the
    only ones a curve may average, so that each of its points averages the same tasks."""
    units = [u for u in record["units"] if u["placement"] == placement]
    have = {(u["task"], u["memory"], u["variant"]) for u in units}
    run_at = {(memory, variant) for _, memory, variant in have}
    return [task for task in record["tasks"] if all((task, *mv) in have for mv in run_at)]


def summarize(record: dict) -> dict:
    """By placement, each variant's means over the tasks it has at every memory size (selected
    seeds): test accuracy, validation error and loss at each N, and the fall in accuracy from
    the smallest N to the largest. Among the variants run on every task of the placement, the
    one chosen on validation: the lowest mean validation error at the largest N, then loss."""
    summary: dict[str, Any] = {}
    for placement in sorted({u["placement"] for u in record["units"]}):
        units = [u for u in record["units"] if u["placement"] == placement]
        memories = sorted({u["memory"] for u in units})
        every_task = sorted({u["task"] for u in units})
        variants: dict[str, Any] = {}
        for variant in dict.fromkeys(u["variant"] for u in units):
            at = {(u["task"], u["memory"]): u for u in units if u["variant"] == variant}
            tasks = [t for t in every_task if all((t, m) in at for m in memories)]
            if not tasks:
                continue
            means: dict[str, dict[str, float]] = {"accuracy": {}, "val_error": {}, "val_loss": {}}
            for memory in memories:
                selected = [selected_run(at[task, memory]) for task in tasks]
                means["accuracy"][str(memory)] = statistics.fmean(
                    at[task, memory]["accuracy"] for task in tasks
                )
                for figure in ("val_error", "val_loss"):
                    means[figure][str(memory)] = statistics.fmean(r[figure] for r in selected)
            accuracy = means["accuracy"]
            fall = accuracy[str(memories[0])] - accuracy[str(memories[-1])]
            variants[variant] = {"tasks": tasks, **rounded(means), "fall": round(fall, 2)}
        largest = str(memories[-1])
        complete = [v for v, figures in variants.items() if figures["tasks"] == every_task]
        chosen = min(
            complete,
            key=lambda v: (variants[v]["val_error"][largest], variants[v]["val_loss"][largest]),
            default=None,
        )
        summary[placement] = {
            "memories": memories,
            "tasks": every_task,
            "variants": variants,
            "chosen_on_validation": chosen,
        }
    return summary


def selected_run(unit: dict) -> dict:
    """The per-seed figures of a unit's selected seed."""
    return next(run for run in unit["per_seed"] if run["seed"] == unit["selected_seed"])


def rounded(means: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Accuracy and validation error to 0.01 points, validation loss to 1e-4."""
    places = {"accuracy": 2, "val_error": 2, "val_loss": 4}
    return {
        figure: {n: round(value, places[figure]) for n, value in by_n.items()}
        for figure, by_n in means.items()
    }


def plot(record: dict, path: str) -> None:
    """Accuracy and attention mass on the supporting facts (mean over hops) against N, averaged
    over `complete_tasks`: one line per variant over the N it was run at, one column per
    placement."""
    placements = record["placements"]
    figure, axes = pyplot().subplots(2, len(placements), figsize=(6 * len(placements), 8))
    axes = np.asarray(axes).reshape(2, len(placements))
    for column, placement in enumerate(placements):
        tasks = complete_tasks(record, placement)
        for variant in record["variants"]:
            units = [
                u
                for u in record["units"]
                if (u["placement"], u["variant"]) == (placement, variant) and u["task"] in tasks
            ]
            memories = sorted({u["memory"] for u in units})
            for row, figure_of in enumerate(
                (lambda u: u["accuracy"], lambda u: float(np.mean(u["attention_on_support"])))
            ):
                means = [
                    statistics.fmean(figure_of(u) for u in units if u["memory"] == m)
                    for m in memories
                ]
                axes[row, column].plot(memories, means, marker="o", label=variant)
        names = ", ".join(f"qa{t}" for t in tasks) or "no task at every N yet"
        axes[0, column].set_title(f"{placement} ({names}, selected seeds)")
        axes[0, column].set_ylabel("test accuracy %")
        axes[1, column].set_ylabel("attention on supporting facts (mean over hops)")
        for row in range(2):
            axes[row, column].set_xscale("log")
            axes[row, column].set_xticks(record["memories"], [str(m) for m in record["memories"]])
            axes[row, column].set_xlabel("memory size N (sentences)")
            axes[row, column].grid(True, alpha=0.3)
        axes[0, column].legend()
    save_figure(figure, path)
