"""LMExampleGen: a FileBasedExampleGen whose Beam executor reads a word-level corpus (PTB or
Text8) into blocks of its token stream, one tf.Example each, in splits train, eval and test."""

from __future__ import annotations

import os
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

from components.lm_beam import CorpusToExamples
from components.lm_corpus import CONTEXT_WORDS, PTB_FILES, SPLITS, TEXT8_FILE, corpus_spans


class Executor(BaseExampleGenExecutor):
    """Builds the corpus's own train/eval/test splits instead of hash buckets."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802 - TFX API
        raise NotImplementedError("LMExampleGen builds all splits in GenerateExamplesByBeam")

    def GenerateExamplesByBeam(  # noqa: N802 - TFX API
        self, pipeline: beam.Pipeline, exec_properties: dict[str, Any]
    ) -> dict[str, beam.PCollection]:
        return pipeline | "CorpusToExamples" >> CorpusToExamples(
            exec_properties["corpus"],
            exec_properties[standard_component_specs.INPUT_BASE_KEY],
            exec_properties["context_words"],
        )


class LMExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    """FileBasedExampleGen's parameters plus the corpus and the context kept with each block."""

    PARAMETERS = {
        **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
        "corpus": ExecutionParameter(type=str),
        "context_words": ExecutionParameter(type=int),
    }


class LMExampleGen(base_beam_component.BaseBeamComponent):
    """A PTB or Text8 corpus as tf.Examples (`index`, `tokens`, `context`).

    The input config names each split's file, so the driver fingerprints them and a changed
    file invalidates the cached output; `check_files=False` skips the local check (for
    pipelines compiled to run where `data_dir` is remote).
    """

    SPEC_CLASS = LMExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
    DRIVER_CLASS = driver.FileBasedDriver

    def __init__(
        self,
        corpus: str,
        data_dir: str,
        context_words: int = CONTEXT_WORDS,
        check_files: bool = True,
    ):
        if check_files:  # fail at construction, before anything runs
            corpus_spans(corpus, data_dir)
            data_dir = os.path.abspath(data_dir)
        patterns = PTB_FILES if corpus == "ptb" else dict.fromkeys(SPLITS, TEXT8_FILE)
        input_config = tfx.proto.Input(
            splits=[tfx.proto.Input.Split(name=s, pattern=patterns[s]) for s in SPLITS]
        )
        spec = LMExampleGenSpec(
            input_base=data_dir,
            input_config=input_config,
            output_config=tfx.proto.Output(),
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            corpus=corpus,
            context_words=context_words,
            examples=types.Channel(type=standard_artifacts.Examples),
        )
        super().__init__(spec=spec)
