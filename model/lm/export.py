"""The served language model: raw text prefix in, the most likely next words out.

Signatures:
- `serving_default(prefix)`: [B] strings (words separated by spaces, as the corpus writes them)
  -> `next_words` [B, k] and `probabilities` [B, k], best first; `context` [B, N], the words the
  model reads (slot 0 = the prefix's last word, "" for an empty slot); and for MemN2N
  `attention` [B, K, N]. The prefix is read as the start of a line: `<eos>` comes before it,
  and words outside the vocabulary become `<unk>`.
- `serving_examples(examples)`: serialized LM tf.Examples (`tokens` after `context`, as
  ingest.lm.beam writes them) -> `nll` [B], the summed negative log-likelihood (nats) of
  each example's tokens, and `words` [B], how many; TFMA's perplexity is exp(sum nll / sum words).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ingest.lm.corpus import UNK
from model.lm.inputs import PAD, stream_start_id
from model.settings import ModelKind
from model.signatures import (
    ATTENTION_KEYS,
    EXAMPLES_SIGNATURE,
    NLL_KEY,
    TEXT_SIGNATURE,
    WORDS_KEY,
    text_request,
    write_warmup_requests,
)

SCORING_CHUNK = 256  # windows (MemN2N) or sequences (LSTM) per model call when scoring examples
WARMUP_PREFIX = "the company said"
EXAMPLE_FEATURES = {
    "tokens": tf.io.RaggedFeature(tf.string),
    "context": tf.io.RaggedFeature(tf.string),
}


def reverse_rows(ragged: tf.RaggedTensor) -> tf.RaggedTensor:
    """Each row of a [B, None] ragged tensor in reverse order."""
    flipped = tf.RaggedTensor.from_row_lengths(
        tf.reverse(ragged.flat_values, [0]), tf.reverse(ragged.row_lengths(), [0])
    )  # rows in reverse order, each reversed
    return tf.gather(flipped, tf.range(ragged.nrows() - 1, -1, -1))


def gather_windows(ids: tf.RaggedTensor, offsets: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
    """ids[row, offset] for offsets [M, S] within rows [M]; 0 outside the row."""
    starts = tf.gather(ids.row_starts(), rows)[:, None]  # [M, 1]
    lengths = tf.gather(ids.row_lengths(), rows)[:, None]  # [M, 1]
    inside = (offsets >= 0) & (offsets < lengths)
    flat = tf.gather(ids.flat_values, tf.where(inside, starts + offsets, 0))
    return tf.where(inside, flat, tf.zeros_like(flat))  # [M, S]


def memn2n_windows(ids: tf.RaggedTensor, first: tf.Tensor, memory_size: int) -> tuple:
    """For every position from `first` [B] on: its previous `memory_size` words, most recent
    first. -> context [P, N], target [P, 1], weight [P, 1], row [P]."""
    positions = tf.ragged.range(first, ids.row_lengths())  # [B, None]
    rows, at = positions.value_rowids(), positions.flat_values  # [P], [P]
    context = gather_windows(ids, at[:, None] - 1 - tf.range(memory_size, dtype=at.dtype), rows)
    target = gather_windows(ids, at[:, None], rows)
    return context, target, tf.ones_like(target, tf.float32), rows


def lstm_windows(ids: tf.RaggedTensor, first: tf.Tensor, length: int) -> tuple:
    """Sequences of `length` scored words from `first` [B] on, each after `length` words of
    warm-up. -> tokens [M, 2T], targets [M, 2T], weights [M, 2T], row [M]."""
    starts = tf.ragged.range(first, ids.row_lengths(), length)  # [B, None]
    rows, at = starts.value_rowids(), starts.flat_values  # [M], [M]
    offsets = at[:, None] - length - 1 + tf.range(2 * length, dtype=at.dtype)  # [M, 2T]
    tokens, targets = gather_windows(ids, offsets, rows), gather_windows(ids, offsets + 1, rows)
    lengths = tf.gather(ids.row_lengths(), rows)[:, None]
    scored = (offsets + 1 >= at[:, None]) & (offsets + 1 < lengths)
    return tokens, targets, tf.cast(scored, tf.float32), rows


class LMServingModule(tf.Module):
    """A trained language model (MemN2N: "context" [B, N] -> logits [B, V]; LSTM: "tokens"
    [B, T] -> logits [B, T, V]) with its vocabulary."""

    def __init__(
        self, model: keras.Model, words: list[str], kind: ModelKind, window: int, top_k: int
    ) -> None:
        super().__init__()
        self.model, self.kind, self.window, self.top_k = model, kind, window, top_k
        self.words = tf.constant(words)  # [V]
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(self.words, tf.range(len(words), dtype=tf.int64)),
            default_value=words.index(UNK),
        )
        self.eos = stream_start_id(words)

    def word_ids(self, words: tf.RaggedTensor) -> tf.RaggedTensor:
        return tf.cast(self.table.lookup(words), tf.int32)

    def next_word_logits(self, context: tf.Tensor) -> dict:
        """context [B, W] (slot 0 = the last word) -> logits [B, V] (and MemN2N attention)."""
        if self.kind == "memn2n":
            return self.model({"context": context}, training=False)
        tokens = tf.reverse(context, [1])  # oldest first, 0-padded on the left like the start
        return {"logits": self.model({"tokens": tokens}, training=False)["logits"][:, -1]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="prefix")])
    def serve(self, prefix: tf.Tensor) -> dict:
        ids = self.word_ids(tf.strings.split(tf.strings.strip(prefix)))  # [B, None]
        eos = tf.fill([tf.shape(prefix)[0], 1], self.eos)
        recent_first = reverse_rows(tf.concat([eos, ids], axis=1))  # the line starts after <eos>
        context = recent_first[:, : self.window].to_tensor(0, shape=[None, self.window])  # [B, W]
        outputs = self.next_word_logits(context)
        probabilities = tf.nn.softmax(tf.cast(outputs["logits"], tf.float32))  # [B, V]
        best = tf.math.top_k(probabilities, k=self.top_k)
        result = {
            "next_words": tf.gather(self.words, best.indices),  # [B, k]
            "probabilities": best.values,  # [B, k]
            "context": tf.where(context > 0, tf.gather(self.words, context), ""),  # [B, W]
        }
        for name in ATTENTION_KEYS:  # [B, K, N], and with heads [B, K, H, N]
            if name in outputs:
                result[name] = tf.cast(outputs[name], tf.float32)
        return result

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def score_examples(self, examples: tf.Tensor) -> dict:
        parsed = tf.io.parse_example(examples, EXAMPLE_FEATURES)
        context, tokens = self.word_ids(parsed["context"]), self.word_ids(parsed["tokens"])
        ids = tf.concat([context, tokens], axis=1)  # [B, None]
        first = context.row_lengths()  # [B]: the first scored position
        if self.kind == "memn2n":
            inputs, targets, weights, rows = memn2n_windows(ids, first, self.window)
        else:
            inputs, targets, weights, rows = lstm_windows(ids, first, self.window // 2)
        nll = self.chunked_nll(inputs, targets, weights)  # [M]
        batch = tf.shape(examples)[0]
        return {
            NLL_KEY: tf.math.unsorted_segment_sum(nll, rows, batch),  # [B]
            WORDS_KEY: tf.cast(tokens.row_lengths(), tf.float32),  # [B]
        }

    def chunked_nll(self, inputs: tf.Tensor, targets: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
        """Summed weighted NLL of each row of inputs [M, S], SCORING_CHUNK rows per model call,
        so that logits [chunk, (S,) V] stay small. -> [M]"""
        count = tf.shape(inputs)[0]
        padded = (count + SCORING_CHUNK - 1) // SCORING_CHUNK * SCORING_CHUNK

        def chunks(x: tf.Tensor) -> tf.Tensor:
            x = tf.pad(x, [[0, padded - count], [0, 0]])
            return tf.reshape(x, [-1, SCORING_CHUNK, x.shape[-1]])

        def score(chunk: tuple) -> tf.Tensor:
            window, target, weight = chunk
            key = "context" if self.kind == "memn2n" else "tokens"
            logits = tf.cast(self.model({key: window}, training=False)["logits"], tf.float32)
            if self.kind == "memn2n":
                logits = logits[:, None, :]  # [chunk, 1, V]
            nll = tf.nn.sparse_softmax_cross_entropy_with_logits(target, logits)  # [chunk, S]
            return tf.reduce_sum(nll * weight, axis=-1)

        nll = tf.map_fn(
            score,
            (chunks(inputs), chunks(targets), chunks(weights)),
            fn_output_signature=tf.TensorSpec([SCORING_CHUNK], tf.float32),
        )
        return tf.reshape(nll, [-1])[:count]


def export_lm(
    model: keras.Model,
    words: list[str],
    kind: ModelKind,
    window: int,
    export_dir: str,
    top_k: int = 10,
) -> None:
    """Write the SavedModel with both signatures, and a warm-up request, to `export_dir`.
    `window`: MemN2N's memory size, or for the LSTM twice its sequence length."""
    if words[0] != PAD:
        raise ValueError("the vocabulary must start with <pad> (id 0, an empty slot)")
    module = LMServingModule(model, words, kind, window, top_k)
    signatures = {TEXT_SIGNATURE: module.serve, EXAMPLES_SIGNATURE: module.score_examples}
    tf.saved_model.save(module, export_dir, signatures=signatures)
    write_warmup_requests(export_dir, text_request("", {"prefix": [WARMUP_PREFIX]}))
