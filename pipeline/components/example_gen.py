"""What both ExampleGens share: a FileBasedExampleGen whose Beam transform builds the dataset's
own train/eval/test splits, and whose input config names each split's files so that TFX's
FileBasedDriver fingerprints them (a changed file invalidates the cached output)."""

from __future__ import annotations

import abc
from typing import Any

import apache_beam as beam
from tfx import types
from tfx import v1 as tfx
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts


class SplitsExecutor(BaseExampleGenExecutor):
    """Builds every split in one Beam transform instead of TFX's hash buckets."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802 - TFX API
        raise NotImplementedError(f"{type(self).__name__} builds all splits in one transform")

    def GenerateExamplesByBeam(  # noqa: N802 - TFX API
        self, pipeline: beam.Pipeline, exec_properties: dict[str, Any]
    ) -> dict[str, beam.PCollection]:
        return pipeline | "ToExamples" >> self.to_examples(exec_properties)

    @abc.abstractmethod
    def to_examples(self, exec_properties: dict[str, Any]) -> beam.PTransform:
        """The transform from the component's parameters: pipeline -> {split: tf.Examples}."""


def split_files_spec(input_base: str, patterns: dict[str, str]) -> dict[str, Any]:
    """FileBasedExampleGenSpec's arguments for splits named by file patterns under
    `input_base`, written as gzipped TFRecords of tf.Example."""
    return {
        "input_base": input_base,
        "input_config": tfx.proto.Input(
            splits=[tfx.proto.Input.Split(name=s, pattern=p) for s, p in patterns.items()]
        ),
        "output_config": tfx.proto.Output(),
        "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
        "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        "examples": types.Channel(type=standard_artifacts.Examples),
    }
