"""The Evaluator's configs: what each experiment's candidate must reach on the test split, alone
and against its LSTM baseline."""

from __future__ import annotations

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import config_pb2

from model.signatures import EXAMPLES_SIGNATURE, LABEL_KEY, PREDICTIONS_KEY, TRANSFORM_SIGNATURE

SLICE_FEATURE = "task"


def accuracy_eval_config(min_accuracy: float, baseline_margin: float) -> tfma.EvalConfig:
    """bAbI: test accuracy overall and per task; bless when the overall accuracy is above
    `min_accuracy` and above the LSTM baseline's by `baseline_margin`."""
    model_spec = tfma.ModelSpec(
        signature_name=EXAMPLES_SIGNATURE,
        label_key=LABEL_KEY,
        prediction_key=PREDICTIONS_KEY,
        preprocessing_function_names=[TRANSFORM_SIGNATURE],
        model_type=tfma.TF_GENERIC,
    )
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_accuracy}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": baseline_margin},
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


def perplexity_eval_config(max_perplexity: float, perplexity_margin: float) -> tfma.EvalConfig:
    """Language models: test perplexity over every word; bless when it is below
    `max_perplexity` and at least `perplexity_margin` (a fraction) below the LSTM baseline's."""
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(upper_bound={"value": max_perplexity}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.LOWER_IS_BETTER,
            relative={"value": -perplexity_margin},
        ),
    )
    perplexity = tfma.MetricConfig(
        class_name="Perplexity", module="model.lm.metrics", threshold=threshold
    )
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=EXAMPLES_SIGNATURE, model_type=tfma.TF_GENERIC)],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[
            tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name="ExampleCount"), perplexity])
        ],
    )
