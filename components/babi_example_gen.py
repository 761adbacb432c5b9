"""BabiExampleGen: a FileBasedExampleGen whose Beam executor reads the bAbI v1.2 layout.

One tf.Example per question, in three splits: `train` and `eval` (every `eval_every`-th story of
each training file, so no story is in both) from the `_train.txt` files, `test` from `_test.txt`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import tensorflow as tf
from tfx import types
from tfx import v1 as tfx
from tfx.components.example_gen import driver
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter

from components.babi_format import (
    ALL_TASKS,
    BabiQuestion,
    TaskFile,
    find_task_files,
    is_eval_story,
    parse_task_file,
)

SPLITS = ("train", "eval", "test")
DEFAULT_EVAL_EVERY = 10


def to_tf_example(question: BabiQuestion) -> tf.train.Example:
    """The tf.Example of one question; text is kept as written, tokenization comes later."""

    def strings(values: Sequence[str]) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() for v in values]))

    def ints(values: Sequence[int]) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "task": ints([question.task]),
                "story_id": strings([question.story_id]),
                "story": strings(question.story),
                "question": strings([question.question]),
                "answer": strings([question.answer]),
                "supporting_facts": ints(question.supporting_facts),
            }
        )
    )


def split_of(task_file: TaskFile, question: BabiQuestion, eval_every: int) -> str:
    """`test` for test files; `eval` for held-out training stories; `train` otherwise."""
    if task_file.kind == "test":
        return "test"
    return "eval" if is_eval_story(question.story_index, eval_every) else "train"


def _parse_to_split_examples(
    task_file: TaskFile, eval_every: int
) -> Iterator[tuple[str, tf.train.Example]]:
    for question in parse_task_file(task_file):
        yield split_of(task_file, question, eval_every), to_tf_example(question)


@beam.ptransform_fn
def BabiToExamples(  # noqa: N802 - Beam PTransform naming
    pipeline: beam.Pipeline,
    babi_dir: str,
    train_set: str,
    tasks: Sequence[int],
    eval_every: int = DEFAULT_EVAL_EVERY,
) -> dict[str, beam.PCollection]:
    """Read the task files with Beam; returns {split: PCollection of tf.train.Example}."""
    files = find_task_files(babi_dir, train_set, tasks)
    parsed = (
        pipeline
        | "ListTaskFiles" >> beam.Create(files)
        | "SpreadFiles" >> beam.Reshuffle()
        | "ParseTaskFiles" >> beam.FlatMap(_parse_to_split_examples, eval_every)
    )
    by_split = parsed | "PartitionBySplit" >> beam.Partition(
        lambda item, _: SPLITS.index(item[0]), len(SPLITS)
    )
    return {
        split: by_split[i] | f"DropSplitKey[{split}]" >> beam.Values()
        for i, split in enumerate(SPLITS)
    }


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
    files: a changed file invalidates the cached output.
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
    ):
        find_task_files(babi_dir, train_set, tasks)  # fail at construction, before anything runs
        train_files, test_files = f"{train_set}/qa*_train.txt", f"{train_set}/qa*_test.txt"
        input_config = tfx.proto.Input(
            splits=[
                tfx.proto.Input.Split(name="train", pattern=train_files),
                tfx.proto.Input.Split(name="eval", pattern=train_files),
                tfx.proto.Input.Split(name="test", pattern=test_files),
            ]
        )
        spec = BabiExampleGenSpec(
            input_base=os.path.abspath(babi_dir),
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
