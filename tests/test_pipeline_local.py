"""The whole pipeline in a real LocalDagRunner with SQLite metadata, on a two-task fixture."""

from __future__ import annotations

import collections
import dataclasses
import glob
import json
import os

import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2

from memn2n_cli.main import main
from model.babi_inputs import FEATURES
from model.export import answer_questions
from pipeline.configs import PipelineConfig
from pipeline.kubeflow_v2_runner import compile_pipeline
from pipeline.local_runner import component_name, open_metadata_store, run
from pipeline.report import run_report
from tests.conftest import BEAM_ARGS, fixture_files, write_babi

COMPONENTS = {
    "BabiExampleGen",
    "StatisticsGen",
    "SchemaGen",
    "ExampleValidator",
    "Transform",
    "Trainer",
    "BaselineTrainer",
    "Evaluator",
    "ServingCanary",
    "Pusher",
}


def executions_by_component(store) -> dict[str, list]:
    result: dict[str, list] = {}
    for execution in store.get_executions():
        result.setdefault(component_name(store, execution.id), []).append(execution)
    return result


def raw_split(examples_uri: str, split: str) -> list[dict]:
    """ExampleGen's raw questions of one split as dicts of text."""
    files = glob.glob(f"{examples_uri}/Split-{split}/*.gz")
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        parsed = tf.io.parse_single_example(record, FEATURES)
        rows.append(
            {
                "task": int(parsed["task"]),
                "story": "\n".join(s.decode() for s in parsed["story"].numpy()),
                "question": parsed["question"].numpy().decode(),
                "answer": parsed["answer"].numpy().decode(),
            }
        )
    return rows


def test_every_component_runs_and_the_blessed_model_answers_raw_text(blessed_run):
    store = open_metadata_store(blessed_run)
    executions = executions_by_component(store)
    assert set(executions) == COMPONENTS
    complete = metadata_store_pb2.Execution.COMPLETE
    assert all(e.last_known_state == complete for runs in executions.values() for e in runs)

    report = run_report(blessed_run)
    assert report.blessed is True and report.reasons == []
    assert set(report.accuracy) == {"candidate", "baseline"}
    assert set(report.accuracy["candidate"]) == {"all", "1", "8"}
    versions = os.listdir(os.path.join(blessed_run.serving_dir, "babi"))
    assert len(versions) == 1 and versions[0].isdigit()
    assert report.pushed_to.rstrip("/").endswith(versions[0])
    assert report.canary["blessed"] is True and report.canary["questions"] > 0

    served = answer_questions(
        os.path.join(blessed_run.serving_dir, "babi", versions[0]),
        ["Mary moved to the bathroom.\nJohn went to the hallway.", "John got the milk."],
        ["Where is Mary?", "What is John carrying?"],
    )
    answers = {"bathroom", "hallway", "office", "football,apple", "milk"}  # training answers
    assert {a.decode() for a in served["answer"]} <= answers
    assert all(0 < p <= 1 for p in served["probability"])
    attention = served["attention"]  # [B, hops, memory]: only the story's sentences get any
    assert len(attention) == 2 and len(attention[0]) == 3 and len(attention[0][0]) == 50
    assert 0 < sum(attention[0][0][:2]) <= 1 + 1e-5 and max(attention[0][0][2:]) == 0
    assert 0 < attention[1][0][0] <= 1 + 1e-5 and max(attention[1][0][1:]) == 0


def test_served_answers_match_the_trainers_own_evaluation(blessed_run):
    """Raw text through the pushed model gives the answers the Trainer computed on the eval split
    from Transform's output (the order of records may differ, so compare per task)."""
    store = open_metadata_store(blessed_run)
    [examples] = [a for a in store.get_artifacts_by_type("Examples") if "/BabiExampleGen/" in a.uri]
    trainer_runs = [a for a in store.get_artifacts_by_type("ModelRun") if "/Trainer/" in a.uri]
    with open(os.path.join(trainer_runs[0].uri, "training.json")) as f:
        training = json.load(f)
    rows = raw_split(examples.uri, "eval")
    [version] = os.listdir(os.path.join(blessed_run.serving_dir, "babi"))
    served = answer_questions(
        os.path.join(blessed_run.serving_dir, "babi", version),
        [r["story"] for r in rows],
        [r["question"] for r in rows],
    )
    answers = [a.decode() for a in served["answer"]]
    assert collections.Counter(answers) == collections.Counter(training["val_answers"])
    for task, error in training["val_error_per_task"].items():
        pairs = zip(answers, rows, strict=True)
        mine = [(a, r["answer"]) for a, r in pairs if r["task"] == int(task)]
        served_error = 100.0 * sum(a != truth for a, truth in mine) / len(mine)
        assert served_error == pytest.approx(error)


def test_an_unblessed_model_is_not_pushed_and_the_run_says_why(blessed_run, tmp_path, capsys):
    settings = dataclasses.asdict(blessed_run)
    settings.update(baseline_margin=1.0, tasks=list(blessed_run.tasks), beam_args=list(BEAM_ARGS))
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(settings))
    assert main(["pipeline", "run", "--config", str(config_file)]) == 3
    printed = capsys.readouterr().out
    assert "NOT blessed, nothing pushed" in printed
    assert "slice all: sparse_categorical_accuracy (change vs baseline)" in printed
    assert "needs at least 1.0000" in printed and "MemN2N acc" in printed
    assert "\npushed:" not in printed
    assert len(os.listdir(os.path.join(blessed_run.serving_dir, "babi"))) == 1

    executions = executions_by_component(open_metadata_store(blessed_run))
    cached = metadata_store_pb2.Execution.CACHED
    assert executions["Trainer"][-1].last_known_state == cached  # only Evaluator and Pusher reran
    assert len(executions["Evaluator"]) == 2


def test_bad_config_values_fail_before_anything_runs(blessed_run, tmp_path):
    for change, message in [
        ({"epochs": -1}, "epochs -1 must be at least 1"),
        ({"babi_dir": str(tmp_path / "nowhere")}, "is not a folder"),
        ({"lstm_settings": {"units": 0}}, "units must be at least 1"),
        ({"memn2n_settings": {"hopz": 2}}, "unknown setting"),
    ]:
        with pytest.raises(ValueError, match=message):
            dataclasses.replace(blessed_run, **change)


def test_kubeflow_v2_spec_names_every_component(tmp_path):
    config = PipelineConfig(
        babi_dir="gs://bucket/babi",
        pipeline_root="gs://bucket/root",
        serving_dir="gs://bucket/serving",
        check_data=False,
    )
    spec_file = tmp_path / "spec.json"
    compile_pipeline(config, str(spec_file), "example.com/memn2n:1")
    spec = json.loads(spec_file.read_text())["pipelineSpec"]
    assert set(spec["root"]["dag"]["tasks"]) == COMPONENTS
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"example.com/memn2n:1"}


def test_a_bad_task_file_fails_naming_the_line_and_publishes_nothing(tmp_path):
    bad_dir = write_babi(
        tmp_path / "bad", {**fixture_files(), "qa8_lists-sets_test.txt": "1 A b.\n1x\n"}
    )
    bad = PipelineConfig(
        babi_dir=str(bad_dir),
        pipeline_root=str(tmp_path / "root"),
        pipeline_name="memn2n_bad",
        tasks=(1, 8),
        beam_args=BEAM_ARGS,
    )
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
    assert [a for a in store.get_artifacts_by_type("Examples") if a.state == live] == []
