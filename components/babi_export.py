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
from components.babi_format import unwrap_babi_error

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
def _babi_errors_unwrapped() -> Iterator[None]:
    """Re-raise a bAbI format error that a Beam runner wrapped, as itself."""
    try:
        yield
    except Exception as error:
        if (babi_error := unwrap_babi_error(error)) is not None and babi_error is not error:
            raise babi_error from error
        raise


def _write_json(items: list[tuple[str, int]], path: str) -> None:
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
    """Write out_dir/{train,eval,test}/*.tfrecord.gz and out_dir/summary.json; return the summary.

    Everything is written to a scratch folder beside `out_dir` and moved into place only when the
    whole pipeline succeeded, so a failed run leaves no partial output.
    """
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
        counts_file = os.path.join(scratch, "counts.json")
        with (
            _babi_errors_unwrapped(),
            beam.Pipeline(options=PipelineOptions(list(beam_args))) as pipeline,
        ):
            splits = pipeline | "BabiToExamples" >> BabiToExamples(
                babi_dir=babi_dir, train_set=train_set, tasks=tasks, eval_every=eval_every
            )
            keyed_counts = []
            for split, examples in splits.items():
                _ = (
                    examples
                    | f"Serialize[{split}]" >> beam.Map(lambda e: e.SerializeToString())
                    | f"Write[{split}]"
                    >> beam.io.WriteToTFRecord(
                        os.path.join(scratch, split, "data"),
                        file_name_suffix=".tfrecord.gz",
                        compression_type=beam.io.filesystem.CompressionTypes.GZIP,
                    )
                )
                keyed_counts.append(examples | f"Key[{split}]" >> beam.Map(_split_task_key, split))
            _ = (
                keyed_counts
                | "AllSplits" >> beam.Flatten()
                | "CountPerSplitAndTask" >> beam.combiners.Count.PerElement()
                | "Gather" >> beam.combiners.ToList()
                | "WriteCounts" >> beam.Map(_write_json, counts_file)
            )
        with open(counts_file) as f:
            summary = summarize(json.load(f), train_set, tasks)
        os.remove(counts_file)
        with open(os.path.join(scratch, SUMMARY_FILE), "w") as f:
            json.dump(summary, f, indent=2)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(scratch, out_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return summary
