"""Feature helpers shared by both experiments' tf.Transform graphs."""

from __future__ import annotations

import tensorflow as tf


def one_per_example(feature: tf.Tensor | tf.SparseTensor) -> tf.Tensor:
    """A feature with one value per example (dense [B, 1] or sparse [B, 1]) as [B]."""
    if isinstance(feature, tf.SparseTensor):
        feature = tf.sparse.to_dense(feature)
    return tf.reshape(feature[:, :1], [-1])
