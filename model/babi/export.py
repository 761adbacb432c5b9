"""The served SavedModel: Transform's graph in front of the trained Keras model.

Signatures:
- `serving_default(story, question)`: raw strings (a story's sentences separated by newlines)
  -> `answer` [B] string, `probability` [B], and for MemN2N `attention` [B, K, N];
- `serving_examples(examples)`: serialized raw tf.Examples -> the same plus `probabilities`
  [B, V], for TFMA;
- `transform_features(examples)`: the Transform output, where TFMA finds the label `answer_id`.
Answers are restricted to the words that were answers in training (Transform's `answers`).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf
import tensorflow_transform as tft

from model.babi.preprocessing import ANSWERS_VOCABULARY, TOKENS_VOCABULARY
from model.memn2n import MemN2N
from model.signatures import (
    ATTENTION_KEYS,
    EXAMPLES_SIGNATURE,
    PREDICTIONS_KEY,
    TEXT_SIGNATURE,
    TRANSFORM_SIGNATURE,
    question_request,
    write_warmup_requests,
)

WARMUP_STORY = "Mary moved to the bathroom.\nJohn went to the hallway."
WARMUP_QUESTION = "Where is Mary?"


def story_sentences(story: tf.Tensor) -> tf.RaggedTensor:
    """[B] strings of newline-separated sentences -> [B, None] non-blank sentences."""
    lines = tf.strings.split(tf.strings.regex_replace(story, "\r", ""), "\n")
    return tf.ragged.boolean_mask(lines, tf.strings.length(tf.strings.strip(lines)) > 0)


def read_vocabularies(tft_output: tft.TFTransformOutput) -> tuple[list[str], list[str]]:
    """Transform's token vocabulary (id order) and the words that were answers."""
    tokens = [w.decode() for w in tft_output.vocabulary_by_name(TOKENS_VOCABULARY)]
    answers = [w.decode() for w in tft_output.vocabulary_by_name(ANSWERS_VOCABULARY)]
    return tokens, answers


def answer_mask(tokens: list[str], answers: list[str]) -> list[bool]:
    """For each token id: was the word an answer in training? Predictions are limited to these."""
    answer_words = set(answers)
    return [word in answer_words for word in tokens]


class BabiServingModule(tf.Module):
    """The model, Transform's layer and the vocabulary, with the three signatures."""

    def __init__(
        self,
        model: keras.Model,
        tft_output: tft.TFTransformOutput,
        memory_size: int,
        sentence_size: int,
    ):
        super().__init__()
        tokens, answers = read_vocabularies(tft_output)
        self.model = model
        self.tft_layer = tft_output.transform_features_layer()
        self.raw_feature_spec = tft_output.raw_feature_spec()
        self.words = tf.constant(tokens)  # [V]
        self.is_answer = tf.constant(answer_mask(tokens, answers))  # [V]
        self.memory_size, self.sentence_size = memory_size, sentence_size

    def predict(self, transformed: dict) -> dict:
        """Transformed features -> answer, probability, probabilities [B, V] (and attention)."""
        n, j = self.memory_size, self.sentence_size
        story = tf.reshape(transformed["story_ids"], [-1, n, j])
        if isinstance(self.model, MemN2N):  # its memory may be smaller than Transform's N
            story = story[:, : self.model.config.memory_size]
        inputs = {
            "story": tf.cast(story, tf.int32),
            "query": tf.cast(transformed["query_ids"], tf.int32),
        }
        outputs = self.model(inputs, training=False)
        logits = tf.cast(outputs["answer_logits"], tf.float32)  # [B, V]
        probabilities = tf.nn.softmax(tf.where(self.is_answer, logits, -1e9))  # [B, V]
        best = tf.argmax(probabilities, axis=-1)  # [B]
        result = {
            "answer": tf.gather(self.words, best),
            "probability": tf.reduce_max(probabilities, axis=-1),
            PREDICTIONS_KEY: probabilities,
        }
        for name in ATTENTION_KEYS:  # [B, K, N], and with heads [B, K, H, N]
            if name in outputs:
                result[name] = tf.cast(outputs[name], tf.float32)
        return result

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="story"),
            tf.TensorSpec([None], tf.string, name="question"),
        ]
    )
    def serve_text(self, story: tf.Tensor, question: tf.Tensor) -> dict:
        raw = {
            "story": story_sentences(story).to_sparse(),
            "question": tf.RaggedTensor.from_tensor(tf.expand_dims(question, 1)).to_sparse(),
        }
        outputs = self.predict(self.tft_layer(raw))
        return {k: v for k, v in outputs.items() if k != PREDICTIONS_KEY}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples: tf.Tensor) -> dict:
        return self.predict(self.transform_examples(examples))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_examples(self, examples: tf.Tensor) -> dict:
        return self.tft_layer(tf.io.parse_example(examples, self.raw_feature_spec))


def export_serving_model(
    model: keras.Model,
    tft_output: tft.TFTransformOutput,
    memory_size: int,
    sentence_size: int,
    export_dir: str,
) -> None:
    """Write the SavedModel with its three signatures to `export_dir`."""
    module = BabiServingModule(model, tft_output, memory_size, sentence_size)
    signatures = {
        TEXT_SIGNATURE: module.serve_text,
        EXAMPLES_SIGNATURE: module.serve_examples,
        TRANSFORM_SIGNATURE: module.transform_examples,
    }
    tf.saved_model.save(module, export_dir, signatures=signatures)
    write_warmup_requests(export_dir, question_request("", [WARMUP_STORY], [WARMUP_QUESTION]))


def answer_questions(
    saved_model_dir: str, stories: Sequence[str], questions: Sequence[str]
) -> dict[str, list]:
    """Call a served model's `serving_default` on raw text; numpy outputs as lists."""
    serve = tf.saved_model.load(saved_model_dir).signatures[TEXT_SIGNATURE]
    outputs = serve(story=tf.constant(list(stories)), question=tf.constant(list(questions)))
    return {k: v.numpy().tolist() for k, v in outputs.items()}
