"""SGD with the global gradient norm clipped that keeps embedding gradients sparse, for steps
run by TensorFlow's graph executor (the language model's: docs/decisions/lm-runs.md).

Keras's SGD with `global_clipnorm` makes each embedding's gradient (TF's IndexedSlices, a row
per word looked up) dense for the scaling, then updates all V rows; its norm sums the squares
of the looked-up rows, so a word looked up twice counts as two rows. Here the rows of a word
are summed first (the norm is the dense gradient's, as the paper's Torch code clips), and only
the rows looked up are updated: the PTB step in runs of 16 went from 32.8 to 30.1 ms
(BUILD_NOTES, "The LM step in runs"). `tf.unique` has no XLA kernel: a step compiled with
XLA keeps Keras's SGD.
"""

from __future__ import annotations

import keras
import tensorflow as tf


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


class SparseSGD(keras.optimizers.Optimizer):
    """Plain SGD (no momentum) with the dense gradient's global norm clipped at `clipnorm`;
    embedding rows not looked up in a step are not touched."""

    def __init__(self, learning_rate: float, clipnorm: float, name: str = "sparse_sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.sparse_clipnorm = clipnorm

    def apply(self, grads, trainable_variables=None):
        merged = [merge_rows(g) for g in grads]
        squares = [
            tf.reduce_sum(tf.square(g.values if isinstance(g, tf.IndexedSlices) else g))
            for g in merged
        ]
        norm = tf.sqrt(tf.add_n(squares))
        scale = self.sparse_clipnorm / tf.maximum(norm, self.sparse_clipnorm)
        return super().apply([scaled(g, scale) for g in merged], trainable_variables)

    def update_step(self, gradient, variable, learning_rate) -> None:
        self.assign_sub(variable, scaled(gradient, tf.cast(learning_rate, variable.dtype)))

    def get_config(self) -> dict:
        return {**super().get_config(), "clipnorm": self.sparse_clipnorm}
