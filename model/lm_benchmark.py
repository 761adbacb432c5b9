"""`memn2n bench lm`: the paper's language-modelling experiment on PTB or Text8."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Sequence

from components.lm_beam import export_corpus
from components.lm_corpus import SPLITS
from model.lm_export import export_lm
from model.lm_inputs import LMVocabulary, read_tokens, token_stream
from model.lm_training import EpochProgress, LMTrainConfig, perplexity, train_lm

PAPER = {  # the paper's PTB figures: MemN2N's best row (7 hops, memory 200) and its LSTM
    "ptb": {"memn2n_test": 111, "memn2n_valid": 118, "lstm_test": 115},
    "text8": None,  # not checked against the paper here
}


def lm_defaults(corpus: str, model: str = "memn2n") -> LMTrainConfig:
    """MemN2N: the paper's settings. The LSTM: the small PTB LSTM of Zaremba et al. (2014), SGD
    at 1.0 with clipping at 5 on the loss summed over a window's 35 words and averaged over 20
    windows; here the same step as 1/20 of that rate and 20 times that clip on the summed loss.
    Text8: words seen fewer than 5 times become <unk>."""
    batch = 20
    lstm = {
        "learning_rate": 1.0 / batch,
        "clipnorm": 5.0 * batch,
        "loss_reduction": "sum",
        "batch_size": batch,
    }
    return LMTrainConfig(
        model=model, min_count=5 if corpus == "text8" else 1, **(lstm if model == "lstm" else {})
    )


def run_lm_benchmark(
    corpus: str,
    data_dir: str,
    config: LMTrainConfig,
    seed: int = 1,
    report: Callable[[str], None] = print,
    beam_args: Sequence[str] = (),
    export_dir: str | None = None,
) -> dict:
    """Ingest with the Beam job, train with validation-based annealing, test the best epoch;
    with `export_dir`, write the model there as a servable SavedModel."""
    with tempfile.TemporaryDirectory() as scratch:
        examples = os.path.join(scratch, "examples")
        export_corpus(corpus, data_dir, examples, beam_args)
        tokens = {split: read_tokens(examples, split) for split in SPLITS}
    vocabulary = LMVocabulary.from_tokens(tokens["train"], config.min_count)
    streams = {split: token_stream(words, vocabulary) for split, words in tokens.items()}
    report(
        f"{corpus}: vocabulary {len(vocabulary)} (with <pad>), tokens "
        + ", ".join(f"{split} {len(words)}" for split, words in tokens.items())
    )

    def epoch_line(record: dict) -> None:
        report(
            f"[{config.model} {corpus}] epoch {record['epoch']} lr {record['learning_rate']:.5f} "
            f"train ppl {record['train_perplexity']:.1f} "
            f"valid ppl {record['valid_perplexity']:.1f} "
            f"({record['seconds']:.0f} s, {record['tokens_per_sec']:.0f} tokens/s)"
        )

    batches = len(config.batches(streams["train"], training=True))
    progress = EpochProgress(batches, (len(streams["train"]) - 1) / batches, report)
    trained = train_lm(
        streams["train"], streams["eval"], len(vocabulary), config, seed, epoch_line, [progress]
    )
    test = perplexity(trained.model, streams["test"], config)
    if export_dir:
        export_lm(trained.model, vocabulary.words, config.model, config.window(), export_dir)
    return {
        "corpus": corpus,
        "model": config.model,
        "valid_perplexity": round(trained.valid_perplexity, 3),
        "test_perplexity": round(test, 3),
        "selection": "the epoch with the lowest validation perplexity; test scored once",
        "epochs_run": len(trained.history),
        "curves": trained.history,
        "tokens_per_sec": round(trained.tokens_per_sec, 1),
        "train_seconds": round(trained.train_seconds, 1),
        "vocab_size": len(vocabulary),
        "tokens": {split: len(words) for split, words in tokens.items()},
        "seed": seed,
        "paper": PAPER[corpus],
        "config": dataclasses.asdict(config),
    }
