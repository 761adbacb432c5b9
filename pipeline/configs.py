"""The pipeline's one typed configuration, with the defaults `make run` uses."""

from __future__ import annotations

import dataclasses
import os

from components.babi_format import ALL_TASKS, TRAIN_SETS

PIPELINE_NAME = "memn2n_babi"


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Where the data and outputs live and what to ingest; checked on construction."""

    babi_dir: str
    pipeline_root: str = os.path.join("build", "pipeline_root")
    metadata_path: str = ""  # default: <pipeline_root>/metadata.sqlite
    pipeline_name: str = PIPELINE_NAME
    train_set: str = "en"
    tasks: tuple[int, ...] = ALL_TASKS
    eval_every: int = 10
    beam_args: tuple[str, ...] = (
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=0",  # one worker per core
    )
    enable_cache: bool = True

    def __post_init__(self) -> None:
        if not os.path.isdir(self.babi_dir):
            raise ValueError(f"babi_dir {self.babi_dir!r} is not a folder")
        if self.train_set not in TRAIN_SETS:
            raise ValueError(f"train_set {self.train_set!r} is not one of {TRAIN_SETS}")
        if not self.tasks or set(self.tasks) - set(ALL_TASKS):
            raise ValueError(f"tasks {self.tasks!r} must be a non-empty subset of 1-20")
        if self.eval_every < 2:
            raise ValueError(f"eval_every {self.eval_every} must be at least 2")
        if not self.metadata_path:
            object.__setattr__(
                self, "metadata_path", os.path.join(self.pipeline_root, "metadata.sqlite")
            )
