"""Keras saving for the project's models, each built from a frozen settings dataclass."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import keras


class ConfiguredModel(keras.Model):
    """A model made from `config_class(**fields)` and a seed, and saved as them; its inputs are
    word ids (which also types a SavedModel's default signature)."""

    config_class: ClassVar[type]

    def __init__(self, config: Any, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.config, self.seed = config, seed

    @property
    def input_dtype(self) -> str:
        return "int32"

    def get_config(self) -> dict:
        return {"config": dataclasses.asdict(self.config), "seed": self.seed, "name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> ConfiguredModel:
        return cls(
            cls.config_class(**config["config"]), seed=config.get("seed"), name=config["name"]
        )
