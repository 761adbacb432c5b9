"""Runs the pipeline with LocalDagRunner; `tfx pipeline create --engine local` reads this file."""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from typing import Any, TextIO

if __name__ == "__main__":  # run as a file (as the tfx CLI does): pipeline/ must not shadow
    here = os.path.dirname(os.path.abspath(__file__))  # the package of the same name
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != here]

import tqdm  # noqa: E402
from ml_metadata import errors  # noqa: E402
from ml_metadata.metadata_store import metadata_store  # noqa: E402
from ml_metadata.proto import metadata_store_pb2  # noqa: E402
from tfx import v1 as tfx  # noqa: E402

from pipeline.configs import PipelineConfig  # noqa: E402
from pipeline.pipeline import create_pipeline  # noqa: E402

BABI_DIR = os.environ.get("MEMN2N_BABI_DIR", "")  # default: download the official archive
CORPUS = os.environ.get("MEMN2N_CORPUS", "")  # ptb or text8: the language-modelling pipeline
CORPUS_DIR = os.environ.get("MEMN2N_CORPUS_DIR", "")  # default: download the corpus


def local_pipeline(config: PipelineConfig) -> tfx.dsl.Pipeline:
    """`config`'s pipeline with its data (downloaded if no folder is given), absolute local
    paths and SQLite metadata."""
    local = dataclasses.replace(
        config.with_data(),
        pipeline_root=os.path.abspath(config.pipeline_root),
        serving_dir=os.path.abspath(config.serving_dir),
        metadata_path=os.path.abspath(config.metadata_path),
    )
    sqlite = tfx.orchestration.metadata.sqlite_metadata_connection_config(local.metadata_path)
    return create_pipeline(local, local.spec, sqlite)


class ComponentProgress(threading.Thread):
    """Prints a line as each of the run's `components` starts and ends ("[3/11] Transform
    complete (12.3 s)"), by polling the MLMD store (the executions LocalDagRunner records),
    every `interval` seconds; on a terminal, a bar of the components ended stays below them."""

    def __init__(
        self,
        config: PipelineConfig,
        components: int,
        interval: float = 1.0,
        stream: TextIO | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.config, self.components, self.interval = config, components, interval
        self.stream = stream or sys.stderr  # stderr now, as a test may have replaced it
        self.bar = (
            tqdm.tqdm(total=components, desc="pipeline", unit="component", file=self.stream)
            if self.stream.isatty()
            else None
        )
        self.since_ms = time.time() * 1000
        self.stopped = threading.Event()
        self.seen: dict[int, int] = {}  # execution id -> last state printed
        self.place: dict[int, int] = {}  # execution id -> its place in the run, from 1
        self.store: metadata_store.MetadataStore | None = None  # opened once the file exists

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.poll()
            except errors.StatusError:  # e.g. the SQLite file is locked: read at the next tick
                continue

    def stop(self) -> None:
        self.stopped.set()
        if self.is_alive():
            self.join()
        self.poll()
        if self.bar is not None:
            self.bar.close()

    def say(self, line: str) -> None:
        """One line of progress, above the bar when there is one."""
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def poll(self) -> None:
        if self.store is None:
            if not os.path.exists(self.config.metadata_path):
                return
            self.store = open_metadata_store(self.config)
        store = self.store
        for execution in sorted(store.get_executions(), key=lambda e: e.id):
            state = execution.last_known_state
            before_run = execution.create_time_since_epoch < self.since_ms
            if before_run or self.seen.get(execution.id) == state:
                continue
            self.seen[execution.id] = state
            place = self.place.setdefault(execution.id, len(self.place) + 1)
            name = f"[{place}/{self.components}] {component_name(store, execution.id)}"
            if state == metadata_store_pb2.Execution.RUNNING:
                self.say(f"  {name} ...")
                continue
            ms = execution.last_update_time_since_epoch - execution.create_time_since_epoch
            label = metadata_store_pb2.Execution.State.Name(state).lower()
            self.say(f"  {name} {label} ({ms / 1000:.1f} s)")
            if self.bar is not None:
                self.bar.update(1)


def run(config: PipelineConfig) -> None:
    """Run every component of `config`'s pipeline locally, in order, showing progress."""
    pipeline = local_pipeline(config)
    progress = ComponentProgress(config, len(pipeline.components))
    progress.start()
    try:
        tfx.orchestration.LocalDagRunner().run(pipeline)
    finally:
        progress.stop()


def open_metadata_store(config: PipelineConfig) -> metadata_store.MetadataStore:
    """The run's MLMD store (SQLite)."""
    return metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    )


def component_name(store: metadata_store.MetadataStore, execution_id: int) -> str:
    """The component an execution belongs to, e.g. 'StatisticsGen'."""
    node_type = store.get_context_type("node").id
    contexts = store.get_contexts_by_execution(execution_id)
    [node] = [c for c in contexts if c.type_id == node_type]
    return node.name.split(".")[-1]


if __name__ == "__main__":
    lm = {"experiment": "lm", "corpus": CORPUS, "corpus_dir": CORPUS_DIR}
    values: dict[str, Any] = lm if CORPUS else {"babi_dir": BABI_DIR}
    run(PipelineConfig(**values))
