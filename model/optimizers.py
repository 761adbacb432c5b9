"""The project's optimizers. Two SGDs clip the gradient's global norm as the paper's code does:
SparseSGD keeps embedding gradients sparse, SeedwiseSGD steps a stack of seeds seed by seed. SGD
and Adam are Keras's.

Under a tf.distribute strategy with several replicas (MultiWorkerMirroredStrategy), each sums
the replicas' gradients before the clip (`ReplicaSummed`), so the clip sees the whole batch's
gradient as one worker does; Keras's own optimizers clip each replica's part, then sum.

SparseSGD is for steps run by TensorFlow's graph executor (the language model's:
docs/decisions/lm-runs.md). Keras's SGD with `global_clipnorm` makes each embedding's gradient
(TF's IndexedSlices, a row per word looked up) dense for the scaling, then updates all V rows;
its norm sums the squares of the looked-up rows, so a word looked up twice counts as two rows.
Here the rows of a word are summed first (the norm is the dense gradient's, as the paper's Torch
code clips), and only the rows looked up are updated: the PTB step in runs of 16 went from 32.8
to 30.1 ms (BUILD_NOTES, "The LM step in runs"). `tf.unique` has no XLA kernel: a step compiled
with XLA keeps Keras's SGD.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from model.stacking import per_seed


def merge_rows(gradient):
    """An IndexedSlices with each row index once (its rows summed); other gradients as given."""
    if not isinstance(gradient, tf.IndexedSlices):
        return gradient
    rows, position = tf.unique(gradient.indices)
    summed = tf.math.unsorted_segment_sum(gradient.values, position, tf.shape(rows)[0])
    return tf.IndexedSlices(summed, rows, gradient.dense_shape)


def scaled(gradient, factor):
    """`gradient` times a scalar, an IndexedSlices staying one."""
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values * factor, gradient.indices, gradient.dense_shape)
    return gradient * factor


def summed_over_replicas(grads: list) -> list:
    """Each gradient summed over the replicas in sync; as given with one replica."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return grads
    return context.all_reduce(tf.distribute.ReduceOp.SUM, grads)


class ReplicaSummed(keras.optimizers.Optimizer):
    """An optimizer whose clip sees the gradients summed over the replicas: put before a Keras
    optimizer's class, it makes that optimizer's `clipnorm` or `global_clipnorm` clip the whole
    batch's gradient, as one worker's does."""

    def apply(self, grads, trainable_variables=None):
        return super().apply(self.clip(summed_over_replicas(list(grads))), trainable_variables)

    def clip(self, grads: list) -> list:
        """The gradients to step by (before any clip of Keras's own)."""
        return grads

    def _all_reduce_sum_gradients(self, grads_and_vars):
        """Keras's sum over the replicas (TensorFlow backend): done in `apply`, before the clip."""
        return grads_and_vars


class SGD(ReplicaSummed, keras.optimizers.SGD):
    """Keras's SGD, its clip applied to the gradient summed over the replicas."""


class Adam(ReplicaSummed, keras.optimizers.Adam):
    """Keras's Adam, its clip applied to the gradient summed over the replicas."""


class SparseSGD(ReplicaSummed):
    """Plain SGD (no momentum) with the dense gradient's global norm clipped at `clipnorm`;
    embedding rows not looked up in a step are not touched."""

    def __init__(self, learning_rate: float, clipnorm: float, name: str = "sparse_sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.sparse_clipnorm = clipnorm

    def clip(self, grads: list) -> list:
        merged = [merge_rows(g) for g in grads]
        squares = [
            tf.reduce_sum(tf.square(g.values if isinstance(g, tf.IndexedSlices) else g))
            for g in merged
        ]
        norm = tf.sqrt(tf.add_n(squares))
        scale = self.sparse_clipnorm / tf.maximum(norm, self.sparse_clipnorm)
        return [scaled(g, scale) for g in merged]

    def update_step(self, gradient, variable, learning_rate) -> None:
        self.assign_sub(variable, scaled(gradient, tf.cast(learning_rate, variable.dtype)))

    def get_config(self) -> dict:
        return {**super().get_config(), "clipnorm": self.sparse_clipnorm}


class SeedwiseSGD(ReplicaSummed):
    """Plain SGD for a stack: seed s steps by `seed_rates[s]` times its gradient, whose global
    norm over all of seed s's weights is clipped at `clipnorm` (Keras's `global_clipnorm`, seed
    by seed). A rate of 0 freezes a seed that has finished its schedule."""

    def __init__(self, seeds: int, clipnorm: float, name: str = "seedwise_sgd", **kwargs):
        super().__init__(learning_rate=1.0, name=name, **kwargs)
        self.seeds, self.seed_clipnorm = seeds, clipnorm
        with keras.name_scope(self.name, caller=self):  # as Keras makes its learning_rate
            self.seed_rates = keras.Variable(
                np.zeros(seeds, "float32"), name="seed_rates", trainable=False
            )
        self._track_variable(self.seed_rates)

    def clip(self, grads: list) -> list:
        grads = [ops.convert_to_tensor(g) for g in grads]  # TF's IndexedSlices made dense
        squares = sum(ops.sum(ops.reshape(ops.square(g), (self.seeds, -1)), axis=1) for g in grads)
        norms = ops.sqrt(squares)  # [S]
        scale = self.seed_clipnorm / ops.maximum(norms, self.seed_clipnorm)
        return [g * per_seed(ops.cast(scale, g.dtype), len(g.shape)) for g in grads]

    def update_step(self, gradient, variable, learning_rate) -> None:
        rates = per_seed(ops.cast(self.seed_rates, variable.dtype), len(variable.shape))
        self.assign_sub(variable, rates * gradient)

    def get_config(self) -> dict:
        return {**super().get_config(), "seeds": self.seeds, "clipnorm": self.seed_clipnorm}
