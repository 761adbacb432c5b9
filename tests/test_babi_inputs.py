"""bAbI text -> the model's integer arrays: order, truncation, vocabulary, unknown words."""

from __future__ import annotations

import numpy as np

from ingest.babi.export import export_babi
from model.babi.inputs import (
    PADDING,
    UNKNOWN,
    BabiText,
    Tokens,
    build_vocabulary,
    encode,
    read_split,
    sentence_size,
)

TRAIN = BabiText(
    task=np.array([8], "int32"),
    story=[["Mary took the football.", "Mary went to the hall.", "Mary picked up the apple."]],
    question=["What is Mary carrying?"],
    answer=["football,apple"],
)


def test_vocabulary_holds_words_and_whole_answers():
    vocabulary = build_vocabulary(TRAIN, memory_size=50, tokens=Tokens())
    assert vocabulary[:2] == [PADDING, UNKNOWN]
    assert "football,apple" in vocabulary  # the answer is one token
    assert {"mary", "football", ".", "?"} <= set(vocabulary)
    assert "Mary" not in vocabulary  # lowercased


def test_story_is_most_recent_first_truncated_and_padded():
    tokens = Tokens()
    vocabulary = build_vocabulary(TRAIN, memory_size=2, tokens=tokens)
    ids = {word: i for i, word in enumerate(vocabulary)}
    size = sentence_size(TRAIN, memory_size=2, tokens=tokens)
    assert size == 6  # "mary picked up the apple ."
    arrays = encode(TRAIN, vocabulary, memory_size=2, sentence_size=size, tokens=tokens)
    assert arrays.story.shape == (1, 2, 6)
    expected_recent = [ids[w] for w in ["mary", "picked", "up", "the", "apple", "."]]
    assert arrays.story[0, 0].tolist() == expected_recent
    assert arrays.story[0, 1].tolist() == [ids[w] for w in "mary went to the hall .".split()]
    assert arrays.query[0].tolist() == [ids[w] for w in "what is mary carrying ?".split()] + [0]
    assert arrays.answer.tolist() == [ids["football,apple"]]


def test_words_never_seen_in_training_become_the_unknown_id():
    tokens = Tokens()
    vocabulary = build_vocabulary(TRAIN, memory_size=50, tokens=tokens)
    test = BabiText(np.array([8], "int32"), [["Zed took the kettle."]], ["What?"], ["kettle"])
    arrays = encode(test, vocabulary, memory_size=3, sentence_size=4, tokens=tokens)
    unknown, ids = vocabulary.index(UNKNOWN), {w: i for i, w in enumerate(vocabulary)}
    # "zed took the kettle ." cut to 4 words; "zed" and "kettle" are not in the vocabulary
    assert arrays.story[0, 0].tolist() == [unknown, ids["took"], ids["the"], unknown]
    assert arrays.answer.tolist() == [unknown]
    assert not arrays.story[0, 1:].any()


def test_read_split_reads_the_exported_tfrecords(babi_dir, tmp_path):
    export_babi(str(babi_dir), str(tmp_path / "examples"), tasks=[1, 8])
    test = read_split(str(tmp_path / "examples"), "test")
    assert len(test) == 5  # 3 questions of task 1, 2 of task 8
    first = test.question.index("What is Mary carrying?")
    assert test.story[first] == ["Mary took the football.", "Mary picked up the apple."]
    assert test.answer[first] == "football,apple" and test.task[first] == 8
