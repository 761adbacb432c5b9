"""The pipeline's one typed configuration, with the defaults `make run` uses, and the record of
what each experiment plugs into the pipeline (as the TFX taxi template's configs.py names
RUN_FN and PREPROCESSING_FN).

Importing this module imports neither TensorFlow, Keras nor tf.Transform: a config checks
itself, training settings included, before anything heavy loads.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from ingest.babi.download import BABI_URL, DEFAULT_CACHE_DIR, download_babi
from ingest.babi.format import ALL_TASKS, TRAIN_SETS, TrainSet, find_task_files
from ingest.lm.corpus import CONTEXT_WORDS, CORPORA, corpus_spans, download_corpus
from model.babi import settings as babi_settings
from model.lm import settings as lm_settings
from model.settings import (
    EXPERIMENT_NAMES,
    MODELS,
    ExperimentName,
    ModelKind,
    check_choice,
    check_positive,
    read_settings_file,
)
from model.signatures import ACCURACY, PERPLEXITY

if TYPE_CHECKING:
    import tensorflow_model_analysis as tfma
    from tfx.dsl.components.base.base_component import BaseComponent

Baseline = Literal["lstm", "blessed"]  # what an Evaluator compares the candidate with


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Where the data and outputs live, what to ingest, train, and bless; checked on construction.

    `experiment` picks the pipeline: "babi" (bAbI from `babi_dir`) or "lm" (`corpus` from
    `corpus_dir`); an empty folder means the official archive, downloaded once into
    `cache_dir` (from `data_url` when set) and checked. `memn2n_settings` and `lstm_settings`
    override fields of the experiment's training settings (model/babi/settings.py,
    model/lm/settings.py), checked here as the Trainer's run_fn will apply them.
    """

    experiment: ExperimentName = "babi"
    babi_dir: str = ""
    corpus: lm_settings.Corpus = "ptb"
    corpus_dir: str = ""
    cache_dir: str = DEFAULT_CACHE_DIR
    data_url: str = ""  # default: the official archive of the experiment's data
    pipeline_root: str = os.path.join("build", "pipeline_root")
    serving_dir: str = os.path.join("build", "serving")
    metadata_path: str = ""  # default: <pipeline_root>/metadata.sqlite
    pipeline_name: str = ""  # default: memn2n-babi, memn2n-ptb or memn2n-text8
    model_name: str = ""  # <serving_dir>/<model_name>/<version>/; default babi, ptb or text8
    train_set: TrainSet = "en"
    tasks: tuple[int, ...] = ALL_TASKS
    eval_every: int = 10
    memory_size: int = babi_settings.DEFAULT_MEMORY_SIZE  # N sentences
    sentence_size: int = babi_settings.DEFAULT_SENTENCE_SIZE  # J words; longer ones are cut
    mode: babi_settings.Mode = "joint"  # the paper's joint or single-task defaults for MemN2N
    epochs: int | None = None  # both models: MemN2N's epochs after LS, and the LSTM's
    memn2n_settings: dict = dataclasses.field(default_factory=dict)
    lstm_settings: dict = dataclasses.field(default_factory=lambda: {"epochs": 5})
    seed: int = 1
    seeds: int = 1  # models trained from seed, seed + 1, ... (MemN2N: in one stack); the
    # lowest validation error is exported
    mixed_precision: bool = False
    min_accuracy: float = 0.7  # bAbI: bless only above this test accuracy ...
    baseline_margin: float = 0.05  # ... and this much above the LSTM baseline's
    max_perplexity: float = 300.0  # LM: bless only below this test perplexity ...
    perplexity_margin: float = 0.0  # ... and this fraction below the LSTM baseline's (< 0: above)
    max_regression: float = 0.0  # and at most this much worse than the latest blessed model
    # (bAbI: accuracy, absolute; LM: perplexity, a fraction)
    context_words: int = CONTEXT_WORDS  # LM: words kept before each block, for TFMA's scoring
    canary_requests: int = 10  # gRPC requests of 8 eval questions the served candidate must answer
    beam_args: tuple[str, ...] = (
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=0",  # one worker per core
    )
    enable_cache: bool = True
    check_data: bool = True  # False when compiling for a cluster where the data is remote

    def __post_init__(self) -> None:
        check_choice("experiment", self.experiment, EXPERIMENT_NAMES)
        check_choice("corpus", self.corpus, CORPORA)
        check_choice("train_set", self.train_set, TRAIN_SETS)
        check_choice("mode", self.mode, babi_settings.MODES)
        if not self.tasks or set(self.tasks) - set(ALL_TASKS):
            raise ValueError(f"tasks {self.tasks!r} must be a non-empty subset of 1-20")
        data_dir = self.data_dir
        if self.check_data and data_dir and not os.path.isdir(data_dir):
            raise ValueError(f"{self.spec.data_dir_field} {data_dir!r} is not a folder")
        if not self.check_data and not data_dir:
            raise ValueError(f"give {self.spec.data_dir_field}: where the cluster reads the data")
        if self.eval_every < 2:
            raise ValueError(f"eval_every {self.eval_every} must be at least 2")
        check_positive(
            self, ("memory_size", "sentence_size", "context_words", "canary_requests", "seeds")
        )
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs {self.epochs} must be at least 1")
        if not 0 <= self.min_accuracy <= 1:
            raise ValueError(f"min_accuracy {self.min_accuracy} must be in [0, 1]")
        if self.max_perplexity <= 1 or self.perplexity_margin >= 1:
            raise ValueError("max_perplexity must be above 1 and perplexity_margin below 1")
        if self.max_regression < 0:
            raise ValueError(f"max_regression {self.max_regression} must be at least 0")
        data = self.spec.data_name(self)
        object.__setattr__(self, "pipeline_name", self.pipeline_name or f"memn2n-{data}")
        object.__setattr__(self, "model_name", self.model_name or data)
        if not self.model_name.isidentifier():
            raise ValueError(f"model_name {self.model_name!r} must be a plain name")
        for model in MODELS:
            self.training_settings(model)
        if self.check_data and data_dir:
            self.spec.check_files(self)  # a missing or misnamed file fails before anything runs
        if not self.metadata_path:
            object.__setattr__(
                self, "metadata_path", os.path.join(self.pipeline_root, "metadata.sqlite")
            )

    @property
    def spec(self) -> Experiment:
        """What this config's experiment plugs into the pipeline."""
        return EXPERIMENTS[self.experiment]

    @property
    def data_dir(self) -> str:
        """The experiment's input folder ("" until downloaded)."""
        return getattr(self, self.spec.data_dir_field)

    def with_data(self) -> PipelineConfig:
        """This config with its input folder: the one given, or the official data downloaded
        into `cache_dir` and checked (once; later calls find it there)."""
        if self.data_dir:
            return self
        folder = self.spec.download(self)
        changes: dict[str, Any] = {self.spec.data_dir_field: folder}
        return dataclasses.replace(self, **changes)

    def training_settings(self, model: ModelKind) -> Any:
        """The typed settings `model`'s Trainer will train with; fails on a bad override."""
        return self.spec.trainer_settings(self.trainer_config(model), f"{model}_settings")

    def trainer_config(self, model: ModelKind) -> dict:
        """The Trainer's custom_config for `model` ("memn2n" or "lstm")."""
        settings = dict(self.memn2n_settings if model == "memn2n" else self.lstm_settings)
        if self.epochs is not None:
            settings["epochs"] = self.epochs
        common: dict[str, Any] = {
            "model": model,
            "settings": settings,
            "seed": self.seed,
            "seeds": self.seeds,
        }
        if "://" not in self.pipeline_root:  # checkpoints on a local disk (model.checkpoint)
            common["checkpoint_dir"] = os.path.abspath(
                os.path.join(self.pipeline_root, "checkpoints", self.experiment, model)
            )
        return {**common, **{name: getattr(self, name) for name in self.spec.trainer_fields}}


