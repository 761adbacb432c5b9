"""Argument types and flags that several command groups share."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ingest.babi.download import DEFAULT_CACHE_DIR
from ingest.babi.format import ALL_TASKS
from ingest.lm.corpus import CORPORA


def task_list(value: str) -> list[int]:
    """argparse type for '1,2,5' or '1-20'."""
    tasks: list[int] = []
    for part in value.split(","):
        first, _, last = part.strip().partition("-")
        try:
            tasks.extend(range(int(first), int(last or first) + 1))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not a task list: {value!r} (e.g. 1,2,5 or 1-20)"
            ) from None
    if unknown := sorted(set(tasks) - set(ALL_TASKS)):
        raise argparse.ArgumentTypeError(f"unknown bAbI task(s) {unknown}; tasks are 1-20")
    return sorted(set(tasks))


def format_tasks(tasks: Sequence[int]) -> str:
    """[1, 2, 4, 5, 6] -> '1-2,4-6'."""
    runs: list[list[int]] = []
    for task in sorted(tasks):
        if runs and task == runs[-1][-1] + 1:
            runs[-1].append(task)
        else:
            runs.append([task])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def add_cache_dir(parser: argparse.ArgumentParser, default: str | None = DEFAULT_CACHE_DIR) -> None:
    parser.add_argument(
        "--cache-dir", default=default, help=f"where downloads are kept ({DEFAULT_CACHE_DIR})"
    )


def add_corpus(parser: argparse.ArgumentParser, required: bool, help: str) -> None:
    parser.add_argument("--corpus", choices=CORPORA, required=required, help=help)


def add_settings_overrides(parser: argparse.ArgumentParser) -> None:
    """--config FILE (JSON settings) and repeatable --set NAME=VALUE."""
    parser.add_argument("--config", help="JSON file of settings overriding the defaults")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="one setting, repeatable"
    )


def add_checkpoint_flags(parser: argparse.ArgumentParser) -> None:
    """--checkpoint-dir (each epoch's state; default OUT.checkpoints) and --resume."""
    parser.add_argument(
        "--checkpoint-dir", help="where each run's state is saved every epoch (OUT.checkpoints)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help=(
            "continue the runs saved there; refused, naming the field, if the settings changed "
            "(a language model's --epochs may grow)"
        ),
    )


def checkpoints(args: argparse.Namespace):
    """The model.checkpoint.Checkpoints of --checkpoint-dir and --resume (imports the model)."""
    from model.checkpoint import Checkpoints

    directory = args.checkpoint_dir or f"{args.out}.checkpoints"
    return Checkpoints(directory, "strict" if args.resume else "never")
