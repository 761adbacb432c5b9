"""Resumable runs: at the end of every epoch a run's whole state (model and optimizer variables,
the schedule's and the data order's state, Python's and NumPy's RNG, the epoch logs) goes into
one file, replaced whole or not at all, so that a run started again from it ends as the
uninterrupted run would have (docs/decisions/resumable-runs.md)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import keras
import numpy as np

Resume = Literal["never", "strict", "if_same"]
# never: start afresh; strict: continue the saved run, refusing one of other settings or data
# (the benchmarks' --resume); if_same: continue it when it is the same run, else start afresh
# (the TFX Trainer, retried after a crash or run again on new data).


class ResumeRefusedError(ValueError):
    """The checkpoint belongs to a run of other settings or data; says what differs."""


class Stateful(Protocol):
    """A part of a run that keeps state between epochs: JSON values and NumPy arrays."""

    def get_state(self) -> dict[str, Any]: ...

    def set_state(self, state: dict[str, Any]) -> None: ...


def fingerprint(
    config: Any, seeds: Sequence[int], data: Mapping[str, np.ndarray], budget: Sequence[str] = ()
) -> dict:
    """What makes two runs the same run: the settings, the seeds and the training data.
    `budget`: settings that only bound the run's length (no schedule reads them), so that a
    run saved under a lower bound continues to a higher one."""
    digest = hashlib.sha256()
    for name in sorted(data):
        array = np.ascontiguousarray(data[name])
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    is_instance = dataclasses.is_dataclass(config) and not isinstance(config, type)
    settings = dataclasses.asdict(config) if is_instance else dict(config)
    return {
        "settings": settings,
        "seeds": list(seeds),
        "data_sha256": digest.hexdigest(),
        "budget": list(budget),
    }


def difference(saved: dict, current: dict) -> str | None:
    """The first field in which two fingerprints differ, in words; None when they agree. A
    field of the current run's `budget` may grow: the saved run continues to the new bound."""
    saved_settings, settings = saved["settings"], current["settings"]
    for name in sorted(set(saved_settings) | set(settings)):
        before, now = saved_settings.get(name, "<absent>"), settings.get(name, "<absent>")
        grows = isinstance(before, int) and isinstance(now, int) and now > before
        if before != now and not (grows and name in current.get("budget", ())):
            return f"settings field {name!r} changed: {before!r} in the checkpoint, {now!r} now"
    if saved["seeds"] != current["seeds"]:
        return f"seeds changed: {saved['seeds']} in the checkpoint, {current['seeds']} now"
    if saved["data_sha256"] != current["data_sha256"]:
        return (
            f"the training data changed: sha256 {saved['data_sha256'][:12]}... in the "
            f"checkpoint, {current['data_sha256'][:12]}... now"
        )
    return None


def _json_ready(state: dict[str, Any], prefix: str, arrays: dict[str, np.ndarray]) -> dict:
    """`state` with its arrays moved into `arrays` under `prefix` and named in their place."""
    ready = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray | np.generic):  # a 0-d weight comes as np.float32
            arrays[f"{prefix}/{key}"] = np.asarray(value)
            ready[key] = {"__array__": f"{prefix}/{key}"}
        else:
            ready[key] = value
    return ready


def _with_arrays(state: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> dict:
    return {
        key: arrays[value["__array__"]]
        if isinstance(value, dict) and "__array__" in value
        else value
        for key, value in state.items()
    }


def _plain(value: Any) -> Any:
    """NumPy scalars (e.g. a float32 in Keras's logs) as Python numbers, for JSON."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"a checkpoint cannot keep {type(value).__name__} {value!r}")


def _tuples(value: Any) -> Any:
    """JSON's lists back into the nested tuples of `random.getstate()`."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


class RunCheckpoint:
    """One run's checkpoint file. `saved` is what the file held when opened (None: a fresh
    run): the epochs done, their logs, the seconds they took and whether the run had ended."""

    def __init__(
        self, path: str, run: dict, parts: Mapping[str, Stateful], resume: Resume = "strict"
    ):
        self.path, self.run, self.parts, self.restored = path, run, dict(parts), False
        self.saved: dict | None = None
        if resume == "never" or not os.path.exists(path):
            return
        with np.load(path, allow_pickle=False) as stored:
            self._arrays = {name: stored[name] for name in stored.files}
        meta = json.loads(self._arrays.pop("meta.json").tobytes())
        why = difference(meta["run"], run)
        if why is None:
            self.saved = meta
        elif resume == "strict":
            raise ResumeRefusedError(f"cannot resume from {path}: {why}")

    @property
    def initial_epoch(self) -> int:
        return self.saved["epoch"] if self.saved else 0

    def restore(self, model: keras.Model, sample_inputs: Any) -> None:
        """Put the saved state back: variables of `model` (built on `sample_inputs` if it is
        not yet), its optimizer's, every part's, and the RNGs. Once; nothing if fresh."""
        if self.saved is None or self.restored:
            return
        if not model.built:
            model(sample_inputs)
        model.optimizer.build(model.trainable_variables)
        for kind, variables in (
            ("model", model.variables),
            ("optimizer", model.optimizer.variables),
        ):
            count = self.saved["variables"][kind]
            if count != len(variables):
                raise ResumeRefusedError(
                    f"cannot resume from {self.path}: it holds {count} {kind} variables, the "
                    f"model has {len(variables)}"
                )
            for i, variable in enumerate(variables):
                variable.assign(self._arrays[f"{kind}/{i}"])
        for name, part in self.parts.items():
            part.set_state(_with_arrays(self.saved["parts"][name], self._arrays))
        random.setstate(_tuples(self.saved["python_random"]))
        np.random.set_state(_tuples(self.saved["numpy_random"]))
        self.restored = True

    def save(
        self, model: keras.Model, epoch: int, history: list[dict], seconds: float, ended: bool
    ) -> None:
        """Write the state after `epoch` epochs to a temporary file, then move it into place."""
        arrays: dict[str, np.ndarray] = {}
        kinds = {"model": model.variables, "optimizer": model.optimizer.variables}
        for kind, variables in kinds.items():
            for i, variable in enumerate(variables):
                arrays[f"{kind}/{i}"] = keras.ops.convert_to_numpy(variable)
        kind, keys, position, has_gauss, gauss = np.random.get_state(legacy=True)
        numpy_state = [kind, np.asarray(keys).tolist(), position, has_gauss, gauss]
        meta = {
            "run": self.run,
            "epoch": epoch,
            "history": history,
            "seconds": seconds,
            "ended": ended,
            "variables": {kind: len(variables) for kind, variables in kinds.items()},
            "parts": {
                name: _json_ready(part.get_state(), f"part/{name}", arrays)
                for name, part in self.parts.items()
            },
            "python_random": random.getstate(),
            "numpy_random": numpy_state,
        }
        arrays["meta.json"] = np.frombuffer(
            json.dumps(meta, default=_plain).encode(), dtype="uint8"
        )
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        temporary = f"{self.path}.partial.npz"
        with open(temporary, "wb") as f:
            np.savez(f, allow_pickle=False, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self.path)


@dataclasses.dataclass(frozen=True)
class Checkpoints:
    """Where a command keeps its runs' checkpoints, one file per run, and whether to resume."""

    directory: str
    resume: Resume = "strict"

    def open(self, name: str, run: dict, parts: Mapping[str, Stateful]) -> RunCheckpoint:
        """Run `name`'s checkpoint (its file `name`.npz)."""
        return RunCheckpoint(os.path.join(self.directory, f"{name}.npz"), run, parts, self.resume)
