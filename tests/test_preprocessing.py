"""tf.Transform's preprocessing_fn against the benchmark's own encoder, and the served text path."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import schema_utils

from model.babi.export import story_sentences
from model.babi.inputs import BabiText, Tokens, encode
from model.babi.preprocessing import preprocessing_fn

RAW_SPEC = {  # what SchemaGen infers with infer_feature_shape=False: every feature var-length
    "story": tf.io.VarLenFeature(tf.string),
    "question": tf.io.VarLenFeature(tf.string),
    "answer": tf.io.VarLenFeature(tf.string),
    "task": tf.io.VarLenFeature(tf.int64),
}
STORIES = [
    ["Mary moved to the bathroom.", "John went to the hallway.", "Mary went back to the garden."],
    ["Sandra journeyed to the kitchen.", "Daniel travelled to the office, quickly and quietly."],
    ["John got the milk."],
]
QUESTIONS = ["Where is Mary?", "Where is Daniel?", "What is John carrying?"]
ANSWERS = ["garden", "Office", "milk"]


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    """(transformed rows, TFTransformOutput) for the three questions, N=2 and J=6."""
    rows = [
        {"story": s, "question": [q], "answer": [a], "task": [1]}
        for s, q, a in zip(STORIES, QUESTIONS, ANSWERS, strict=True)
    ]
    metadata = tft.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))
    output_dir = str(tmp_path_factory.mktemp("transform"))
    with tft_beam.Context(temp_dir=str(tmp_path_factory.mktemp("tft_tmp"))):
        (data, _), transform_fn = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing_fn(inputs, {"memory_size": 2, "sentence_size": 6})
        )
        _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
    return list(data), tft.TFTransformOutput(output_dir)


def test_transform_encodes_as_the_benchmark_does(transformed):
    data, output = transformed
    vocabulary = [w.decode() for w in output.vocabulary_by_name("tokens")]
    assert vocabulary[:2] == ["<pad>", "<unk>"]
    text = BabiText(np.ones(3, "int32"), STORIES, QUESTIONS, ANSWERS)
    expected = encode(text, vocabulary, memory_size=2, sentence_size=6, tokens=Tokens())
    story = np.stack([row["story_ids"] for row in data]).reshape(3, 2, 6)
    np.testing.assert_array_equal(story, expected.story)  # most recent first, 2 kept, cut at 6
    np.testing.assert_array_equal(np.stack([row["query_ids"] for row in data]), expected.query)
    np.testing.assert_array_equal([row["answer_id"] for row in data], expected.answer)
    assert vocabulary[story[0, 0, 5]] == "garden"  # slot 0: "mary went back to the garden", cut
    assert sorted(w.decode() for w in output.vocabulary_by_name("answers")) == [
        "garden",
        "milk",
        "office",
    ]


def test_unseen_words_become_unknown_and_blank_lines_are_dropped(transformed):
    _, output = transformed
    layer = output.transform_features_layer()
    sentences = story_sentences(
        tf.constant(["Mary flew to the moon.\n\n  \r\nJohn went to the hallway.\n"])
    )
    assert sentences.to_list() == [[b"Mary flew to the moon.", b"John went to the hallway."]]
    features = layer(
        {
            "story": sentences.to_sparse(),
            "question": tf.RaggedTensor.from_tensor(tf.constant([["Where is Mary?"]])).to_sparse(),
        }
    )
    vocabulary = [w.decode() for w in output.vocabulary_by_name("tokens")]
    story = features["story_ids"].numpy().reshape(2, 6)
    assert [vocabulary[i] for i in story[1]] == ["mary", "<unk>", "to", "the", "<unk>", "."]
    assert [vocabulary[i] for i in story[0]] == ["john", "went", "to", "the", "hallway", "."]
