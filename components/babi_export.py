"""`memn2n data babi`: the BabiExampleGen Beam transform outside TFX: TFRecords plus counts."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence

import apache_beam as beam
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from components.babi_beam import DEFAULT_EVAL_EVERY, SPLITS, BabiToExamples
from components.babi_format import BabiFormatError, FileFormatError, unwrap_format_error

SUMMARY_FILE = "summary.json"


def _split_task_key(example: tf.train.Example, split: str) -> str:
    """ "train/3" for a task-3 example of the train split."""
    return f"{split}/{example.features.feature['task'].int64_list.value[0]}"


def summarize(counts: dict[str, int], train_set: str, tasks: Sequence[int]) -> dict:
    """{"train": n, "eval": n, "test": n, "per_task": {"1": {"train": n, ...}}, ...}."""
    per_task: dict[str, dict[str, int]] = collections.defaultdict(lambda: dict.fromkeys(SPLITS, 0))
    for key, count in counts.items():
        split, task = key.split("/")
        per_task[task][split] = count
    return {
        "train_set": train_set,
        "tasks": sorted(tasks),
        **{split: sum(t[split] for t in per_task.values()) for split in SPLITS},
        "per_task": {str(t): per_task[str(t)] for t in sorted(tasks)},
    }


@contextlib.contextmanager
def format_errors_unwrapped(error_class: type[FileFormatError] = BabiFormatError) -> Iterator[None]:
    """Re-raise a file format error that a Beam runner wrapped, as itself."""
    try:
        yield
    except Exception as error:
        if (unwrapped := unwrap_format_error(error, error_class)) not in (None, error):
            raise unwrapped from error
        raise


@contextlib.contextmanager
def atomic_output_dir(out_dir: str) -> Iterator[str]:
    """A scratch folder beside `out_dir` that replaces it only if the block succeeds, so a failed
    run leaves no partial output. An existing `out_dir` must be an earlier output (summary.json)."""
    out_dir = os.path.abspath(out_dir)
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not os.path.isfile(os.path.join(out_dir, SUMMARY_FILE)):
            raise FileExistsError(
                f"{out_dir}: not empty and not an earlier output; refusing to replace"
            )
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.partial-", dir=parent)
    os.chmod(scratch, 0o755)
    try:
        yield scratch
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(scratch, out_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def write_tfrecords(examples: beam.PCollection, folder: str, label: str) -> None:
    """Serialized examples -> folder/data-*.tfrecord.gz."""
    _ = (
        examples
        | f"Serialize[{label}]" >> beam.Map(lambda e: e.SerializeToString())
        | f"Write[{label}]"
        >> beam.io.WriteToTFRecord(
            os.path.join(folder, "data"),
            file_name_suffix=".tfrecord.gz",
            compression_type=beam.io.filesystem.CompressionTypes.GZIP,
        )
    )


def write_json(items: list[tuple[str, int]], path: str) -> None:
    with open(path, "w") as f:
        json.dump(dict(items), f)


def export_babi(
    babi_dir: str,
    out_dir: str,
    train_set: str = "en",
    tasks: Sequence[int] = tuple(range(1, 21)),
    eval_every: int = DEFAULT_EVAL_EVERY,
    beam_args: Sequence[str] = (),
) -> dict:
    """Write out_dir/{train,eval,test}/*.tfrecord.gz and out_dir/summary.json; the summary."""
    with atomic_output_dir(out_dir) as scratch:
        counts_file = os.path.join(scratch, "counts.json")
        with (
            format_errors_unwrapped(),
            beam.Pipeline(options=PipelineOptions(list(beam_args))) as pipeline,
        ):
            splits = pipeline | "BabiToExamples" >> BabiToExamples(
                babi_dir=babi_dir, train_set=train_set, tasks=tasks, eval_every=eval_every
            )
            keyed_counts = []
            for split, examples in splits.items():
                write_tfrecords(examples, os.path.join(scratch, split), split)
                keyed_counts.append(examples | f"Key[{split}]" >> beam.Map(_split_task_key, split))
            _ = (
                keyed_counts
                | "AllSplits" >> beam.Flatten()
                | "CountPerSplitAndTask" >> beam.combiners.Count.PerElement()
                | "Gather" >> beam.combiners.ToList()
                | "WriteCounts" >> beam.Map(write_json, counts_file)
            )
        with open(counts_file) as f:
            summary = summarize(json.load(f), train_set, tasks)
        os.remove(counts_file)
        with open(os.path.join(scratch, SUMMARY_FILE), "w") as f:
            json.dump(summary, f, indent=2)
    return summary
