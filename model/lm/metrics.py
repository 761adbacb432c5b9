"""A TFMA metric for language models: perplexity over every word of the evaluated examples."""

from __future__ import annotations

import math
from collections.abc import Iterable

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.metrics import metric_types

from model.signatures import NLL_KEY, PERPLEXITY, WORDS_KEY


class Perplexity(metric_types.Metric):
    """exp(sum of the model's `nll` outputs / sum of its `words` outputs): each example is a
    block of the corpus, scored word by word after the words before it."""

    def __init__(self, name: str = PERPLEXITY):
        super().__init__(perplexity_computations, name=name)


def perplexity_computations(
    name: str = PERPLEXITY,
    model_names: list[str] | None = None,
    example_weighted: bool = False,
) -> metric_types.MetricComputations:
    """One computation per model (the candidate and the baseline)."""
    computations = []
    for model_name in model_names or [""]:
        key = metric_types.MetricKey(
            name=name, model_name=model_name, example_weighted=example_weighted
        )
        preprocessor = metric_types.StandardMetricInputsPreprocessor(
            include_filter={constants.PREDICTIONS_KEY: {}}, include_default_inputs=False
        )
        computations.append(
            metric_types.MetricComputation(
                keys=[key], preprocessors=[preprocessor], combiner=PerplexityCombiner(key)
            )
        )
    return computations


class PerplexityCombiner(beam.CombineFn):
    """Accumulates [summed NLL, words] of one model's predictions."""

    def __init__(self, key: metric_types.MetricKey):
        self.key = key

    def create_accumulator(self) -> np.ndarray:
        return np.zeros(2)

    def add_input(
        self, accumulator: np.ndarray, element: metric_types.StandardMetricInputs
    ) -> np.ndarray:
        outputs = element.prediction  # {output: value}, or {model: {output: value}}
        if self.key.model_name in outputs:
            outputs = outputs[self.key.model_name]
        if NLL_KEY not in outputs or WORDS_KEY not in outputs:
            raise ValueError(
                f"perplexity needs the model outputs {NLL_KEY!r} and {WORDS_KEY!r}; "
                f"model {self.key.model_name!r} gave {sorted(outputs)}"
            )
        return accumulator + [np.sum(outputs[NLL_KEY]), np.sum(outputs[WORDS_KEY])]

    def merge_accumulators(self, accumulators: Iterable[np.ndarray]) -> np.ndarray:
        return np.sum(list(accumulators), axis=0)

    def extract_output(self, accumulator: np.ndarray) -> dict:
        nll, words = accumulator
        return {self.key: math.exp(nll / words) if words else float("nan")}
