"""The `memn2n` command line: the parser and the dispatch; one module per command group."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ingest.files import FileFormatError
from memn2n_cli.commands import bench, data, pipeline, query, serve

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memn2n",
        description="End-To-End Memory Networks on TFX. Unknown --flags are passed to Beam.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for group in (data, pipeline, bench, serve, query):
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, beam_args = build_parser().parse_known_args(argv)
    if unexpected := [a for a in beam_args if not a.startswith("--")]:
        print(f"memn2n: unexpected argument(s) {unexpected}", file=sys.stderr)
        return 2
    try:
        return args.run(args, beam_args)
    except (FileFormatError, FileExistsError, OSError, ValueError) as e:
        print(f"memn2n: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
