"""The one tokenizer: tf.Transform, the benchmarks and the served model all call `tokenize`."""

import tensorflow as tf

PUNCTUATION = r"([^\p{L}\p{N}_\s])"  # one token per punctuation mark


def tokenize(text: tf.Tensor) -> tf.RaggedTensor:
    """Lowercase, split punctuation off as tokens, split on whitespace.

    text: string tensor of any shape S; returns a ragged string tensor of shape S + [None].
    """
    lowered = tf.strings.lower(text, encoding="utf-8")
    spaced = tf.strings.regex_replace(lowered, PUNCTUATION, r" \1 ")
    return tf.strings.split(spaced)
