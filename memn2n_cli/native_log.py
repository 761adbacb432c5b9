"""Libraries' log lines (TensorFlow's and XLA's C++ logging, CUDA probes, and Python's logging
warnings of absl, Beam and TFX) into a file.

TensorFlow 2.21 writes its start-up lines through absl before absl's logging is initialised,
which `TF_CPP_MIN_LOG_LEVEL` does not stop (`I0000 ... oneDNN custom operations are on`,
`E0000 ... failed call to cuInit` on a machine without a GPU). The only switch that holds is the
file descriptor: file descriptor 2 goes to a log file, and Python's `sys.stderr` keeps the
terminal, so our progress, errors and tracebacks still show. Python's root logger writes to the
file too (set up before any library's `logging.basicConfig`, which then does nothing); loggers
that should reach the terminal (the server's) get their own handler.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile


def divert_native_stderr(command: str) -> str:
    """Send file descriptor 2 (and so every child process's stderr) and Python's root logger to
    a log file, keeping `sys.stderr` on the original stream; the log file's path."""
    sys.stderr.flush()
    terminal = os.dup(2)
    folder = os.environ.get("MEMN2N_LOG_DIR") or tempfile.gettempdir()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"memn2n-{command}-{os.getpid()}.log")
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 2)
    os.close(log)
    sys.stderr = open(terminal, "w", buffering=1, closefd=True)  # noqa: SIM115 - lives on
    library_log = open(os.dup(2), "w", buffering=1, closefd=True)  # noqa: SIM115 - lives on
    logging.basicConfig(stream=library_log, level=logging.WARNING, force=True)
    return path
