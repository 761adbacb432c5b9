"""The Beam export to TFRecords both datasets share: it replaces its output folder only when it
succeeds, and a format error comes out as itself, naming its file and line."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence

import apache_beam as beam
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from ingest.files import FileFormatError, unwrap_format_error

SUMMARY_FILE = "summary.json"

SplitCount = Callable[[tf.train.Example, str], tuple[str, tuple[int, ...]]]


@contextlib.contextmanager
def format_errors_unwrapped(error_class: type[FileFormatError]) -> Iterator[None]:
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


def bytes_feature(values: Sequence[str]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() for v in values]))


def int_feature(values: Sequence[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


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


def write_json(items: list[tuple[str, tuple[int, ...]]], path: str) -> None:
    with open(path, "w") as f:
        json.dump(dict(items), f)


def sum_counts(counts: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    return tuple(map(sum, zip(*counts, strict=True)))


def export_splits(
    out_dir: str,
    to_examples: beam.PTransform,
    count: SplitCount,
    summarize: Callable[[dict[str, list[int]]], dict],
    error_class: type[FileFormatError],
    beam_args: Sequence[str] = (),
) -> dict:
    """Write out_dir/{train,eval,test}/*.tfrecord.gz with Beam, and out_dir/summary.json: the
    `summarize`d sums of what `count` gives each example (key, counts). A failed run leaves no
    output, and a format error comes out as itself, naming its file and line."""
    with atomic_output_dir(out_dir) as scratch:
        counts_file = os.path.join(scratch, "counts.json")
        with (
            format_errors_unwrapped(error_class),
            beam.Pipeline(options=PipelineOptions(list(beam_args))) as pipeline,
        ):
            splits = pipeline | "ToExamples" >> to_examples
            counts = []
            for split, examples in splits.items():
                write_tfrecords(examples, os.path.join(scratch, split), split)
                counts.append(examples | f"Count[{split}]" >> beam.Map(count, split))
            _ = (
                counts
                | "AllSplits" >> beam.Flatten()
                | "SumPerKey" >> beam.CombinePerKey(sum_counts)
                | "Gather" >> beam.combiners.ToList()
                | "WriteCounts" >> beam.Map(write_json, counts_file)
            )
        with open(counts_file) as f:
            summary = summarize(json.load(f))
        os.remove(counts_file)
        with open(os.path.join(scratch, SUMMARY_FILE), "w") as f:
            json.dump(summary, f, indent=2)
    return summary
