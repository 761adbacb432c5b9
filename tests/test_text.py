"""The shared tokenizer."""

import tensorflow as tf

from model.text import tokenize


def test_tokenize_lowercases_and_splits_punctuation():
    tokens = tokenize(tf.constant(["Mary moved to the bathroom.", "Where is Mary? ", "north,west"]))
    assert tokens.to_list() == [
        [b"mary", b"moved", b"to", b"the", b"bathroom", b"."],
        [b"where", b"is", b"mary", b"?"],
        [b"north", b",", b"west"],
    ]


def test_tokenize_keeps_non_ascii_letters_in_words():
    assert tokenize(tf.constant(["Émile's café"])).to_list() == [
        ["émile".encode(), b"'", b"s", "café".encode()]
    ]


def test_tokenize_keeps_the_input_shape():
    tokens = tokenize(tf.constant([["A b.", "C"], ["D", "E f"]]))
    assert tokens.shape[:2] == [2, 2]
    assert tokens[1, 1].numpy().tolist() == [b"e", b"f"]
