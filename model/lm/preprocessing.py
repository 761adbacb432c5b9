"""tf.Transform for language modelling: the word vocabulary of the train split, then words -> ids.

Transformed features: `index` (the block's place in its split) and `token_ids` [None], ids of
the vocabulary `words`: 0 is `<pad>` (an empty memory slot), 1 `<unk>` (also every word below
`min_count` or never seen in training), then the training words by falling count.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from ingest.lm.corpus import UNK
from model.features import one_per_example
from model.lm.inputs import PAD

WORDS_VOCABULARY = "words"


def preprocessing_fn(inputs: dict, custom_config: dict | None = None) -> dict:
    """TFX Transform's entry point; `custom_config` may set `min_count` (Text8: 5)."""
    min_count = (custom_config or {}).get("min_count", 1)
    tokens = tf.RaggedTensor.from_sparse(inputs["tokens"])  # [B, None] strings
    words = tokens.flat_values
    counted = tf.boolean_mask(words, (words != PAD) & (words != UNK))  # reserved ids 0 and 1
    vocabulary = tft.vocabulary(
        counted,
        frequency_threshold=min_count,
        vocab_filename=WORDS_VOCABULARY,
        reserved_tokens=[PAD, UNK],
    )
    ids = tft.apply_vocabulary(words, vocabulary, default_value=1)
    return {
        "index": one_per_example(inputs["index"]),
        "token_ids": tokens.with_flat_values(ids).to_sparse(),
    }
