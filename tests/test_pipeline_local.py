"""The whole pipeline in a real LocalDagRunner with SQLite metadata, on a two-task fixture."""

from __future__ import annotations

import collections
import dataclasses
import glob
import json
import math
import os
import pathlib
import random
import re

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2

from memn2n_cli.main import main
from model.babi.export import answer_questions
from model.babi.inputs import FEATURES
from pipeline.configs import PipelineConfig
from pipeline.kubeflow_v2_runner import compile_pipeline
from pipeline.local_runner import component_name, open_metadata_store, run
from pipeline.report import run_report
from serving.model_manager import single_model_config
from serving.server import ModelServer
from tests.conftest import BEAM_ARGS, fixture_files, run_on_two_workers, write_babi

COMPONENTS = {
    "BabiExampleGen",
    "StatisticsGen",
    "SchemaGen",
    "ExampleValidator",
    "Transform",
    "Trainer",
    "BaselineTrainer",
    "Evaluator",
    "LatestBlessedModel",
    "BlessedModelEvaluator",
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

    assert blessed_run.babi_dir == ""  # no folder was given: the archive was downloaded
    downloaded = os.path.join(blessed_run.cache_dir, "tasks_1-20_v1-2")
    assert os.path.isfile(os.path.join(downloaded, ".verified"))
    assert len(os.listdir(os.path.join(downloaded, "en"))) == 4

    report = run_report(blessed_run)
    assert report.blessed is True and report.reasons == []
    assert set(report.values) == {"candidate", "baseline"}
    assert set(report.values["candidate"]) == {"all", "1", "8"}
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
    # Memory: the fixture's longest training story (4 sentences), not Transform's 50 slots
    assert len(attention) == 2 and len(attention[0]) == 3 and len(attention[0][0]) == 4
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
    printed = capsys.readouterr()
    assert "NOT blessed, nothing pushed" in printed.out
    assert "slice all: sparse_categorical_accuracy (change vs baseline)" in printed.out
    assert "needs at least 1.0000" in printed.out and "MemN2N acc" in printed.out
    assert "\npushed:" not in printed.out
    assert len(os.listdir(os.path.join(blessed_run.serving_dir, "babi"))) == 1
    assert "  [1/12] BabiExampleGen cached (" in printed.err
    assert re.search(r"  \[\d+/12\] Evaluator complete \(\d+\.\d s\)", printed.err)
    report_folder = os.path.join(blessed_run.pipeline_root, "report")
    plots = [os.path.join(report_folder, f"{n}.png") for n in ("test_by_slice", "training_curves")]
    for path in plots:
        assert f"plot: {path}" in printed.out
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    executions = executions_by_component(open_metadata_store(blessed_run))
    cached = metadata_store_pb2.Execution.CACHED
    assert executions["Trainer"][-1].last_known_state == cached  # only Evaluator and Pusher reran
    assert len(executions["Evaluator"]) == 2
    assert main(["pipeline", "run", "--config", str(config_file), "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert report["blessed"] is False and report["pushed_to"] is None and report["reasons"]
    assert report["plots"] == plots
    assert {c["component"] for c in report["components"]} >= {"Trainer", "Evaluator", "Pusher"}


def test_a_candidate_worse_than_the_latest_blessed_model_is_not_pushed(blessed_run, tmp_path):
    """Against the LSTM the barely trained candidate passes (the bounds let anything pass), but
    the BlessedModelEvaluator compares it with the model blessed and pushed before."""
    before = run_report(blessed_run).values["candidate"]["all"]
    settings = dataclasses.asdict(blessed_run)
    settings.update(tasks=list(blessed_run.tasks), beam_args=list(BEAM_ARGS))
    settings["memn2n_settings"] = {"linear_start": False, "learning_rate": 1e-7}
    config = PipelineConfig(**settings)
    run(config)
    report = run_report(config)
    assert report.values["candidate"]["all"] < before  # the premise: it is worse
    assert report.blessed is False and report.pushed_to is None
    [reason] = report.reasons
    assert reason.startswith("latest blessed model: slice all: sparse_categorical_accuracy ")
    assert "(change vs baseline)" in reason
    assert len(os.listdir(os.path.join(blessed_run.serving_dir, "babi"))) == 1
    store = open_metadata_store(blessed_run)
    [blessing] = [
        a
        for a in store.get_artifacts_by_type("ModelBlessing")
        if "/BlessedModelEvaluator/" in a.uri
    ][-1:]
    baseline = blessing.custom_properties["baseline_model_id"].int_value
    [first_model] = [a for a in store.get_artifacts_by_type("Model") if "/Trainer/" in a.uri][:1]
    assert baseline == first_model.id  # compared with the model the first run pushed


def test_bad_config_values_fail_before_anything_runs(blessed_run, tmp_path):
    no_task8_test = dict(list(fixture_files().items())[:3])
    for change, message in [
        ({"epochs": -1}, "epochs -1 must be at least 1"),
        ({"babi_dir": str(tmp_path / "nowhere")}, "is not a folder"),
        (
            {"babi_dir": str(write_babi(tmp_path / "half", no_task8_test))},
            r"qa8_\*_test.txt: missing task file \(task 8, test\)",
        ),
        ({"lstm_settings": {"units": 0}}, "units must be at least 1"),
        ({"memn2n_settings": {"hopz": 2}}, "unknown setting"),
        ({"experiment": "qa"}, "experiment 'qa' is not one of"),
        (
            {"experiment": "lm", "corpus_dir": str(tmp_path / "nowhere")},
            "corpus_dir .* not a folder",
        ),
        (
            {"experiment": "lm", "corpus_dir": str(tmp_path), "lstm_settings": {"units": 9}},
            "unknown",
        ),
        ({"experiment": "lm", "corpus_dir": str(tmp_path), "max_perplexity": 1}, "above 1"),
        ({"max_regression": -0.1}, "max_regression -0.1 must be at least 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            dataclasses.replace(blessed_run, **change)


@pytest.mark.parametrize("experiment", ["babi", "lm"])
def test_kubeflow_v2_spec_names_every_component(tmp_path, experiment):
    config = PipelineConfig(
        experiment=experiment,
        babi_dir="gs://bucket/babi",
        corpus_dir="gs://bucket/ptb",
        pipeline_root="gs://bucket/root",
        serving_dir="gs://bucket/serving",
        check_data=False,
    )
    spec_file = tmp_path / "spec.json"
    compile_pipeline(config, str(spec_file), "example.com/memn2n:1")
    spec = json.loads(spec_file.read_text())["pipelineSpec"]
    example_gen = "LMExampleGen" if experiment == "lm" else "BabiExampleGen"
    resolvers = {f"LatestBlessedModel-{r}-resolver" for r in ("model", "model-blessing")}
    components = COMPONENTS - {"BabiExampleGen", "LatestBlessedModel"} | {example_gen}
    assert set(spec["root"]["dag"]["tasks"]) == components | resolvers  # KFP's two steps
    executors = spec["deploymentSpec"]["executors"].values()
    containers = [e["container"] for e in executors if "container" in e]  # resolvers are not
    assert len(containers) == len(components)
    assert {c["image"] for c in containers} == {"example.com/memn2n:1"}


@pytest.mark.e2e
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


def write_toy_corpus(folder, lines: dict[str, int]) -> str:
    """PTB-format files of sentences 'the X V the Y and the Y runs' (X, Y, V drawn at random)."""
    rng = random.Random(0)
    nouns, verbs = ["cat", "dog", "bird", "fish"], ["sees", "likes", "chases"]
    folder.mkdir(parents=True)
    for split, count in lines.items():
        sentences = []
        for _ in range(count):
            x, y = rng.choice(nouns), rng.choice(nouns)
            sentences.append(f" the {x} {rng.choice(verbs)} the {y} and the {y} runs \n")
        (folder / f"ptb.{split}.txt").write_text("".join(sentences))
    return str(folder)


@pytest.mark.e2e
def test_language_model_pipeline_blesses_by_perplexity_and_serves_next_words(tmp_path, capsys):
    config = PipelineConfig(
        experiment="lm",
        corpus="ptb",
        corpus_dir=write_toy_corpus(tmp_path / "ptb", {"train": 400, "valid": 60, "test": 60}),
        pipeline_root=str(tmp_path / "root"),
        serving_dir=str(tmp_path / "serving"),
        memn2n_settings={
            **{"embedding_dim": 16, "linear_units": 8, "hops": 2, "memory_size": 10},
            **{"batch_size": 32, "learning_rate": 0.05, "jit_compile": False},
        },
        lstm_settings={"sequence_length": 8, "lstm_units": 16, "lstm_embedding_dim": 16},
        epochs=2,
        max_perplexity=1000.0,
        perplexity_margin=-10.0,  # any trained model passes; the second run tightens the bound
        beam_args=BEAM_ARGS,
    )
    assert config.pipeline_name == "memn2n-ptb" and config.model_name == "ptb"
    run(config)
    store = open_metadata_store(config)
    executions = executions_by_component(store)
    assert set(executions) == COMPONENTS - {"BabiExampleGen"} | {"LMExampleGen"}
    report = run_report(config)
    assert report.blessed is True and report.canary["blessed"] is True
    perplexity = report.values["candidate"]["all"]
    assert 1 < perplexity < report.values["baseline"]["all"]

    # TFMA's perplexity is the pushed model's own score of every word of the raw test split
    [examples] = [a for a in store.get_artifacts_by_type("Examples") if "/LMExampleGen/" in a.uri]
    records = glob.glob(f"{examples.uri}/Split-test/*.gz")
    raw = tf.stack(list(tf.data.TFRecordDataset(records, compression_type="GZIP")))
    [version] = os.listdir(os.path.join(config.serving_dir, "ptb"))
    served = tf.saved_model.load(os.path.join(config.serving_dir, "ptb", version)).signatures
    scored = served["serving_examples"](examples=raw)
    assert scored["words"].numpy().sum() == 60 * 10  # 9 words and <eos> a line
    assert math.exp(scored["nll"].numpy().sum() / 600) == pytest.approx(perplexity, rel=1e-4)
    server = ModelServer(
        [single_model_config("ptb", os.path.join(config.serving_dir, "ptb"))],
        port=0,
        rest_api_port=0,
        settle_seconds=0,
    ).start()
    progress = capsys.readouterr().out  # the trainers' epochs, one rounded line each
    assert re.search(r"^\[memn2n\] epoch 2: loss [\d.]+, .*tokens/s$", progress, re.MULTILINE)
    assert re.search(r"^\[lstm\] epoch 1: ", progress, re.MULTILINE) and '{"' not in progress
    try:
        server.wait_until_available("ptb")
        for protocol, address in (("grpc", server.port), ("rest", server.rest_api_port)):
            flags = ["--rest"] if protocol == "rest" else []
            query = ["query", "--model", "ptb", "--server", f"127.0.0.1:{address}", "--json"]
            assert main([*query, *flags, "--prefix", "the bird likes"]) == 0
            answer = json.loads(capsys.readouterr().out)
            assert answer["next_words"][0][0] == "the", protocol  # the grammar's next word
            assert len(answer["attention"][0]) == 2  # hops
    finally:
        server.stop()

    settings = dataclasses.asdict(config)
    settings.update(max_perplexity=round(perplexity * 0.9, 3))
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(settings))
    assert main(["pipeline", "run", "--config", str(config_file)]) == 3
    printed = capsys.readouterr().out
    assert "MemN2N ppl" in printed and "NOT blessed, nothing pushed" in printed
    assert f"slice all: perplexity (value) is {perplexity:.4f}, needs at most" in printed
    assert os.listdir(os.path.join(config.serving_dir, "ptb")) == [version]


def trainer_fn_args(config: PipelineConfig, custom_config: dict, out: pathlib.Path):
    """The bAbI Trainer's FnArgs on the pipeline run's Transform output, writing under `out`."""
    from tfx.components.trainer.fn_args_utils import FnArgs

    store = open_metadata_store(config)

    def uri(kind: str, component: str) -> str:
        [artifact] = [a for a in store.get_artifacts_by_type(kind) if f"/{component}/" in a.uri]
        return artifact.uri

    examples = uri("Examples", "Transform")
    return FnArgs(
        train_files=[f"{examples}/Split-train/*"],
        eval_files=[f"{examples}/Split-eval/*"],
        transform_output=uri("TransformGraph", "Transform"),
        serving_model_dir=str(out / "serving"),
        model_run_dir=str(out / "run"),
        custom_config=custom_config,
    )


TRAINER_KILLED_MID_EPOCH = """
import os, pickle, signal, sys
import keras

class KillInEpoch3(keras.callbacks.TensorBoard):  # the Trainer's own callback, plus a crash
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        super().on_epoch_begin(epoch, logs)

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 2:
            os.kill(os.getpid(), signal.SIGKILL)

keras.callbacks.TensorBoard = KillInEpoch3
from model.babi.trainer import run_fn
run_fn(pickle.load(open(sys.argv[1], "rb")))
"""


def test_a_trainer_retried_after_a_crash_resumes_its_checkpoint(blessed_run, tmp_path):
    """The bAbI Trainer killed in its third epoch, then run again with the same inputs (as a
    retried pipeline runs it), continues from its checkpoint and ends as the pipeline's
    uninterrupted Trainer did; the checkpoint is removed once the model is exported."""
    import pickle
    import signal
    import subprocess
    import sys

    store = open_metadata_store(blessed_run)
    config = {**blessed_run.trainer_config("memn2n"), "checkpoint_dir": str(tmp_path / "ck")}
    fn_args = trainer_fn_args(blessed_run, config, tmp_path)
    args_file = tmp_path / "fn_args.pickle"
    args_file.write_bytes(pickle.dumps(fn_args))
    killed = subprocess.run(
        [sys.executable, "-c", TRAINER_KILLED_MID_EPOCH, str(args_file)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    with np.load(tmp_path / "ck" / "memn2n.npz") as saved:
        assert json.loads(saved["meta.json"].tobytes())["epoch"] == 2

    from model.babi.trainer import run_fn

    run_fn(fn_args)  # the retry
    with open(tmp_path / "run" / "training.json") as f:
        resumed = json.load(f)
    pipeline_run = [a for a in store.get_artifacts_by_type("ModelRun") if "/Trainer/" in a.uri]
    with open(os.path.join(pipeline_run[0].uri, "training.json")) as f:
        uninterrupted = json.load(f)
    assert len(resumed["history"]) == len(uninterrupted["history"]) > 2
    for mine, theirs in zip(resumed["history"], uninterrupted["history"], strict=True):
        assert (mine["phase"], mine["learning_rate"]) == (theirs["phase"], theirs["learning_rate"])
        assert mine["val_loss"] == pytest.approx(theirs["val_loss"], rel=1e-4)
    for seed, figures in uninterrupted["seed_validation"].items():
        assert resumed["seed_validation"][seed] == pytest.approx(figures, rel=1e-4)
    assert not (tmp_path / "ck").exists()


RUN_TRAINER = """
import pickle, sys
from model.babi.trainer import run_fn
run_fn(pickle.load(open(sys.argv[1], "rb")))
"""


def saved_weights(saved_model: str) -> dict[str, np.ndarray]:
    """The model's weights in a SavedModel's variables, by checkpoint key."""
    reader = tf.train.load_checkpoint(os.path.join(saved_model, "variables", "variables"))
    keys = [k for k in reader.get_variable_to_shape_map() if k.startswith("model/")]
    return {key: reader.get_tensor(key) for key in keys}


def test_the_trainer_on_two_workers_matches_one_worker(blessed_run, tmp_path):
    """The bAbI Trainer under MultiWorkerMirroredStrategy, two worker processes on loopback
    (TF_CONFIG) with the same FnArgs, as a cluster runs them: both finish, their weights agree,
    and they match one worker's. Random noise is off, since each replica draws its own."""
    import pickle

    from model.babi.trainer import run_fn

    settings = {"epochs": 4, "linear_start": False, "random_noise": 0.0}
    config = {**blessed_run.trainer_config("memn2n"), "settings": settings}
    config.pop("checkpoint_dir")
    two, one = tmp_path / "two", tmp_path / "one"
    args_file = tmp_path / "fn_args.pickle"
    args_file.write_bytes(pickle.dumps(trainer_fn_args(blessed_run, config, two)))
    run_on_two_workers(RUN_TRAINER, str(args_file))

    run_fn(trainer_fn_args(blessed_run, config, one))  # one worker, in this process
    chief, other = (
        saved_weights(str(two / "serving")),
        saved_weights(str(two / "run" / "worker-1" / "serving_model")),
    )
    alone = saved_weights(str(one / "serving"))
    assert sorted(chief) == sorted(other) == sorted(alone) and len(chief) > 5
    for key, weights in chief.items():
        np.testing.assert_array_equal(weights, other[key], err_msg=key)
        np.testing.assert_allclose(weights, alone[key], atol=1e-5, err_msg=key)
    histories = []
    for folder in (two / "run", two / "run" / "worker-1", one / "run"):
        with open(folder / "training.json") as f:
            histories.append(json.load(f)["history"])
    assert len(histories[0]) == 4
    for epochs in zip(*histories, strict=True):
        chief_loss, other_loss, alone_loss = (epoch["val_loss"] for epoch in epochs)
        assert chief_loss == other_loss == pytest.approx(alone_loss, rel=1e-4)
