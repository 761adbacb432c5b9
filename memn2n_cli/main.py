"""The `memn2n` command line: the parser and the dispatch; one module per command group."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ingest.files import FileFormatError
from memn2n_cli.commands import bench, data, pipeline, query, serve
from memn2n_cli.native_log import divert_native_stderr

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memn2n",
        description="End-To-End Memory Networks on TFX. Unknown --flags are passed to Beam.",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show TensorFlow's native log lines (default: a log file, named on failure)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for group in (data, pipeline, bench, serve, query):
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line's entry point; `argv` None (the `memn2n` script) also diverts the native
    libraries' log lines into a file unless --verbose (callers passing `argv`, e.g. tests, keep
    their streams)."""
    args, beam_args = build_parser().parse_known_args(argv)
    if unexpected := [a for a in beam_args if not a.startswith("--")]:
        print(f"memn2n: unexpected argument(s) {unexpected}", file=sys.stderr)
        return 2
    native_log = divert_native_stderr(args.command) if argv is None and not args.verbose else None
    status = 1
    try:
        status = args.run(args, beam_args)
    except (FileFormatError, FileExistsError, OSError, ValueError) as e:
        print(f"memn2n: error: {e}", file=sys.stderr)
    finally:
        if native_log and status != 0:
            print(f"memn2n: TensorFlow's native log lines: {native_log}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
