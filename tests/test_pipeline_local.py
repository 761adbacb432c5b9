"""The bAbI example generator inside a real LocalDagRunner pipeline with SQLite metadata."""

from __future__ import annotations

import dataclasses
import glob

import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.utils import io_utils

from pipeline.configs import PipelineConfig
from pipeline.local_runner import component_name, open_metadata_store, run
from tests.conftest import fixture_files, write_babi

BEAM_ARGS = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")


def executions_by_component(store) -> dict[str, list]:
    result: dict[str, list] = {}
    for execution in store.get_executions():
        result.setdefault(component_name(store, execution.id), []).append(execution)
    return result


def test_pipeline_runs_example_gen_statistics_schema(babi_dir, tmp_path):
    config = PipelineConfig(
        babi_dir=str(babi_dir),
        pipeline_root=str(tmp_path / "root"),
        tasks=(1, 8),
        beam_args=BEAM_ARGS,
    )
    run(config)
    store = open_metadata_store(config)
    executions = executions_by_component(store)
    assert set(executions) == {"BabiExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator"}
    complete = metadata_store_pb2.Execution.COMPLETE
    assert all(e.last_known_state == complete for runs in executions.values() for e in runs)

    [examples] = store.get_artifacts_by_type("Examples")
    assert examples.properties["split_names"].string_value == '["train", "eval", "test"]'
    for split, count in {"train": 46, "eval": 4, "test": 5}.items():
        files = glob.glob(f"{examples.uri}/Split-{split}/*.gz")
        assert sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP")) == count
    [schema] = store.get_artifacts_by_type("Schema")

    parsed = io_utils.parse_pbtxt_file(f"{schema.uri}/schema.pbtxt", schema_pb2.Schema())
    assert {f.name for f in parsed.feature} == {
        "task",
        "story_id",
        "story",
        "question",
        "answer",
        "supporting_facts",
    }

    # A bad line in a task file: the run fails naming it, and no Examples artifact is published.
    bad_dir = write_babi(
        tmp_path / "bad", {**fixture_files(), "qa8_lists-sets_test.txt": "1 A b.\n1x\n"}
    )
    bad = dataclasses.replace(config, babi_dir=str(bad_dir), pipeline_name="memn2n_bad")
    with pytest.raises(
        Exception, match=r"qa8_lists-sets_test.txt:2: expected '<numeric id> <text>'"
    ):
        run(bad)
    store = open_metadata_store(bad)
    failed = [
        e
        for e in store.get_executions()
        if e.last_known_state == metadata_store_pb2.Execution.FAILED
    ]
    assert len(failed) == 1
    live = metadata_store_pb2.Artifact.LIVE
    assert [a.uri for a in store.get_artifacts_by_type("Examples") if a.state == live] == [
        examples.uri
    ]
