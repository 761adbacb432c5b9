"""The pipeline's one typed configuration, with the defaults `make run` uses."""

from __future__ import annotations

import dataclasses
import json
import os

from components.babi_format import ALL_TASKS, TRAIN_SETS
from components.lm_corpus import CONTEXT_WORDS, CORPORA
from model.preprocessing import DEFAULT_MEMORY_SIZE, DEFAULT_SENTENCE_SIZE

EXPERIMENTS = ("babi", "lm")  # the paper's question answering, or its language modelling
MODES = ("joint", "single")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Where the data and outputs live, what to ingest, train, and bless; checked on construction.

    `experiment` picks the pipeline: "babi" (bAbI from `babi_dir`) or "lm" (`corpus` from
    `corpus_dir`). `memn2n_settings` and `lstm_settings` override fields of the experiment's
    training settings (bAbI: model.training.BabiTrainConfig and model.lstm.LSTMConfig; LM:
    model.lm_training.LMTrainConfig), checked here as the Trainer's run_fn will apply them.
    """

    babi_dir: str = ""
    experiment: str = "babi"
    corpus: str = "ptb"
    corpus_dir: str = ""
    pipeline_root: str = os.path.join("build", "pipeline_root")
    serving_dir: str = os.path.join("build", "serving")
    metadata_path: str = ""  # default: <pipeline_root>/metadata.sqlite
    pipeline_name: str = ""  # default: memn2n-babi, memn2n-ptb or memn2n-text8
    model_name: str = ""  # <serving_dir>/<model_name>/<version>/; default babi, ptb or text8
    train_set: str = "en"
    tasks: tuple[int, ...] = ALL_TASKS
    eval_every: int = 10
    memory_size: int = DEFAULT_MEMORY_SIZE  # N sentences
    sentence_size: int = DEFAULT_SENTENCE_SIZE  # J words; longer sentences are cut
    mode: str = "joint"  # the paper's joint or single-task defaults for MemN2N
    epochs: int | None = None  # both models: MemN2N's epochs after LS, and the LSTM's
    memn2n_settings: dict = dataclasses.field(default_factory=dict)
    lstm_settings: dict = dataclasses.field(default_factory=lambda: {"epochs": 5})
    seed: int = 1
    mixed_precision: bool = False
    min_accuracy: float = 0.7  # bAbI: bless only above this test accuracy ...
    baseline_margin: float = 0.05  # ... and this much above the LSTM baseline's
    max_perplexity: float = 300.0  # LM: bless only below this test perplexity ...
    perplexity_margin: float = 0.0  # ... and this fraction below the LSTM baseline's (< 0: above)
    context_words: int = CONTEXT_WORDS  # LM: words kept before each block, for TFMA's scoring
    canary_requests: int = 10  # gRPC requests of 8 eval questions the served candidate must answer
    beam_args: tuple[str, ...] = (
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=0",  # one worker per core
    )
    enable_cache: bool = True
    check_data: bool = True  # False when compiling for a cluster where the data is remote

    def __post_init__(self) -> None:
        if self.experiment not in EXPERIMENTS:
            raise ValueError(f"experiment {self.experiment!r} is not one of {EXPERIMENTS}")
        if self.corpus not in CORPORA:
            raise ValueError(f"corpus {self.corpus!r} is not one of {CORPORA}")
        data_dir = "babi_dir" if self.experiment == "babi" else "corpus_dir"
        if self.check_data and not os.path.isdir(getattr(self, data_dir)):
            raise ValueError(f"{data_dir} {getattr(self, data_dir)!r} is not a folder")
        if self.train_set not in TRAIN_SETS:
            raise ValueError(f"train_set {self.train_set!r} is not one of {TRAIN_SETS}")
        if not self.tasks or set(self.tasks) - set(ALL_TASKS):
            raise ValueError(f"tasks {self.tasks!r} must be a non-empty subset of 1-20")
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {MODES}")
        if self.eval_every < 2:
            raise ValueError(f"eval_every {self.eval_every} must be at least 2")
        for name in ("memory_size", "sentence_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)} must be at least 1")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs {self.epochs} must be at least 1")
        if self.canary_requests < 1:
            raise ValueError(f"canary_requests {self.canary_requests} must be at least 1")
        if not 0 <= self.min_accuracy <= 1:
            raise ValueError(f"min_accuracy {self.min_accuracy} must be in [0, 1]")
        if self.max_perplexity <= 1 or self.perplexity_margin >= 1:
            raise ValueError("max_perplexity must be above 1 and perplexity_margin below 1")
        if self.context_words < 1:
            raise ValueError(f"context_words {self.context_words} must be at least 1")
        data = "babi" if self.experiment == "babi" else self.corpus
        object.__setattr__(self, "pipeline_name", self.pipeline_name or f"memn2n-{data}")
        object.__setattr__(self, "model_name", self.model_name or data)
        if not self.model_name.isidentifier():
            raise ValueError(f"model_name {self.model_name!r} must be a plain name")
        for model in ("memn2n", "lstm"):
            self.training_settings(model)
        if not self.metadata_path:
            object.__setattr__(
                self, "metadata_path", os.path.join(self.pipeline_root, "metadata.sqlite")
            )

    def training_settings(self, model: str):
        """The typed settings `model`'s Trainer will train with; fails on a bad override."""
        source = f"{model}_settings"
        if self.experiment == "lm":
            from model.lm_trainer import lm_training_settings

            return lm_training_settings(self.trainer_config(model), source)
        from model.trainer import training_settings

        return training_settings(
            self.trainer_config(model), vocab_size=0, max_tokens=0, source=source
        )

    def trainer_config(self, model: str) -> dict:
        """The Trainer's custom_config for `model` ("memn2n" or "lstm")."""
        settings = dict(self.memn2n_settings if model == "memn2n" else self.lstm_settings)
        if self.epochs is not None:
            settings["epochs"] = self.epochs
        if self.experiment == "lm":
            return {"model": model, "corpus": self.corpus, "settings": settings, "seed": self.seed}
        return {
            "model": model,
            "mode": self.mode,
            "settings": settings,
            "memory_size": self.memory_size,
            "sentence_size": self.sentence_size,
            "seed": self.seed,
            "mixed_precision": self.mixed_precision,
        }


def read_config_file(path: str) -> dict:
    """A JSON object of PipelineConfig fields, checked by name."""
    with open(path) as f:
        values = json.load(f)
    names = {f.name for f in dataclasses.fields(PipelineConfig)}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object of settings")
    if unknown := sorted(set(values) - names):
        raise ValueError(f"{path}: unknown setting(s) {unknown}; known: {', '.join(sorted(names))}")
    if "tasks" in values:
        values["tasks"] = tuple(values["tasks"])
    return values
