"""Small bAbI-format fixtures written by the tests themselves."""

from __future__ import annotations

import os
import pathlib

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


@pytest.fixture(scope="session")
def blessed_run(tmp_path_factory):
    """One full pipeline run that blesses and pushes (the bounds let any trained model pass);
    shared by the pipeline and serving tests."""
    from pipeline.configs import PipelineConfig
    from pipeline.local_runner import run

    root = tmp_path_factory.mktemp("pipeline")
    config = PipelineConfig(
        babi_dir=str(write_babi(root / "babi", fixture_files(stories_per_file=10))),
        pipeline_root=str(root / "root"),
        serving_dir=str(root / "serving"),
        tasks=(1, 8),
        epochs=3,
        lstm_settings={"epochs": 1},
        min_accuracy=0.0,
        baseline_margin=-1.0,
        beam_args=BEAM_ARGS,
    )
    run(config)
    return config


@pytest.fixture
def shared_babi() -> pathlib.Path:
    """The full bAbI v1.2 data in ../shared/data/babi (never committed)."""
    if not (SHARED_BABI / "en").is_dir():
        pytest.skip(f"the shared bAbI data is not at {SHARED_BABI}")
    return SHARED_BABI


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
