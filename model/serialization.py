"""The project's models' base: Keras saving from a frozen settings dataclass, and Keras's fit
under TF's multi-worker strategy for models that take a dict of inputs."""

from __future__ import annotations

import dataclasses
import random
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

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras 3.15 builds a model under a tf.distribute strategy from the MEAN of the first
        batch over the replicas, which TF's collective reduce cannot take for a dict of inputs
        (keras-team/keras#20329, open). Only its shapes are needed: this replica's batch. Its
        read starts a pass over a PyDataset, which draws a batch order from Python's `random`:
        the state is put back, so that training reads the batches one worker reads. Only the
        TensorFlow backend's fit calls this, hence the import here."""
        import tensorflow as tf

        def one_replica(value):
            """The first local replica's part of a distributed value; other values as given."""
            if isinstance(value, tf.distribute.DistributedValues):
                return self.distribute_strategy.experimental_local_results(value)[0]
            return value

        if iterator is not None and self._distribute_strategy is not None:
            state = random.getstate()
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(one_replica, next(batches))
                break
            random.setstate(state)
        super()._maybe_symbolic_build(data_batch=data_batch)

    def get_metrics_result(self) -> dict:
        """Keras's, but inside a step under MultiWorkerMirroredStrategy each figure has shape [1]:
        Keras 3.15 averages a step's figures over the workers along axis 0, which a scalar does
        not have (tensorflow/tensorflow#72388). The average is a scalar again."""
        import tensorflow as tf

        results = super().get_metrics_result()
        strategy = tf.distribute.get_strategy()
        across_workers = (
            isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode()
        )  # Keras's own test for that average
        if tf.distribute.in_cross_replica_context() or not across_workers:
            return results
        return {name: tf.reshape(value, [1]) for name, value in results.items()}
