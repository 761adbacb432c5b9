"""Small bAbI-format fixtures written by the tests themselves."""

from __future__ import annotations

import hashlib
import os
import pathlib
import tarfile

import pytest

SHARED_BABI = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "babi"

BEAM_ARGS = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")

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


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
