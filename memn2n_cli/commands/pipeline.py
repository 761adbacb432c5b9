"""`memn2n pipeline run|compile`: the TFX pipeline, run locally or compiled for Kubeflow."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence

from ingest.babi.format import TRAIN_SETS
from memn2n_cli.arguments import add_cache_dir, add_corpus, task_list
from memn2n_cli.progress import Elapsed
from pipeline.configs import PipelineConfig, read_config_file


def pipeline_config(args: argparse.Namespace, beam_args: Sequence[str], **fixed) -> PipelineConfig:
    """PipelineConfig from --config FILE, then the command-line flags given, then `fixed`."""
    values = read_config_file(args.config) if args.config else {}
    flags = {
        "babi_dir": args.babi_dir,
        "experiment": "lm" if args.corpus else None,
        "corpus": args.corpus,
        "corpus_dir": args.corpus_dir,
        "cache_dir": getattr(args, "cache_dir", None),
        "data_url": getattr(args, "data_url", None),
        "train_set": args.train_set,
        "tasks": tuple(args.tasks) if args.tasks else None,
        "epochs": args.epochs,
        "pipeline_root": args.pipeline_root,
        "serving_dir": getattr(args, "serving_dir", None),
        "beam_args": tuple(beam_args) if beam_args else None,
    }
    values.update({name: value for name, value in flags.items() if value is not None})
    values.update(fixed)
    return PipelineConfig(**values)


def pipeline_run(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    config = pipeline_config(args, beam_args)
    if not config.data_dir:
        with Elapsed(f"fetching the {config.experiment} data into {config.cache_dir}"):
            config = config.with_data()
    from model.trainer_base import PROGRESS_ENV
    from pipeline.local_runner import run
    from pipeline.report import format_report, plot_report, report_json, run_report

    if args.json:  # for the Trainers, which run in this process
        os.environ[PROGRESS_ENV] = "json"
    try:
        with Elapsed(f"pipeline {config.pipeline_name} (LocalDagRunner) in {config.pipeline_root}"):
            run(config)
    finally:
        os.environ.pop(PROGRESS_ENV, None)
    report = run_report(config)
    plots = plot_report(report, config, os.path.join(config.pipeline_root, "report"))
    if args.json:
        print(json.dumps({**report_json(report), "plots": plots}, indent=1))
    else:
        print(format_report(report))
        print("\n".join(f"plot: {path}" for path in plots))
    return 0 if report.pushed_to else 3


def pipeline_compile(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    config = pipeline_config(args, beam_args, check_data=False)
    from pipeline.kubeflow_v2_runner import compile_pipeline

    compile_pipeline(config, args.output, args.image)
    print(f"wrote the Kubeflow V2 pipeline spec {args.output} (image {args.image})")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    pipeline = commands.add_parser("pipeline", help="the TFX pipeline")
    pipeline_commands = pipeline.add_subparsers(dest="pipeline_command", required=True)
    local = pipeline_commands.add_parser(
        "run", help="run the pipeline with LocalDagRunner; exits 3 if nothing was pushed"
    )
    compiled = pipeline_commands.add_parser("compile", help="compile for an orchestrator")
    for command in (local, compiled):
        command.add_argument("--config", help="JSON file of PipelineConfig fields")
        command.add_argument("--babi-dir", help="folder holding en/ and en-10k/")
        add_corpus(command, required=False, help="the language-modelling pipeline instead")
        command.add_argument("--corpus-dir", help="folder holding ptb.*.txt or text8")
        command.add_argument("--train-set", choices=TRAIN_SETS)
        command.add_argument("--tasks", type=task_list, help="e.g. 1,2,5 or 1-20 (default all)")
        command.add_argument("--epochs", type=int, help="epochs of both trainers")
        command.add_argument("--pipeline-root", help="where artifacts go")
    local.add_argument("--serving-dir", help="Pusher's destination (TF Serving layout)")
    add_cache_dir(local, default=None)  # without a data folder, the official data lands here
    local.add_argument("--data-url", help="download the data from here instead (e.g. a mirror)")
    local.add_argument(
        "--json", action="store_true", help="epochs and the end report as JSON, not tables"
    )
    local.set_defaults(run=pipeline_run)
    compiled.add_argument("--engine", choices=("kubeflow-v2",), required=True)
    compiled.add_argument("--output", required=True, help="pipeline spec JSON file")
    compiled.add_argument("--image", default="memn2n:latest", help="image built from Dockerfile")
    compiled.set_defaults(run=pipeline_compile)
