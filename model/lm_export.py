"""The served language model: raw text prefix in, the most likely next words out.

Signature `serving_default(prefix)`: [B] strings (words separated by spaces, as the corpus
writes them) -> `next_words` [B, k] and `probabilities` [B, k], best first; `context` [B, N],
the words in memory (slot 0 = the prefix's last word, "" for an empty slot); and for MemN2N
`attention` [B, K, N]. The prefix is read as the start of a line: `<eos>` comes before it, and
words outside the vocabulary become `<unk>`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from components.lm_corpus import EOS, UNK
from model.lm_inputs import PAD


def reverse_rows(ragged: tf.RaggedTensor) -> tf.RaggedTensor:
    """Each row of a [B, None] ragged tensor in reverse order."""
    flipped = tf.RaggedTensor.from_row_lengths(
        tf.reverse(ragged.flat_values, [0]), tf.reverse(ragged.row_lengths(), [0])
    )  # rows in reverse order, each reversed
    return tf.gather(flipped, tf.range(ragged.nrows() - 1, -1, -1))


class LMServingModule(tf.Module):
    """The trained MemN2N LM with its vocabulary."""

    def __init__(self, model: keras.Model, words: list[str], memory_size: int, top_k: int):
        super().__init__()
        self.model, self.memory_size, self.top_k = model, memory_size, top_k
        self.words = tf.constant(words)  # [V]
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(self.words, tf.range(len(words), dtype=tf.int64)),
            default_value=words.index(UNK),
        )
        self.eos = words.index(EOS)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="prefix")])
    def serve(self, prefix: tf.Tensor) -> dict:
        tokens = tf.strings.split(tf.strings.strip(prefix))  # [B, None] ragged
        ids = tf.cast(self.table.lookup(tokens), tf.int32)
        eos = tf.fill([tf.shape(prefix)[0], 1], self.eos)
        ids = tf.concat([eos, ids], axis=1)  # [B, None]: the line starts after <eos>
        recent_first = reverse_rows(ids)  # slot 0 = the last word
        n = self.memory_size
        context = recent_first[:, :n].to_tensor(0, shape=[None, n])  # [B, N]
        outputs = self.model({"context": context}, training=False)
        probabilities = tf.nn.softmax(tf.cast(outputs["logits"], tf.float32))  # [B, V]
        best = tf.math.top_k(probabilities, k=self.top_k)
        result = {
            "next_words": tf.gather(self.words, best.indices),  # [B, k]
            "probabilities": best.values,  # [B, k]
            "context": tf.where(context > 0, tf.gather(self.words, context), ""),  # [B, N]
        }
        if "attention" in outputs:
            result["attention"] = tf.cast(outputs["attention"], tf.float32)  # [B, K, N]
        return result


def export_lm(
    model: keras.Model, words: list[str], memory_size: int, export_dir: str, top_k: int = 10
) -> None:
    """Write the SavedModel with the `serving_default` signature to `export_dir`."""
    if words[0] != PAD:
        raise ValueError("the vocabulary must start with <pad> (id 0, an empty slot)")
    module = LMServingModule(model, words, memory_size, top_k)
    tf.saved_model.save(module, export_dir, signatures={"serving_default": module.serve})
