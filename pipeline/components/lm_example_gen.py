"""LMExampleGen: a word-level corpus (PTB or Text8) as blocks of its token stream, one
tf.Example each, in splits train, eval and test."""

from __future__ import annotations

import os
from typing import Any

import apache_beam as beam
from tfx.components.example_gen import driver
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_component_specs
from tfx.types.component_spec import ExecutionParameter

from ingest.files import PTB_FILES, SPLITS
from ingest.lm.beam import CorpusToExamples
from ingest.lm.corpus import CONTEXT_WORDS, TEXT8_FILE, corpus_spans
from pipeline.components.example_gen import SplitsExecutor, split_files_spec


class Executor(SplitsExecutor):
    def to_examples(self, exec_properties: dict[str, Any]) -> beam.PTransform:
        return CorpusToExamples(
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
    """A corpus as tf.Examples (`index`, `tokens`, `context`); `check_files=False` skips the
    local check (for pipelines compiled to run where `data_dir` is remote)."""

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
        spec = LMExampleGenSpec(
            **split_files_spec(data_dir, patterns),
            corpus=corpus,
            context_words=context_words,
        )
        super().__init__(spec=spec)
