"""bAbI TFRecords (from `memn2n data babi` or BabiExampleGen) -> the model's integer arrays.

A story becomes [N, J] word ids with slot 0 the most recent sentence and only the N most recent
sentences kept; id 0 is padding, id 1 the unknown word. Answers are single tokens of the same
vocabulary (`north,west` included), so the adjacent-tying answer matrix covers them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf

from ingest.files import split_files
from model.text import tokenize

PADDING, UNKNOWN = "<pad>", "<unk>"
FEATURES = {
    "task": tf.io.FixedLenFeature([], tf.int64),
    "story": tf.io.RaggedFeature(tf.string),
    "question": tf.io.FixedLenFeature([], tf.string),
    "answer": tf.io.FixedLenFeature([], tf.string),
}


@dataclasses.dataclass(frozen=True)
class BabiText:
    """One split's questions as text: story sentences oldest first."""

    task: np.ndarray  # [M] int
    story: list[list[str]]
    question: list[str]
    answer: list[str]

    def __len__(self) -> int:
        return len(self.question)


@dataclasses.dataclass(frozen=True)
class BabiArrays:
    """One split encoded: the model's inputs, the answer ids and each question's task."""

    story: np.ndarray  # [M, N, J] int32, slot 0 = most recent sentence
    query: np.ndarray  # [M, J] int32
    answer: np.ndarray  # [M] int32
    task: np.ndarray  # [M] int32

    def __len__(self) -> int:
        return len(self.answer)

    def inputs(self) -> dict[str, np.ndarray]:
        return {"story": self.story, "query": self.query}

    def recent(self, memory_size: int) -> BabiArrays:
        """The same questions with only the `memory_size` most recent sentences of each story."""
        return dataclasses.replace(self, story=self.story[:, :memory_size])

    def select(self, rows: np.ndarray) -> BabiArrays:
        """The questions picked by a boolean mask or index array."""
        return BabiArrays(self.story[rows], self.query[rows], self.answer[rows], self.task[rows])


def read_split(examples_dir: str, split: str) -> BabiText:
    """Read examples_dir/split/*.tfrecord.gz (or TFX's Split-<split>/*.gz) into text."""
    files = split_files(examples_dir, split)
    task: list[np.ndarray] = []
    story: list[list[str]] = []
    question: list[str] = []
    answer: list[str] = []
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096)
    for batch in records:
        parsed = tf.io.parse_example(batch, FEATURES)
        task.append(parsed["task"].numpy())
        story.extend([[s.decode() for s in row] for row in parsed["story"].to_list()])
        question.extend(q.decode() for q in parsed["question"].numpy())
        answer.extend(a.decode() for a in parsed["answer"].numpy())
    return BabiText(np.concatenate(task).astype("int32"), story, question, answer)


def answer_token(answer: str) -> str:
    """The answer as one vocabulary token: lowercased, commas kept ('north,west')."""
    return answer.strip().lower()


class Tokens:
    """Tokenizes each distinct sentence once (stories repeat their sentences per question)."""

    def __init__(self) -> None:
        self._cache: dict[str, list[str]] = {}

    def add(self, texts: Iterable[str]) -> None:
        new = sorted({t for t in texts if t not in self._cache})
        if new:
            tokens = tokenize(tf.constant(new)).to_list()
            self._cache.update(zip(new, ([w.decode() for w in ws] for ws in tokens), strict=True))

    def __getitem__(self, text: str) -> list[str]:
        return self._cache[text]


def longest_story(text: BabiText) -> int:
    """The most sentences any question of `text` has before it."""
    return max(len(story) for story in text.story)


def recent_sentences(story: Sequence[str], memory_size: int) -> list[str]:
    """The `memory_size` most recent sentences, most recent first."""
    return list(reversed(story[-memory_size:]))


def kept_text(text: BabiText, memory_size: int, tokens: Tokens) -> list[tuple[list[str], str]]:
    """Each question's kept sentences (most recent first) and the question itself.

    Every one of them is tokenized into `tokens` in one batch.
    """
    kept = [
        (recent_sentences(story, memory_size), question)
        for story, question in zip(text.story, text.question, strict=True)
    ]
    tokens.add(sentence for recent, question in kept for sentence in (*recent, question))
    return kept


def build_vocabulary(text: BabiText, memory_size: int, tokens: Tokens) -> list[str]:
    """[<pad>, <unk>, every word and answer of `text` in sorted order]."""
    words: set[str] = {answer_token(a) for a in text.answer}
    for recent, question in kept_text(text, memory_size, tokens):
        for sentence in (*recent, question):
            words.update(tokens[sentence])
    return [PADDING, UNKNOWN, *sorted(words - {PADDING, UNKNOWN})]


def sentence_size(text: BabiText, memory_size: int, tokens: Tokens) -> int:
    """J: the most words in any kept sentence or question of `text`."""
    return max(
        len(tokens[sentence])
        for recent, question in kept_text(text, memory_size, tokens)
        for sentence in (*recent, question)
    )


def encode(
    text: BabiText, vocabulary: Sequence[str], memory_size: int, sentence_size: int, tokens: Tokens
) -> BabiArrays:
    """Word ids for every question of `text`; longer sentences are cut at `sentence_size` words."""
    ids = {word: i for i, word in enumerate(vocabulary)}
    unknown = ids[UNKNOWN]

    def word_ids(sentence: str) -> list[int]:
        return [ids.get(w, unknown) for w in tokens[sentence][:sentence_size]]

    story = np.zeros((len(text), memory_size, sentence_size), "int32")
    query = np.zeros((len(text), sentence_size), "int32")
    for row, (recent, question) in enumerate(kept_text(text, memory_size, tokens)):
        for slot, sentence in enumerate(recent):
            sentence_ids = word_ids(sentence)
            story[row, slot, : len(sentence_ids)] = sentence_ids
        question_ids = word_ids(question)
        query[row, : len(question_ids)] = question_ids
    answer = np.array([ids.get(answer_token(a), unknown) for a in text.answer], "int32")
    return BabiArrays(story, query, answer, text.task)


def read_transformed(
    file_patterns: Sequence[str], feature_spec: dict, memory_size: int, sentence_size: int
) -> BabiArrays:
    """Transform's output TFRecords (`story_ids`, `query_ids`, `answer_id`, `task`) as arrays."""
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no transformed examples match {list(file_patterns)}")
    keys = ("story_ids", "query_ids", "answer_id", "task")
    columns: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096):
        parsed = tf.io.parse_example(batch, {key: feature_spec[key] for key in keys})
        for key in keys:
            columns[key].append(parsed[key].numpy())
    story, query, answer, task = (np.concatenate(columns[key]).astype("int32") for key in keys)
    return BabiArrays(story.reshape(-1, memory_size, sentence_size), query, answer, task)
