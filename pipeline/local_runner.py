"""Runs the pipeline with LocalDagRunner; `tfx pipeline create --engine local` reads this file."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
import time

if __name__ == "__main__":  # run as a file (as the tfx CLI does): pipeline/ must not shadow
    here = os.path.dirname(os.path.abspath(__file__))  # the package of the same name
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != here]

from ml_metadata.metadata_store import metadata_store  # noqa: E402
from tfx import v1 as tfx  # noqa: E402

from pipeline.configs import PipelineConfig  # noqa: E402
from pipeline.pipeline import create_pipeline  # noqa: E402

BABI_DIR = os.environ.get("MEMN2N_BABI_DIR", os.path.join("..", "shared", "data", "babi"))


def local_pipeline(config: PipelineConfig) -> tfx.dsl.Pipeline:
    """`config`'s pipeline with absolute local paths and SQLite metadata."""
    local = dataclasses.replace(
        config,
        pipeline_root=os.path.abspath(config.pipeline_root),
        serving_dir=os.path.abspath(config.serving_dir),
        metadata_path=os.path.abspath(config.metadata_path),
    )
    sqlite = tfx.orchestration.metadata.sqlite_metadata_connection_config(local.metadata_path)
    return create_pipeline(local, sqlite)


class ComponentProgress(logging.Filter):
    """Prints one line as each component starts and finishes, from LocalDagRunner's INFO log;
    lets through only the records the logger would have shown anyway."""

    EVENT = re.compile(r"Component (\S+) is (running|finished)\.")

    def __init__(self, shown_from: int) -> None:
        super().__init__()
        self.shown_from = shown_from
        self.started: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if event := self.EVENT.fullmatch(record.getMessage()):
            component, state = event.groups()
            now = time.perf_counter()
            if state == "running":
                self.started[component] = now
                print(f"  {component} ...", file=sys.stderr, flush=True)
            else:
                seconds = now - self.started.get(component, now)
                print(f"  {component} done in {seconds:.1f} s", file=sys.stderr, flush=True)
        return record.levelno >= self.shown_from


def run(config: PipelineConfig) -> None:
    """Run every component of `config`'s pipeline locally, in order, showing progress."""
    logger = logging.getLogger("absl")  # where LocalDagRunner logs
    level = logger.level
    progress = ComponentProgress(shown_from=logger.getEffectiveLevel())
    logger.addFilter(progress)
    logger.setLevel(logging.INFO)
    try:
        tfx.orchestration.LocalDagRunner().run(local_pipeline(config))
    finally:
        logger.removeFilter(progress)
        logger.setLevel(level)


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
    run(PipelineConfig(babi_dir=BABI_DIR))
