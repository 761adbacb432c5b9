"""ServingCanary: between Evaluator and Pusher, load the candidate in the model server and ask it
real eval questions over gRPC; an InfraBlessing that Pusher requires, as InfraValidator writes."""

from __future__ import annotations

import json
import os
from typing import Any

from tfx import types
from tfx.components.util import model_utils
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import path_utils

from serving.canary import run_canary

BLESSED_FILE, NOT_BLESSED_FILE, REPORT_FILE = "INFRA_BLESSED", "INFRA_NOT_BLESSED", "canary.json"


class Executor(base_executor.BaseExecutor):
    """serving.canary.run_canary on the Trainer's serving model, if both Evaluators (against
    the LSTM; against the latest blessed model) blessed it."""

    def Do(  # noqa: N802 - TFX API
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        model = artifact_utils.get_single_instance(input_dict["model"])
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        unblessed = [
            key
            for key in ("model_blessing", "serving_blessing")
            if not model_utils.is_model_blessed(artifact_utils.get_single_instance(input_dict[key]))
        ]
        if unblessed:
            report = {"blessed": False, "reason": f"the Evaluator of {unblessed[0]} did not bless"}
        else:
            report = run_canary(
                path_utils.serving_model_path(model.uri),
                examples.uri,
                exec_properties["split"],
                exec_properties["requests"],
                experiment=exec_properties["experiment"],
            )
        with open(os.path.join(blessing.uri, REPORT_FILE), "w") as f:
            json.dump(report, f, indent=1)
        marker = BLESSED_FILE if report["blessed"] else NOT_BLESSED_FILE
        open(os.path.join(blessing.uri, marker), "w").close()
        blessing.set_int_custom_property("blessed", 1 if report["blessed"] else 0)


class ServingCanarySpec(ComponentSpec):
    PARAMETERS = {
        "split": ExecutionParameter(type=str),
        "requests": ExecutionParameter(type=int),
        "experiment": ExecutionParameter(type=str),
    }
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "model_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
        "serving_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
    }
    OUTPUTS = {"blessing": ChannelParameter(type=standard_artifacts.InfraBlessing)}


class ServingCanary(base_component.BaseComponent):
    """Blesses the model for serving when the server loads it and answers `requests` gRPC
    Predicts of eval questions (`experiment` "babi") or text prefixes ("lm") correctly formed;
    Pusher's `infra_blessing` input."""

    SPEC_CLASS = ServingCanarySpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        examples: types.BaseChannel,
        model_blessing: types.BaseChannel,
        serving_blessing: types.BaseChannel,
        split: str = "eval",
        requests: int = 10,
        experiment: str = "babi",
    ):
        spec = ServingCanarySpec(
            model=model,
            examples=examples,
            model_blessing=model_blessing,
            serving_blessing=serving_blessing,
            split=split,
            requests=requests,
            experiment=experiment,
            blessing=types.Channel(type=standard_artifacts.InfraBlessing),
        )
        super().__init__(spec=spec)
