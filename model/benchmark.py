"""What every benchmark record holds, whichever experiment wrote it: the benchmark and model,
the training time and throughput, the full settings, and the environment it ran in."""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import shlex
import sys
from typing import Any

import keras


def cpu_model() -> str:
    """The processor's name as Linux reports it, or the platform's word for it elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor()


def environment() -> dict:
    """The Keras backend and version, the machine, the date and the command that ran."""
    return {
        "keras_backend": keras.backend.backend(),
        "keras": keras.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {cpu_model()}",
        "date": datetime.date.today().isoformat(),
        "command": shlex.join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
    }


def benchmark_record(
    benchmark: str,
    model: str,
    settings: Any,
    train_seconds: float,
    trained: int,
    unit: str,
    **results: Any,
) -> dict:
    """The record: `benchmark`, `model`, then `results`, then the shared tail: `train_seconds`,
    `train_<unit>_per_sec` (`trained` over those seconds), `config` and `environment`."""
    return {
        "benchmark": benchmark,
        "model": model,
        **results,
        "train_seconds": round(train_seconds, 1),
        f"train_{unit}_per_sec": round(trained / train_seconds, 1),
        "config": dataclasses.asdict(settings),
        "environment": environment(),
    }
