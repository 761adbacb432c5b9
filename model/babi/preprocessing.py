"""tf.Transform for bAbI: vocabularies over the train split, then raw text -> the model's word ids.

The graph becomes part of the served model, so serving tokenizes exactly as training did.
Transformed features: `story_ids` [N*J] (slot 0 = most recent sentence), `query_ids` [J],
`answer_id` (the answer as a word of the token vocabulary) and `task`.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from model.babi.inputs import PADDING, UNKNOWN
from model.babi.settings import DEFAULT_MEMORY_SIZE, DEFAULT_SENTENCE_SIZE
from model.features import one_per_example
from model.text import tokenize

TOKENS_VOCABULARY = "tokens"  # story, question and answer words; ids 0 and 1 are pad and unk
ANSWERS_VOCABULARY = "answers"  # the words that were answers in training


def recent_first(story: tf.SparseTensor | tf.RaggedTensor, memory_size: int) -> tf.RaggedTensor:
    """Sentences oldest first [B, None] -> the `memory_size` most recent, most recent first."""
    if isinstance(story, tf.SparseTensor):
        story = tf.RaggedTensor.from_sparse(story)
    return story[:, ::-1][:, :memory_size]


def story_and_question_tokens(
    inputs: dict, memory_size: int, sentence_size: int
) -> tuple[tf.RaggedTensor, tf.RaggedTensor]:
    """Story words [B, None<=N, None<=J] and question words [B, None<=J], as strings."""
    story = tokenize(recent_first(inputs["story"], memory_size))[:, :, :sentence_size]
    question = tokenize(one_per_example(inputs["question"]))[:, :sentence_size]
    return story, question


def word_ids(words: tf.RaggedTensor, vocabulary) -> tf.RaggedTensor:
    """Words -> ids of the token vocabulary; words never seen in training -> <unk> (1)."""
    ids = tft.apply_vocabulary(words.flat_values, vocabulary, default_value=1)
    return words.with_flat_values(ids)


def preprocessing_fn(inputs: dict, custom_config: dict | None = None) -> dict:
    """TFX Transform's entry point; `custom_config` may set memory_size N and sentence_size J."""
    custom_config = custom_config or {}
    n = custom_config.get("memory_size", DEFAULT_MEMORY_SIZE)
    j = custom_config.get("sentence_size", DEFAULT_SENTENCE_SIZE)
    story, question = story_and_question_tokens(inputs, n, j)
    answer = tf.strings.lower(tf.strings.strip(one_per_example(inputs["answer"])))  # [B]
    every_word = tf.concat([story.flat_values, question.flat_values, answer], 0)
    tokens = tft.vocabulary(
        every_word, vocab_filename=TOKENS_VOCABULARY, reserved_tokens=[PADDING, UNKNOWN]
    )
    tft.vocabulary(answer, vocab_filename=ANSWERS_VOCABULARY)
    story_ids = word_ids(story, tokens).to_tensor(0, shape=[None, n, j])  # [B, N, J]
    return {
        "story_ids": tf.reshape(story_ids, [-1, n * j]),
        "query_ids": word_ids(question, tokens).to_tensor(0, shape=[None, j]),  # [B, J]
        "answer_id": tft.apply_vocabulary(answer, tokens, default_value=1),  # [B]
        "task": one_per_example(inputs["task"]),
    }
