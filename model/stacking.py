"""Several seeds of a model trained as one: weights with a leading seed axis (`MemN2N(...,
seeds=...)`), each seed with its own data order, gradient clipping and learning rate, so that a
seed's run does not depend on which seeds share the stack (docs/decisions/stacked-seeds.md)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

Seeds = tuple[int, ...]


class SeedNormal(keras.initializers.Initializer):
    """N(0, stddev) drawn for each seed from (seed, `name`) alone, stacked on a leading axis: a
    seed's initial weights do not depend on which other seeds share the stack."""

    def __init__(self, stddev: float, seeds: Sequence[int], name: str):
        self.stddev, self.seeds, self.name = stddev, tuple(seeds), name

    def __call__(self, shape, dtype=None):
        salt = zlib.crc32(self.name.encode())
        return ops.stack(
            [
                keras.random.normal(
                    shape[1:], stddev=self.stddev, dtype=dtype, seed=seed * 7919 + salt
                )
                for seed in self.seeds
            ]
        )

    def get_config(self) -> dict:
        return {"stddev": self.stddev, "seeds": list(self.seeds), "name": self.name}


class StackableLayer(keras.layers.Layer):
    """A layer whose weights get a leading seed axis when it is built with `seeds`."""

    def __init__(self, init_stddev: float, seeds: Seeds | None = None, **kwargs):
        super().__init__(**kwargs)
        self.init_stddev, self.seeds = init_stddev, tuple(seeds) if seeds else None

    def normal_weight(self, shape: tuple[int, ...], name: str):
        """A weight of `shape` (with the seed axis in front when stacked), N(0, init_stddev)."""
        if self.seeds is None:
            initializer = keras.initializers.RandomNormal(stddev=self.init_stddev)
            return self.add_weight(shape=shape, initializer=initializer, name=name)
        initializer = SeedNormal(self.init_stddev, self.seeds, f"{self.name}/{name}")
        return self.add_weight(shape=(len(self.seeds), *shape), initializer=initializer, name=name)

    def get_config(self) -> dict:
        seeds = list(self.seeds) if self.seeds else None
        return {**super().get_config(), "init_stddev": self.init_stddev, "seeds": seeds}


def take_per_seed(table, index, stacked: bool):
    """Rows of `table` [R, d] at `index` [...]; stacked, table [S, R, d] and index [S, ...]: each
    seed's rows of its own table. Returns [(S,) ..., d]."""
    if not stacked:
        return ops.take(table, index, axis=0)
    seeds, rows = ops.shape(table)[0], ops.shape(table)[1]
    offsets = per_seed(ops.arange(seeds, dtype="int32") * rows, len(index.shape))
    flat = ops.reshape(table, (-1, ops.shape(table)[-1]))
    return ops.take(flat, index + offsets, axis=0)


def per_seed(values, rank: int):
    """[S] values shaped to broadcast against a tensor of `rank` with the seed axis first."""
    return ops.reshape(values, (-1,) + (1,) * (rank - 1))


def replicas_in_sync() -> int:
    """How many replicas a step's batch is split over: the TF strategy in scope; 1 on other
    backends."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    """Seed `seed`'s order of `size` examples in `epoch`: drawn from (seed, epoch) alone, so a
    resumed run and a run in another stack see the same order."""
    return np.random.default_rng([seed, epoch]).permutation(size)


class SeedBatches(keras.utils.PyDataset):
    """Training batches for a stack, ({name: [B, S, ...]}, {name: [B, S]}): seed s reads every
    example once per epoch in `epoch_order(s, epoch)`. `epoch` is set by `FollowEpochs`. Not
    `stacked` (one seed): ({name: [B, ...]}, {name: [B]}) for a model without a seed axis."""

    varying: dict[str, tuple[int, ...]] = {}  # inputs whose axes besides the first vary

    def __init__(
        self,
        inputs: dict[str, np.ndarray],
        targets: dict[str, np.ndarray],
        seeds: Sequence[int],
        batch_size: int,
        stacked: bool = True,
    ):
        super().__init__()
        if not stacked and len(seeds) != 1:
            raise ValueError(f"batches for a model without a seed axis take one seed, got {seeds}")
        self.inputs, self.targets, self.seeds = inputs, targets, tuple(seeds)
        self.stacked = stacked
        self.batch_size, self.epoch = batch_size, 0
        self.size = len(next(iter(targets.values())))
        self._order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return -(-self.size // self.batch_size)

    def order(self) -> np.ndarray:
        """[M, S]: row i holds the example each seed reads i-th this epoch."""
        if self._order is None or self._order[0] != self.epoch:
            columns = [epoch_order(seed, self.epoch, self.size) for seed in self.seeds]
            self._order = (self.epoch, np.stack(columns, axis=1))
        return self._order[1]

    def for_fit(self):
        """What Keras's fit should read: these batches, or on TensorFlow the same batches as a
        tf.data pipeline whose first axis and `varying` axes are left open (Keras fixes a
        PyDataset's shapes from its first two batches)."""
        if keras.backend.backend() != "tensorflow":
            return self
        import tensorflow as tf

        def specs(arrays: dict[str, np.ndarray]) -> dict:
            shapes = {name: list(array.shape) for name, array in arrays.items()}
            for name, shape in shapes.items():
                for axis in (0, *self.varying.get(name, ())):
                    shape[axis] = None
            return {name: tf.TensorSpec(shapes[name], a.dtype) for name, a in arrays.items()}

        signature = tuple(specs(part) for part in self[0])
        batches = tf.data.Dataset.from_generator(
            lambda: (self[i] for i in range(len(self))), output_signature=signature
        )
        cardinality = tf.data.experimental.assert_cardinality(len(self))
        return batches.apply(cardinality).prefetch(2)

    def __getitem__(self, index: int):
        rows = self.order()[index * self.batch_size : (index + 1) * self.batch_size]  # [B, S]
        if not self.stacked:
            rows = rows[:, 0]
        inputs = {name: values[rows] for name, values in self.inputs.items()}
        return inputs, {name: values[rows] for name, values in self.targets.items()}


class FollowEpochs(keras.callbacks.Callback):
    """Tells a SeedBatches which epoch begins, before Keras reads its first batch."""

    def __init__(self, batches: SeedBatches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.batches.epoch = epoch
