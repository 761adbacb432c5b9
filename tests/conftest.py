"""Fixtures the tests write themselves (small bAbI folders, an archive mirror), the one
pipeline run they share, and the model server serving what it pushed."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving.load_bench import copy_version, free_port
from serving.model_manager import single_model_config
from serving.servable import RequestLimits
from serving.server import ModelServer

SHARED_BABI = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "babi"

EVERY_MTA_PIECE = {  # every Multi-Token Attention piece at once (model.hop_attention)
    "heads": 2,
    "slot_kernel": 3,
    "hop_kernel": 2,
    "post_slot_kernel": 3,
    "post_hop_kernel": 2,
    "head_mix": True,
    "post_head_group": 2,
    "head_norm": True,
    "head_gate": True,
    "top_k": 4,
}
# Beam in the test's own process: each worker process costs a Beam component about 30 s of
# start-up on this 2-core machine (a bad-task-file run: 39.6 s with two workers, 3.8 s in
# process; 2026-12-06; the LM pipeline test: 330 s with workers, 2026-12-07). The pipeline's
# default (a worker process per core) is tested on the bAbI transform (test_babi_ingestion.py).
BEAM_ARGS = ("--direct_running_mode=in_memory",)

# Two stories of task 1, with a question between statements (ids count question lines too).
TASK1 = """\
1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Sandra moved to the garden.
6 Where is Daniel? \thallway\t4
1 John moved to the office.
2 Mary went to the kitchen.
3 Where is John? \toffice\t1
"""

# Task 8 style answers with a comma, supporting facts from two statements.
TASK8 = """\
1 Mary took the football.
2 Mary picked up the apple.
3 What is Mary carrying?\tfootball,apple\t1 2
1 John got the milk.
2 What is John carrying?\tmilk\t1
"""


def run_on_two_workers(script: str, *args: str, timeout: float = 600) -> None:
    """Runs Python source `script` with `args` and the worker's index as workers 0 and 1 of a
    TF_CONFIG cluster on loopback, as a cluster runs them; both must exit 0."""
    cluster = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, *args, str(index)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={
                **os.environ,
                "PYTHONPATH": os.getcwd(),
                "TF_CONFIG": json.dumps(
                    {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}
                ),
            },
        )
        for index in range(2)
    ]
    try:
        logs = [worker.communicate(timeout=timeout)[0] for worker in workers]
    finally:  # a worker left waiting for the other is not left running
        for worker in workers:
            worker.kill()
    for worker, log in zip(workers, logs, strict=True):
        assert worker.returncode == 0, log[-3000:]


def context_windows(stream: np.ndarray, positions: np.ndarray, memory_size: int) -> np.ndarray:
    """[B, N]: the N words before each position, most recent first, 0 before the stream."""
    offsets = positions[:, None] - 1 - np.arange(memory_size)[None, :]
    return np.where(offsets >= 0, stream[np.maximum(offsets, 0)], 0).astype("int32")


def write_babi(root: pathlib.Path, files: dict[str, str], train_set: str = "en") -> pathlib.Path:
    """Write `files` (name -> text) into root/train_set/ and return root."""
    folder = root / train_set
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return root


def fixture_files(stories_per_file: int = 1) -> dict[str, str]:
    """Train and test files for tasks 1 and 8, each holding `stories_per_file` copies."""
    return {
        "qa1_single-supporting-fact_train.txt": TASK1 * stories_per_file,
        "qa1_single-supporting-fact_test.txt": TASK1,
        "qa8_lists-sets_train.txt": TASK8 * stories_per_file,
        "qa8_lists-sets_test.txt": TASK8,
    }


@pytest.fixture
def babi_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """A bAbI folder with tasks 1 and 8; 10 copies of each story in the train files."""
    return write_babi(tmp_path / "babi", fixture_files(stories_per_file=10))


def make_archive(path: pathlib.Path, babi_root: pathlib.Path, members: list[str]) -> str:
    """A mirror of the official archive holding `members` of `babi_root`; its file:// URL."""
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            tar.add(babi_root / member, arcname=f"tasks_1-20_v1-2/{member}")
    return path.as_uri()


def fixture_digests(babi_root: pathlib.Path, members: list[str]) -> dict[str, str]:
    """sha256 of each member, in the form of ingest.babi.checksums.BABI_SHA256."""
    return {m: hashlib.sha256((babi_root / m).read_bytes()).hexdigest() for m in members}


@pytest.fixture(scope="session")
def blessed_run(tmp_path_factory):
    """One full pipeline run that blesses and pushes (the bounds let any trained model pass);
    shared by the pipeline and serving tests. It starts as on a machine without the data: no
    bAbI folder, so the pipeline downloads the archive (from a local mirror of fixture files,
    whose digests stand in for the official ones) into its cache and checks it."""
    from pipeline.configs import PipelineConfig
    from pipeline.local_runner import run

    root = tmp_path_factory.mktemp("pipeline")
    source = write_babi(root / "source", fixture_files(stories_per_file=10))
    members = [f"en/{name}" for name in fixture_files()]
    config = PipelineConfig(
        data_url=make_archive(root / "mirror.tar.gz", source, members),
        cache_dir=str(root / "cache"),
        pipeline_root=str(root / "root"),
        serving_dir=str(root / "serving"),
        tasks=(1, 8),
        epochs=3,
        lstm_settings={"epochs": 1},
        min_accuracy=0.0,
        baseline_margin=-1.0,
        beam_args=BEAM_ARGS,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("ingest.babi.download.BABI_SHA256", fixture_digests(source, members))
        run(config)
    return config


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that needs the shared pipeline run is an end-to-end test."""
    for item in items:
        if "blessed_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def shared_babi() -> pathlib.Path:
    """The full bAbI v1.2 data in ../shared/data/babi (never committed)."""
    if not (SHARED_BABI / "en").is_dir():
        pytest.skip(f"the shared bAbI data is not at {SHARED_BABI}")
    return SHARED_BABI


# The model server over loopback, serving the pushed model (tests/test_serving*.py).
STORY = "Mary moved to the bathroom.\nJohn went to the hallway."
QUESTION = "Where is Mary?"
INPUTS = {"story": [STORY], "question": [QUESTION]}
LIMITS = RequestLimits(max_request_bytes=1 << 16, max_lines=60, max_words=20, max_batch=64)


def pushed_version(blessed_run) -> str:
    """The version folder the pipeline's Pusher wrote."""
    base = os.path.join(blessed_run.serving_dir, "babi")
    return os.path.join(base, max(os.listdir(base), key=int))


@pytest.fixture(scope="module")
def server(blessed_run, tmp_path_factory):
    """Our server on free loopback ports, serving a copy of the pushed model as version 1."""
    base_path = str(tmp_path_factory.mktemp("serving") / "babi")
    copy_version(pushed_version(blessed_run), base_path, 1)
    model = single_model_config("babi", base_path)
    started = ModelServer(
        [model], port=0, rest_api_port=0, poll_seconds=0.2, settle_seconds=0.3, limits=LIMITS
    ).start()
    started.wait_until_available("babi")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as opened:
        yield opened


@pytest.fixture(scope="module")
def stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def rest(server, path: str, body: bytes | None = None) -> tuple[int, dict]:
    """One HTTP request to the REST port: status and JSON body."""
    request = urllib.request.Request(f"http://127.0.0.1:{server.rest_api_port}{path}", data=body)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
