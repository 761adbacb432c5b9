"""What the commands print while they work, and how they write results."""

from __future__ import annotations

import json
import os
import sys
import threading
import time


class Elapsed:
    """A one-line live status ('label ... 12.3 s') on a terminal; a start and end line otherwise."""

    def __init__(self, label: str):
        self.label, self._done = label, threading.Event()

    def __enter__(self) -> Elapsed:
        self.start = time.perf_counter()
        if sys.stderr.isatty():
            threading.Thread(target=self._tick, daemon=True).start()
        else:
            print(f"{self.label} ...", file=sys.stderr, flush=True)
        return self

    def _tick(self) -> None:
        while not self._done.wait(0.25):
            print(
                f"\r{self.label} ... {time.perf_counter() - self.start:.1f} s",
                end="",
                file=sys.stderr,
            )

    def __exit__(self, exc_type, *_) -> None:
        self._done.set()
        self.seconds = time.perf_counter() - self.start
        status = "failed" if exc_type else "done"
        end = "\r" if sys.stderr.isatty() else ""
        print(
            f"{end}{self.label} ... {status} in {self.seconds:.1f} s", file=sys.stderr, flush=True
        )


def report_progress(line: str) -> None:
    """A benchmark's progress line, on stderr."""
    print(line, file=sys.stderr, flush=True)


def write_result(path: str, result: dict) -> None:
    """A benchmark's result JSON, its folder created if needed."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
