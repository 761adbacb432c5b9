"""`memn2n bench lm`: the paper's language-modelling experiment on PTB or Text8."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence

from ingest.files import SPLITS
from ingest.lm.beam import export_corpus
from model.benchmark import benchmark_record
from model.checkpoint import Checkpoints
from model.lm.export import export_lm
from model.lm.inputs import LMVocabulary, read_tokens, token_stream
from model.lm.settings import PAPER, Corpus, LMTrainConfig
from model.lm.training import EpochProgress, batches, perplexity, train_lm


def run_lm_benchmark(
    corpus: Corpus,
    data_dir: str,
    config: LMTrainConfig,
    seed: int = 1,
    report: Callable[[str], None] = print,
    beam_args: Sequence[str] = (),
    export_dir: str | None = None,
    checkpoints: Checkpoints | None = None,
) -> dict:
    """Ingest with the Beam job, train with validation-based annealing, test the best epoch;
    with `export_dir`, write the model there as a servable SavedModel; with `checkpoints`,
    save every epoch there (and resume from it, as they say)."""
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

    train_batches = len(batches(config, streams["train"], training=True))
    progress = EpochProgress(train_batches, (len(streams["train"]) - 1) / train_batches, report)
    trained = train_lm(
        streams["train"],
        streams["eval"],
        len(vocabulary),
        config,
        seed,
        epoch_line,
        [progress],
        checkpoints,
    )
    test = perplexity(trained.model, streams["test"], config)
    if export_dir:
        export_lm(trained.model, vocabulary.words, config.model, config.window(), export_dir)
    return benchmark_record(
        "lm",
        config.model,
        config,
        trained.train_seconds,
        trained.trained,
        "tokens",
        corpus=corpus,
        valid_perplexity=round(trained.validation["perplexity"], 3),
        test_perplexity=round(test, 3),
        selection="the epoch with the lowest validation perplexity; test scored once",
        epochs_run=len(trained.history),
        curves=trained.history,
        vocab_size=len(vocabulary),
        tokens={split: len(words) for split, words in tokens.items()},
        seed=seed,
        paper=PAPER[corpus],
    )
