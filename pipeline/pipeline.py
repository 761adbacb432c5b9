"""`create_pipeline`: the TFX pipeline as a pure function of its config."""

from __future__ import annotations

import os

from tfx import v1 as tfx

from components.babi_example_gen import BabiExampleGen
from pipeline.configs import PipelineConfig


def create_pipeline(config: PipelineConfig) -> tfx.dsl.Pipeline:
    """bAbI example generator -> StatisticsGen -> SchemaGen -> ExampleValidator."""
    example_gen = BabiExampleGen(
        babi_dir=config.babi_dir,
        train_set=config.train_set,
        tasks=config.tasks,
        eval_every=config.eval_every,
    )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=False
    )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=os.path.abspath(config.pipeline_root),
        components=[example_gen, statistics_gen, schema_gen, example_validator],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.abspath(config.metadata_path)
        ),
        beam_pipeline_args=list(config.beam_args),
        enable_cache=config.enable_cache,
    )
