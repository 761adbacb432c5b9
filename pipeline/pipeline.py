"""`create_pipeline`: the TFX pipeline as a pure function of its config and experiment."""

from __future__ import annotations

import os

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.types import BaseChannel, standard_artifacts

from model.settings import ModelKind
from pipeline.components.serving_canary import ServingCanary
from pipeline.configs import Baseline, Experiment, PipelineConfig

BASELINE_TRAINER = "BaselineTrainer"
BLESSED_MODEL = "LatestBlessedModel"
BLESSED_MODEL_EVALUATOR = "BlessedModelEvaluator"


def create_pipeline(
    config: PipelineConfig,
    experiment: Experiment,
    metadata_connection_config: metadata_store_pb2.ConnectionConfig | None = None,
) -> tfx.dsl.Pipeline:
    """The experiment's example generator -> statistics, schema, validation -> Transform ->
    Trainer (MemN2N) and BaselineTrainer (LSTM) -> Evaluator (against the LSTM) and
    BlessedModelEvaluator (against the latest blessed MemN2N, as in the taxi template) ->
    ServingCanary -> Pusher."""
    examples_gen = experiment.example_gen(config)
    examples = examples_gen.outputs["examples"]
    statistics_gen = tfx.components.StatisticsGen(examples=examples)
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=False
    )
    schema = schema_gen.outputs["schema"]
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema
    )
    transform = tfx.components.Transform(
        examples=examples,
        schema=schema,
        preprocessing_fn=experiment.preprocessing_fn,
        custom_config=experiment.transform_config(config),
        splits_config=tfx.proto.SplitsConfig(analyze=["train"], transform=["train", "eval"]),
    )

    def trainer(model: ModelKind) -> tfx.components.Trainer:
        return tfx.components.Trainer(
            run_fn=experiment.run_fn,
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema,
            train_args=tfx.proto.TrainArgs(splits=["train"]),
            eval_args=tfx.proto.EvalArgs(splits=["eval"]),
            custom_config=config.trainer_config(model),
        )

    memn2n_trainer = trainer("memn2n")
    lstm_trainer = trainer("lstm").with_id(BASELINE_TRAINER)

    def evaluator(baseline_model: BaseChannel, baseline: Baseline) -> tfx.components.Evaluator:
        return tfx.components.Evaluator(
            examples=examples,
            model=memn2n_trainer.outputs["model"],
            baseline_model=baseline_model,
            eval_config=experiment.eval_config(config, baseline),
            example_splits=["test"],
        )

    lstm_evaluator = evaluator(lstm_trainer.outputs["model"], "lstm")
    # The models this evaluator blessed in earlier runs: the latest is what serves (or what
    # passed it and failed the LSTM check or the canary, a stricter bar). None on a first run,
    # when TFX's Evaluator drops the change thresholds.
    blessed_model = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(
            type=standard_artifacts.Model,
            producer_component_id=memn2n_trainer.id,
            output_key="model",
        ),
        model_blessing=tfx.dsl.Channel(
            type=standard_artifacts.ModelBlessing,
            producer_component_id=BLESSED_MODEL_EVALUATOR,
            output_key="blessing",
        ),
    ).with_id(BLESSED_MODEL)
    blessed_model_evaluator = evaluator(blessed_model.outputs["model"], "blessed").with_id(
        BLESSED_MODEL_EVALUATOR
    )
    canary = ServingCanary(
        model=memn2n_trainer.outputs["model"],
        examples=examples,
        model_blessing=lstm_evaluator.outputs["blessing"],
        serving_blessing=blessed_model_evaluator.outputs["blessing"],
        requests=config.canary_requests,
        experiment=experiment.name,
    )
    pusher = tfx.components.Pusher(
        model=memn2n_trainer.outputs["model"],
        model_blessing=blessed_model_evaluator.outputs["blessing"],
        infra_blessing=canary.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=os.path.join(config.serving_dir, config.model_name)
            )
        ),
    )
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[
            examples_gen,
            statistics_gen,
            schema_gen,
            example_validator,
            transform,
            memn2n_trainer,
            lstm_trainer,
            lstm_evaluator,
            blessed_model,
            blessed_model_evaluator,
            canary,
            pusher,
        ],
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_args),
        enable_cache=config.enable_cache,
    )
