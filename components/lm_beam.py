"""The language-modelling Beam transform: a corpus -> one tf.Example per block, in splits
train, eval and test; and `memn2n data lm`, which writes them as TFRecords.

An example holds `index` (the block's place in its split), `tokens` (its words, PTB lines
ending in `<eos>`) and `context` (up to `context_words` words before it, so that a block can be
scored alone, as TFMA does; a word is stored about 1 + context_words / block size times, 1.1
for PTB). For PTB, whose vocabulary is closed, a word of eval or test that training never saw
fails the job naming its file and line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import apache_beam as beam
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from components.babi_export import (
    SUMMARY_FILE,
    atomic_output_dir,
    format_errors_unwrapped,
    write_json,
    write_tfrecords,
)
from components.lm_corpus import (
    CONTEXT_WORDS,
    SPLITS,
    Block,
    CorpusError,
    corpus_spans,
    read_blocks,
)

CLOSED_VOCABULARY = {"ptb": True, "text8": False}


def to_tf_example(block: Block) -> tf.train.Example:
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "index": tf.train.Feature(int64_list=tf.train.Int64List(value=[block.index])),
                "tokens": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[t.encode() for t in block.tokens])
                ),
                "context": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[t.encode() for t in block.context])
                ),
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
        lambda block, _: SPLITS.index(block.split), len(SPLITS)
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


def export_corpus(corpus: str, data_dir: str, out_dir: str, beam_args: Sequence[str] = ()) -> dict:
    """Write out_dir/{train,eval,test}/*.tfrecord.gz and out_dir/summary.json (blocks and tokens
    per split); the summary. A failed run leaves no output."""
    with atomic_output_dir(out_dir) as scratch:
        counts_file = os.path.join(scratch, "counts.json")
        with (
            format_errors_unwrapped(CorpusError),
            beam.Pipeline(options=PipelineOptions(list(beam_args))) as pipeline,
        ):
            splits = pipeline | "CorpusToExamples" >> CorpusToExamples(corpus, data_dir)
            counts = []
            for split, examples in splits.items():
                write_tfrecords(examples, os.path.join(scratch, split), split)
                counts.append(
                    examples
                    | f"Count[{split}]"
                    >> beam.Map(
                        lambda e, s: (s, (1, len(e.features.feature["tokens"].bytes_list.value))),
                        split,
                    )
                )
            _ = (
                counts
                | "AllSplits" >> beam.Flatten()
                | "SumPerSplit"
                >> beam.CombinePerKey(lambda pairs: tuple(map(sum, zip(*pairs, strict=True))))
                | "Gather" >> beam.combiners.ToList()
                | "WriteCounts" >> beam.Map(write_json, counts_file)
            )
        with open(counts_file) as f:
            counts_by_split = json.load(f)
        os.remove(counts_file)
        summary = {
            "corpus": corpus,
            **{
                split: {"blocks": counts_by_split[split][0], "tokens": counts_by_split[split][1]}
                for split in SPLITS
            },
        }
        with open(os.path.join(scratch, SUMMARY_FILE), "w") as f:
            json.dump(summary, f, indent=2)
    return summary
