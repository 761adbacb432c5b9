"""Runs the pipeline with LocalDagRunner; `tfx pipeline create --engine local` reads this file."""

from __future__ import annotations

import os

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from pipeline.configs import PipelineConfig
from pipeline.pipeline import create_pipeline

BABI_DIR = os.environ.get("MEMN2N_BABI_DIR", os.path.join("..", "shared", "data", "babi"))


def run(config: PipelineConfig) -> None:
    """Run every component of `config`'s pipeline locally, in order."""
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config))


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


def summarize_run(config: PipelineConfig) -> str:
    """One line per execution of the latest run in the metadata: component, state and outputs."""
    store = open_metadata_store(config)
    lines = [f"{'component':<18} {'state':<9} outputs"]
    latest_run = max(
        store.get_contexts_by_type("pipeline_run"), key=lambda c: c.create_time_since_epoch
    )
    for execution in sorted(store.get_executions_by_context(latest_run.id), key=lambda e: e.id):
        output_ids = [
            e.artifact_id
            for e in store.get_events_by_execution_ids([execution.id])
            if e.type == metadata_store_pb2.Event.OUTPUT
        ]
        uris = [a.uri for a in store.get_artifacts_by_id(output_ids)]
        state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
        lines.append(f"{component_name(store, execution.id):<18} {state:<9} {' '.join(uris)}")
    return "\n".join(lines)


if __name__ == "__main__":
    run(PipelineConfig(babi_dir=BABI_DIR))
