"""Settings dataclasses overridden by name: from a JSON file, flags, or `--set NAME=VALUE`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any, Literal, TypeVar

ExperimentName = Literal["babi", "lm"]  # the paper's question answering, or language modelling
EXPERIMENT_NAMES: tuple[ExperimentName, ...] = ("babi", "lm")
ModelKind = Literal["memn2n", "lstm"]  # the memory network, or its LSTM baseline
MODELS: tuple[ModelKind, ...] = ("memn2n", "lstm")
Encoding = Literal["bow", "position"]  # sentence encoding: bag of words, or position (PE)
ENCODINGS: tuple[Encoding, ...] = ("bow", "position")
# Temporal vectors: one learned per memory slot (the paper's T_A, T_C), or learned at slots 0, 1,
# 3, 7, ..., 2^a - 1 and blended linearly in log(1 + slot) between them (model.memn2n.log_blend)
TemporalGrid = Literal["slot", "log"]
TEMPORAL_GRIDS: tuple[TemporalGrid, ...] = ("slot", "log")
WeightTying = Literal["adjacent", "layerwise"]
WEIGHT_TYINGS: tuple[WeightTying, ...] = ("adjacent", "layerwise")
Reduction = Literal["sum", "mean"]  # the loss over a batch: summed (the paper's code), or averaged
REDUCTIONS: tuple[Reduction, ...] = ("sum", "mean")
Settings = TypeVar("Settings")  # a frozen settings dataclass


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """Fail naming the field when `value` is not one of `choices`."""
    if value not in choices:
        raise ValueError(f"{name} {value!r} is not one of {tuple(choices)}")


def check_positive(config: Any, names: Sequence[str]) -> None:
    """Fail naming the first of `names` whose value in `config` is below 1."""
    for name in names:
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}")


def override(config: Settings, changes: dict, source: str) -> Settings:
    """A copy of a settings dataclass with `changes`, checked by name and type against it."""
    names = [f.name for f in dataclasses.fields(config)]  # type: ignore[arg-type]
    if unknown := sorted(set(changes) - set(names)):
        raise ValueError(f"{source}: unknown setting(s) {unknown}; known: {', '.join(names)}")
    for name, value in changes.items():
        expected = type(getattr(config, name))
        if not (type(value) is expected or (expected is float and type(value) is int)):
            raise ValueError(f"{source}: {name} must be a {expected.__name__}, got {value!r}")
    return dataclasses.replace(config, **changes)  # type: ignore[type-var]


def parse_assignments(config: Any, assignments: Sequence[str]) -> dict:
    """["epochs=40", "linear_start=false"] -> {"epochs": 40, "linear_start": False}, by type."""
    names = {f.name for f in dataclasses.fields(config)}
    changes: dict[str, Any] = {}
    for assignment in assignments:
        name, equals, text = assignment.partition("=")
        if not equals or name not in names:
            raise ValueError(f"--set {assignment!r}: expected NAME=VALUE with a known NAME")
        current = getattr(config, name)
        try:
            if isinstance(current, bool):
                if text.lower() not in ("true", "false"):
                    raise ValueError(text)
                changes[name] = text.lower() == "true"
            else:
                changes[name] = type(current)(text)
        except ValueError:
            raise ValueError(
                f"--set {assignment!r}: {name} takes a {type(current).__name__}"
            ) from None
    return changes


def read_settings_file(path: str) -> dict:
    """A JSON object of settings, e.g. {"epochs": 40, "embedding_dim": 30}."""
    with open(path) as f:
        changes = json.load(f)
    if not isinstance(changes, dict):
        raise ValueError(f"{path}: expected a JSON object of settings")
    return changes


def apply_overrides(
    config: Settings, settings_file: str | None, flags: dict, assignments: Sequence[str]
) -> Settings:
    """Defaults, then a JSON file of settings, then flags that were given, then `--set`s."""
    if settings_file:
        config = override(config, read_settings_file(settings_file), settings_file)
    config = override(config, {k: v for k, v in flags.items() if v is not None}, "flags")
    return override(config, parse_assignments(config, assignments), "--set")