@dataclasses.dataclass(frozen=True)
class Experiment:
    """What one of the paper's experiments plugs into the same pipeline shape. The functions
    take the PipelineConfig; those that build TFX parts import them when called."""

    name: ExperimentName
    data_name: Callable[[PipelineConfig], str]  # names the pipeline and the served model
    data_dir_field: str  # the config field naming the input folder
    download: Callable[[PipelineConfig], str]  # the official data into the cache: its folder
    example_gen: Callable[[PipelineConfig], BaseComponent]
    preprocessing_fn: str  # Transform's module path
    transform_config: Callable[[PipelineConfig], dict]
    run_fn: str  # both Trainers' module path
    trainer_fields: tuple[str, ...]  # config fields passed to run_fn in custom_config
    trainer_settings: Callable[[dict, str], Any]  # custom_config -> typed settings (or fails)
    eval_config: Callable[[PipelineConfig, Baseline], tfma.EvalConfig]
    metric: str  # the TFMA metric blessed on, as the run report reads it
    metric_label: str  # its short name in the run report's table
    check_files: Callable[[PipelineConfig], object]  # fails naming a missing or bad input file


def babi_example_gen(config: PipelineConfig) -> BaseComponent:
    from pipeline.components.babi_example_gen import BabiExampleGen

    return BabiExampleGen(
        babi_dir=config.babi_dir,
        train_set=config.train_set,
        tasks=config.tasks,
        eval_every=config.eval_every,
        check_files=config.check_data,
    )


