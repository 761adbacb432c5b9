"""BabiExampleGen: the bAbI v1.2 layout as tf.Examples, one per question, in three splits:
`train` and `eval` (every `eval_every`-th story of each training file, so no story is in both)
from the `_train.txt` files, `test` from `_test.txt`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
from tfx.components.example_gen import driver
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_component_specs
from tfx.types.component_spec import ExecutionParameter

from ingest.babi.beam import DEFAULT_EVAL_EVERY, BabiToExamples
from ingest.babi.format import ALL_TASKS, find_task_files
from pipeline.components.example_gen import SplitsExecutor, split_files_spec


def parse_tasks(value: str) -> list[int]:
    """'1,2,5' -> [1, 2, 5]; the empty string means all 20 tasks."""
    return [int(t) for t in value.split(",")] if value else list(ALL_TASKS)


class Executor(SplitsExecutor):
    def to_examples(self, exec_properties: dict[str, Any]) -> beam.PTransform:
        return BabiToExamples(
            babi_dir=exec_properties[standard_component_specs.INPUT_BASE_KEY],
            train_set=exec_properties["train_set"],
            tasks=parse_tasks(exec_properties["tasks"]),
            eval_every=exec_properties["eval_every"],
        )


class BabiExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    """FileBasedExampleGen's parameters plus the training set, tasks and eval holdout."""

    PARAMETERS = {
        **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
        "train_set": ExecutionParameter(type=str),
        "tasks": ExecutionParameter(type=str),
        "eval_every": ExecutionParameter(type=int),
    }


class BabiExampleGen(base_beam_component.BaseBeamComponent):
    """bAbI questions as tf.Examples; `check_files=False` skips the local check of the task
    files (for pipelines compiled to run where `babi_dir` is remote)."""

    SPEC_CLASS = BabiExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
    DRIVER_CLASS = driver.FileBasedDriver

    def __init__(
        self,
        babi_dir: str,
        train_set: str = "en",
        tasks: Sequence[int] = ALL_TASKS,
        eval_every: int = DEFAULT_EVAL_EVERY,
        check_files: bool = True,
    ):
        if check_files:  # fail at construction, before anything runs
            find_task_files(babi_dir, train_set, tasks)
            babi_dir = os.path.abspath(babi_dir)
        train_files, test_files = f"{train_set}/qa*_train.txt", f"{train_set}/qa*_test.txt"
        patterns = {"train": train_files, "eval": train_files, "test": test_files}
        spec = BabiExampleGenSpec(
            **split_files_spec(babi_dir, patterns),
            train_set=train_set,
            tasks=",".join(str(t) for t in sorted(set(tasks))),
            eval_every=eval_every,
        )
        super().__init__(spec=spec)
