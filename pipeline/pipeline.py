"""`create_pipeline`: the TFX pipeline as a pure function of its config."""

from __future__ import annotations

import os

import tensorflow_model_analysis as tfma
from ml_metadata.proto import metadata_store_pb2
from tensorflow_model_analysis.proto import config_pb2
from tfx import v1 as tfx

from components.babi_example_gen import BabiExampleGen
from components.lm_example_gen import LMExampleGen
from components.serving_canary import ServingCanary
from model.export import EXAMPLES_SIGNATURE, LABEL_KEY, PREDICTIONS_KEY, TRANSFORM_SIGNATURE
from pipeline.configs import PipelineConfig

ACCURACY = "sparse_categorical_accuracy"
SLICE_FEATURE = "task"
BASELINE_TRAINER = "BaselineTrainer"


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """Test accuracy overall and per task; bless when the overall accuracy is above
    `min_accuracy` and above the LSTM baseline's by `baseline_margin`."""
    model_spec = tfma.ModelSpec(
        signature_name=EXAMPLES_SIGNATURE,
        label_key=LABEL_KEY,
        prediction_key=PREDICTIONS_KEY,
        preprocessing_function_names=[TRANSFORM_SIGNATURE],
        model_type=tfma.TF_GENERIC,
    )
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": config.min_accuracy}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": config.baseline_margin},
        ),
    )
    accuracy = tfma.MetricConfig(  # the bounds hold for all tasks together, not for each task
        class_name="SparseCategoricalAccuracy",
        per_slice_thresholds=[
            config_pb2.PerSliceMetricThreshold(
                slicing_specs=[tfma.SlicingSpec()], threshold=threshold
            )
        ],
    )
    return tfma.EvalConfig(
        model_specs=[model_spec],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[SLICE_FEATURE])],
        metrics_specs=[
            tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name="ExampleCount"), accuracy])
        ],
    )


def lm_eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """Test perplexity over every word; bless when it is below `max_perplexity` and at least
    `perplexity_margin` (a fraction) below the LSTM baseline's."""
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(upper_bound={"value": config.max_perplexity}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.LOWER_IS_BETTER,
            relative={"value": -config.perplexity_margin},
        ),
    )
    perplexity = tfma.MetricConfig(
        class_name="Perplexity", module="model.lm_metrics", threshold=threshold
    )
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=EXAMPLES_SIGNATURE, model_type=tfma.TF_GENERIC)],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[
            tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name="ExampleCount"), perplexity])
        ],
    )


def example_gen(config: PipelineConfig) -> BabiExampleGen | LMExampleGen:
    """The experiment's example generator."""
    if config.experiment == "lm":
        return LMExampleGen(
            config.corpus, config.corpus_dir, config.context_words, check_files=config.check_data
        )
    return BabiExampleGen(
        babi_dir=config.babi_dir,
        train_set=config.train_set,
        tasks=config.tasks,
        eval_every=config.eval_every,
        check_files=config.check_data,
    )


def create_pipeline(
    config: PipelineConfig,
    metadata_connection_config: metadata_store_pb2.ConnectionConfig | None = None,
) -> tfx.dsl.Pipeline:
    """Example generator (bAbI, or a corpus for "lm") -> statistics, schema, validation ->
    Transform -> Trainer (MemN2N) and Trainer (LSTM baseline) -> Evaluator -> ServingCanary ->
    Pusher."""
    language_model = config.experiment == "lm"
    examples_gen = example_gen(config)
    examples = examples_gen.outputs["examples"]
    statistics_gen = tfx.components.StatisticsGen(examples=examples)
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=False
    )
    schema = schema_gen.outputs["schema"]
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema
    )
    if language_model:
        preprocessing = "model.lm_preprocessing.preprocessing_fn"
        transform_config = {"min_count": config.training_settings("memn2n").min_count}
    else:
        preprocessing = "model.preprocessing.preprocessing_fn"
        transform_config = {
            "memory_size": config.memory_size,
            "sentence_size": config.sentence_size,
        }
    transform = tfx.components.Transform(
        examples=examples,
        schema=schema,
        preprocessing_fn=preprocessing,
        custom_config=transform_config,
        splits_config=tfx.proto.SplitsConfig(analyze=["train"], transform=["train", "eval"]),
    )

    def trainer(model: str) -> tfx.components.Trainer:
        return tfx.components.Trainer(
            run_fn="model.lm_trainer.run_fn" if language_model else "model.trainer.run_fn",
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema,
            train_args=tfx.proto.TrainArgs(splits=["train"]),
            eval_args=tfx.proto.EvalArgs(splits=["eval"]),
            custom_config=config.trainer_config(model),
        )

    memn2n_trainer = trainer("memn2n")
    lstm_trainer = trainer("lstm").with_id(BASELINE_TRAINER)
    evaluator = tfx.components.Evaluator(
        examples=examples,
        model=memn2n_trainer.outputs["model"],
        baseline_model=lstm_trainer.outputs["model"],
        eval_config=lm_eval_config(config) if language_model else eval_config(config),
        example_splits=["test"],
    )
    canary = ServingCanary(
        model=memn2n_trainer.outputs["model"],
        examples=examples,
        model_blessing=evaluator.outputs["blessing"],
        requests=config.canary_requests,
        experiment=config.experiment,
    )
    pusher = tfx.components.Pusher(
        model=memn2n_trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
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
            evaluator,
            canary,
            pusher,
        ],
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_args),
        enable_cache=config.enable_cache,
    )