def lm_example_gen(config: PipelineConfig) -> BaseComponent:
    from pipeline.components.lm_example_gen import LMExampleGen

    return LMExampleGen(
        config.corpus, config.corpus_dir, config.context_words, check_files=config.check_data
    )


def babi_eval_config(config: PipelineConfig, baseline: Baseline) -> tfma.EvalConfig:
    """The accuracy bound, and the margin over the LSTM or the most the candidate may lose
    against the latest blessed model."""
    from pipeline.evaluation import accuracy_eval_config

    margin = config.baseline_margin if baseline == "lstm" else -config.max_regression
    return accuracy_eval_config(config.min_accuracy, margin)


def lm_eval_config(config: PipelineConfig, baseline: Baseline) -> tfma.EvalConfig:
    """The perplexity bound, and the margin below the LSTM or the most the candidate may rise
    above the latest blessed model."""
    from pipeline.evaluation import perplexity_eval_config

    margin = config.perplexity_margin if baseline == "lstm" else -config.max_regression
    return perplexity_eval_config(config.max_perplexity, margin)


def download_babi_archive(config: PipelineConfig) -> str:
    return download_babi(config.cache_dir, config.data_url or BABI_URL)


def download_lm_corpus(config: PipelineConfig) -> str:
    return download_corpus(config.corpus, config.cache_dir, config.data_url)


EXPERIMENTS: dict[ExperimentName, Experiment] = {
    "babi": Experiment(
        name="babi",
        data_name=lambda c: "babi",
        data_dir_field="babi_dir",
        download=download_babi_archive,
        example_gen=babi_example_gen,
        preprocessing_fn="model.babi.preprocessing.preprocessing_fn",
        transform_config=lambda c: {"memory_size": c.memory_size, "sentence_size": c.sentence_size},
        run_fn="model.babi.trainer.run_fn",
        trainer_fields=("mode", "memory_size", "sentence_size", "mixed_precision"),
        trainer_settings=lambda custom, source: babi_settings.trainer_settings(
            custom, source=source
        ),
        eval_config=babi_eval_config,
        metric=ACCURACY,
        metric_label="acc",
        check_files=lambda c: find_task_files(c.babi_dir, c.train_set, c.tasks),
    ),
    "lm": Experiment(
        name="lm",
        data_name=lambda c: c.corpus,
        data_dir_field="corpus_dir",
        download=download_lm_corpus,
        example_gen=lm_example_gen,
        preprocessing_fn="model.lm.preprocessing.preprocessing_fn",
        transform_config=lambda c: {"min_count": c.training_settings("memn2n").min_count},
        run_fn="model.lm.trainer.run_fn",
        trainer_fields=("corpus",),
        trainer_settings=lm_settings.trainer_settings,
        eval_config=lm_eval_config,
        metric=PERPLEXITY,
        metric_label="ppl",
        check_files=lambda c: corpus_spans(c.corpus, c.corpus_dir),
    ),
}


def read_config_file(path: str) -> dict:
    """A JSON object of PipelineConfig fields, checked by name."""
    values = read_settings_file(path)
    names = {f.name for f in dataclasses.fields(PipelineConfig)}
    if unknown := sorted(set(values) - names):
        raise ValueError(f"{path}: unknown setting(s) {unknown}; known: {', '.join(sorted(names))}")
    if "tasks" in values:
        values["tasks"] = tuple(values["tasks"])
    return values
