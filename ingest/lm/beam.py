"""The language-modelling Beam transform: a corpus -> one tf.Example per block, in splits
train, eval and test; and `memn2n data lm`, which writes them as TFRecords.

An example holds `index` (the block's place in its split), `tokens` (its words, PTB lines
ending in `<eos>`) and `context` (up to `context_words` words before it, so that a block can be
scored alone, as TFMA does; a word is stored about 1 + context_words / block size times, 1.1
for PTB). For PTB, whose vocabulary is closed, a word of eval or test that training never saw
fails the job naming its file and line.
"""

from __future__ import annotations

from collections.abc import Sequence

import apache_beam as beam
import tensorflow as tf

from ingest.files import SPLITS
from ingest.lm.corpus import CONTEXT_WORDS, Block, CorpusError, corpus_spans, read_blocks
from ingest.records import bytes_feature, export_splits, int_feature

CLOSED_VOCABULARY = {"ptb": True, "text8": False}


def to_tf_example(block: Block) -> tf.train.Example:
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "index": int_feature([block.index]),
                "tokens": bytes_feature(block.tokens),
                "context": bytes_feature(block.context),
            }
        )
    )


def check_in_vocabulary(block: Block, vocabulary: set[str]) -> Block:
    """The block, if every word was seen in training; else a CorpusError at its line."""
    if unknown := sorted(set(block.tokens) - vocabulary):
        first = min(block.tokens.index(word) for word in unknown)
        raise CorpusError(
            block.path,
            f"word(s) {unknown[:5]} never occur in the training split; this corpus's vocabulary "
            "is closed (every eval and test word must occur in train)",
            block.line_of(first),
        )
    return block


@beam.ptransform_fn
def CorpusToExamples(  # noqa: N802 - Beam PTransform naming
    pipeline: beam.Pipeline, corpus: str, data_dir: str, context_words: int = CONTEXT_WORDS
) -> dict[str, beam.PCollection]:
    """{split: PCollection of tf.train.Example}, one example per block."""
    blocks = (
        pipeline
        | "ListSpans" >> beam.Create(corpus_spans(corpus, data_dir))
        | "SpreadSpans" >> beam.Reshuffle()
        | "ReadBlocks" >> beam.FlatMap(read_blocks, context_words)
    )
    by_split = blocks | "PartitionBySplit" >> beam.Partition(
        lambda block, _: SPLITS.index(block.split),  # type: ignore[arg-type]  # any callable works
        len(SPLITS),
    )
    split_blocks = dict(zip(SPLITS, by_split, strict=True))
    if CLOSED_VOCABULARY[corpus]:
        vocabulary = beam.pvalue.AsSingleton(
            split_blocks["train"]
            | "TrainWords" >> beam.FlatMap(lambda block: block.tokens)
            | "Vocabulary" >> beam.combiners.ToSet()
        )
        for split in ("eval", "test"):
            split_blocks[split] = split_blocks[split] | f"CheckWords[{split}]" >> beam.Map(
                check_in_vocabulary, vocabulary
            )
    return {
        split: blocks | f"ToExample[{split}]" >> beam.Map(to_tf_example)
        for split, blocks in split_blocks.items()
    }


def block_count(example: tf.train.Example, split: str) -> tuple[str, tuple[int, int]]:
    """(split, (1 block, its tokens))."""
    return split, (1, len(example.features.feature["tokens"].bytes_list.value))


def export_corpus(corpus: str, data_dir: str, out_dir: str, beam_args: Sequence[str] = ()) -> dict:
    """Write out_dir/{train,eval,test}/*.tfrecord.gz and out_dir/summary.json (blocks and tokens
    per split); the summary. A failed run leaves no output."""

    def summarize(counts: dict[str, list[int]]) -> dict:
        return {
            "corpus": corpus,
            **{s: {"blocks": counts[s][0], "tokens": counts[s][1]} for s in SPLITS},
        }

    return export_splits(
        out_dir, CorpusToExamples(corpus, data_dir), block_count, summarize, CorpusError, beam_args
    )
