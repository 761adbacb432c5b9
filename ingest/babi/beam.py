"""The bAbI Beam transform: task files -> tf.Examples in splits train, eval and test.

Kept free of TFX imports so that `memn2n data babi` starts fast; BabiExampleGen wraps it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import apache_beam as beam
import tensorflow as tf

from ingest.babi.format import (
    BabiQuestion,
    TaskFile,
    find_task_files,
    is_eval_story,
    parse_task_file,
)
from ingest.files import SPLITS
from ingest.records import bytes_feature, int_feature

DEFAULT_EVAL_EVERY = 10


def to_tf_example(question: BabiQuestion) -> tf.train.Example:
    """The tf.Example of one question; text is kept as written, tokenization comes later."""
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "task": int_feature([question.task]),
                "story_id": bytes_feature([question.story_id]),
                "story": bytes_feature(question.story),
                "question": bytes_feature([question.question]),
                "answer": bytes_feature([question.answer]),
                "supporting_facts": int_feature(question.supporting_facts),
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
        lambda item, _: SPLITS.index(item[0]),  # type: ignore[arg-type]  # any callable works
        len(SPLITS),
    )
    return {
        split: by_split[i] | f"DropSplitKey[{split}]" >> beam.Values()
        for i, split in enumerate(SPLITS)
    }
