"""BabiExampleGen: a FileBasedExampleGen whose Beam executor reads the bAbI v1.2 layout.

One tf.Example per question, in three splits: `train` and `eval` (every `eval_every`-th story of
each training file, so no story is in both) from the `_train.txt` files, `test` from `_test.txt`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
from tfx import types
from tfx import v1 as tfx
from tfx.components.example_gen import driver
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter

from components.babi_beam import DEFAULT_EVAL_EVERY, BabiToExamples
from components.babi_format import ALL_TASKS, find_task_files


def parse_tasks(value: str) -> list[int]:
    """'1,2,5' -> [1, 2, 5]; the empty string means all 20 tasks."""
    return [int(t) for t in value.split(",")] if value else list(ALL_TASKS)


class Executor(BaseExampleGenExecutor):
    """Builds the train/eval/test splits from the bAbI layout instead of hash buckets."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802 - TFX API
        raise NotImplementedError("BabiExampleGen builds all splits in GenerateExamplesByBeam")

    def GenerateExamplesByBeam(  # noqa: N802 - TFX API
        self, pipeline: beam.Pipeline, exec_properties: dict[str, Any]
    ) -> dict[str, beam.PCollection]:
        return pipeline | "BabiToExamples" >> BabiToExamples(
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
    """bAbI v1.2 questions as tf.Examples in splits train, eval and test.

    The input config names one glob per split, so TFX's FileBasedDriver fingerprints the source
    files: a changed file invalidates the cached output. `check_files=False` skips the local
    check of the task files (for pipelines compiled to run where `babi_dir` is remote).
    """

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
        input_config = tfx.proto.Input(
            splits=[
                tfx.proto.Input.Split(name="train", pattern=train_files),
                tfx.proto.Input.Split(name="eval", pattern=train_files),
                tfx.proto.Input.Split(name="test", pattern=test_files),
            ]
        )
        spec = BabiExampleGenSpec(
            input_base=babi_dir,
            input_config=input_config,
            output_config=tfx.proto.Output(),
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            train_set=train_set,
            tasks=",".join(str(t) for t in sorted(set(tasks))),
            eval_every=eval_every,
            examples=types.Channel(type=standard_artifacts.Examples),
        )
        super().__init__(spec=spec)
