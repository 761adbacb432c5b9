"""`memn2n data babi|lm`: ingest a dataset into TFRecords with Beam."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ingest.babi.format import ALL_TASKS, TRAIN_SETS, find_task_files
from ingest.files import SPLITS
from memn2n_cli.arguments import add_cache_dir, add_corpus, format_tasks, task_list
from memn2n_cli.progress import Elapsed


def print_babi_summary(summary: dict) -> None:
    """The per-task question counts as a table, with totals."""
    print(f"{'task':>5} {'train':>8} {'eval':>8} {'test':>8}")
    for task, counts in summary["per_task"].items():
        print(f"{task:>5} {counts['train']:>8} {counts['eval']:>8} {counts['test']:>8}")
    print(f"{'all':>5} {summary['train']:>8} {summary['eval']:>8} {summary['test']:>8}")
    print(f"train+eval {summary['train'] + summary['eval']}, test {summary['test']}")


def data_babi(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from ingest.babi.download import download_babi

    babi_dir = args.babi_dir
    if babi_dir is None:
        with Elapsed(f"downloading bAbI v1.2 into {args.cache_dir}"):
            babi_dir = download_babi(args.cache_dir)
    find_task_files(babi_dir, args.train_set, args.tasks)  # a missing file fails before Beam starts
    from ingest.babi.export import export_babi  # imports Beam and TensorFlow: seconds

    with Elapsed(f"Beam: {args.train_set} tasks {format_tasks(args.tasks)} -> {args.out}"):
        summary = export_babi(
            babi_dir, args.out, args.train_set, args.tasks, args.eval_every, beam_args
        )
    print_babi_summary(summary)
    print(f"wrote {args.out}/{{train,eval,test}}/*.tfrecord.gz and {args.out}/summary.json")
    return 0


def data_lm(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from ingest.lm.corpus import corpus_spans, download_corpus

    data_dir = args.data_dir
    if data_dir is None:
        with Elapsed(f"downloading {args.corpus} into {args.cache_dir}"):
            data_dir = download_corpus(args.corpus, args.cache_dir)
    corpus_spans(args.corpus, data_dir)  # a missing or empty file fails before Beam starts
    from ingest.lm.beam import export_corpus

    with Elapsed(f"Beam: {args.corpus} -> {args.out}"):
        summary = export_corpus(args.corpus, data_dir, args.out, beam_args)
    for split in SPLITS:
        print(
            f"{split:>5} {summary[split]['tokens']:>12} tokens {summary[split]['blocks']:>8} blocks"
        )
    print(f"wrote {args.out}/{{train,eval,test}}/*.tfrecord.gz and {args.out}/summary.json")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="ingest datasets into TFRecords with Beam")
    datasets = data.add_subparsers(dest="dataset", required=True)
    babi = datasets.add_parser("babi", help="bAbI v1.2 -> DIR/{train,eval,test}/*.tfrecord.gz")
    babi.add_argument("--babi-dir", help="folder holding en/ and en-10k/ (default: download)")
    babi.add_argument("--out", required=True, help="output folder")
    babi.add_argument("--train-set", choices=TRAIN_SETS, default="en")
    babi.add_argument("--tasks", type=task_list, default=list(ALL_TASKS), help="e.g. 1,2,5 or 1-20")
    babi.add_argument("--eval-every", type=int, default=10, help="hold out every Nth story")
    add_cache_dir(babi)
    babi.set_defaults(run=data_babi)
    lm = datasets.add_parser("lm", help="PTB or Text8 -> DIR/{train,eval,test}/*.tfrecord.gz")
    add_corpus(lm, required=True, help="the corpus")
    lm.add_argument("--data-dir", help="folder holding ptb.*.txt or text8 (default: download)")
    lm.add_argument("--out", required=True, help="output folder")
    add_cache_dir(lm)
    lm.set_defaults(run=data_lm)
