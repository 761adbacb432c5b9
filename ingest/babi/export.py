"""`memn2n data babi`: the BabiExampleGen Beam transform outside TFX: TFRecords plus counts."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from ingest.babi.beam import DEFAULT_EVAL_EVERY, BabiToExamples
from ingest.babi.format import ALL_TASKS, BabiFormatError
from ingest.files import SPLITS
from ingest.records import export_splits


def split_task_count(example: tf.train.Example, split: str) -> tuple[str, tuple[int]]:
    """("train/3", (1,)) for a task-3 example of the train split."""
    return f"{split}/{example.features.feature['task'].int64_list.value[0]}", (1,)


def summarize(counts: dict[str, list[int]], train_set: str, tasks: Sequence[int]) -> dict:
    """{"train": n, "eval": n, "test": n, "per_task": {"1": {"train": n, ...}}, ...}."""
    per_task = {str(t): dict.fromkeys(SPLITS, 0) for t in sorted(tasks)}
    for key, (count,) in counts.items():
        split, task = key.split("/")
        per_task[task][split] = count
    return {
        "train_set": train_set,
        "tasks": sorted(tasks),
        **{split: sum(t[split] for t in per_task.values()) for split in SPLITS},
        "per_task": per_task,
    }


def export_babi(
    babi_dir: str,
    out_dir: str,
    train_set: str = "en",
    tasks: Sequence[int] = ALL_TASKS,
    eval_every: int = DEFAULT_EVAL_EVERY,
    beam_args: Sequence[str] = (),
) -> dict:
    """Write out_dir/{train,eval,test}/*.tfrecord.gz and out_dir/summary.json; the summary."""
    return export_splits(
        out_dir,
        BabiToExamples(babi_dir=babi_dir, train_set=train_set, tasks=tasks, eval_every=eval_every),
        split_task_count,
        lambda counts: summarize(counts, train_set, tasks),
        BabiFormatError,
        beam_args,
    )
