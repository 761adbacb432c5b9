"""The `memn2n` command line."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Sequence

from components.babi_format import ALL_TASKS, TRAIN_SETS, FileFormatError, find_task_files

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out


def task_list(value: str) -> list[int]:
    """argparse type for '1,2,5' or '1-20'."""
    tasks: list[int] = []
    for part in value.split(","):
        first, _, last = part.strip().partition("-")
        try:
            tasks.extend(range(int(first), int(last or first) + 1))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not a task list: {value!r} (e.g. 1,2,5 or 1-20)"
            ) from None
    if unknown := sorted(set(tasks) - set(ALL_TASKS)):
        raise argparse.ArgumentTypeError(f"unknown bAbI task(s) {unknown}; tasks are 1-20")
    return sorted(set(tasks))


class Elapsed:
    """A one-line live status ('label ... 12.3 s') on a terminal; a start and end line otherwise."""

    def __init__(self, label: str):
        self.label, self._done = label, threading.Event()

    def __enter__(self) -> Elapsed:
        self.start = time.perf_counter()
        if sys.stderr.isatty():
            threading.Thread(target=self._tick, daemon=True).start()
        else:
            print(f"{self.label} ...", file=sys.stderr, flush=True)
        return self

    def _tick(self) -> None:
        while not self._done.wait(0.25):
            print(
                f"\r{self.label} ... {time.perf_counter() - self.start:.1f} s",
                end="",
                file=sys.stderr,
            )

    def __exit__(self, exc_type, *_) -> None:
        self._done.set()
        self.seconds = time.perf_counter() - self.start
        status = "failed" if exc_type else "done"
        end = "\r" if sys.stderr.isatty() else ""
        print(
            f"{end}{self.label} ... {status} in {self.seconds:.1f} s", file=sys.stderr, flush=True
        )


def report_progress(line: str) -> None:
    """A benchmark's progress line, on stderr."""
    print(line, file=sys.stderr, flush=True)


def write_result(path: str, result: dict) -> None:
    """A benchmark's result JSON, its folder created if needed."""
    import json

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)


def format_tasks(tasks: Sequence[int]) -> str:
    """[1, 2, 4, 5, 6] -> '1-2,4-6'."""
    runs: list[list[int]] = []
    for task in sorted(tasks):
        if runs and task == runs[-1][-1] + 1:
            runs[-1].append(task)
        else:
            runs.append([task])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def print_babi_summary(summary: dict) -> None:
    """The per-task question counts as a table, with totals."""
    print(f"{'task':>5} {'train':>8} {'eval':>8} {'test':>8}")
    for task, counts in summary["per_task"].items():
        print(f"{task:>5} {counts['train']:>8} {counts['eval']:>8} {counts['test']:>8}")
    print(f"{'all':>5} {summary['train']:>8} {summary['eval']:>8} {summary['test']:>8}")
    print(f"train+eval {summary['train'] + summary['eval']}, test {summary['test']}")


def cmd_data_babi(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from components.babi_download import download_babi

    babi_dir = args.babi_dir
    if babi_dir is None:
        with Elapsed(f"downloading bAbI v1.2 into {args.cache_dir}"):
            babi_dir = download_babi(args.cache_dir)
    find_task_files(babi_dir, args.train_set, args.tasks)  # a missing file fails before Beam starts
    from components.babi_export import export_babi  # imports Beam and TensorFlow: seconds

    with Elapsed(f"Beam: {args.train_set} tasks {format_tasks(args.tasks)} -> {args.out}"):
        summary = export_babi(
            babi_dir, args.out, args.train_set, args.tasks, args.eval_every, beam_args
        )
    print_babi_summary(summary)
    print(f"wrote {args.out}/{{train,eval,test}}/*.tfrecord.gz and {args.out}/summary.json")
    return 0


def cmd_data_lm(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from components.lm_corpus import corpus_spans, download_ptb, download_text8

    data_dir = args.data_dir
    if data_dir is None:
        download = download_ptb if args.corpus == "ptb" else download_text8
        with Elapsed(f"downloading {args.corpus} into {args.cache_dir}"):
            data_dir = download(args.cache_dir)
    corpus_spans(args.corpus, data_dir)  # a missing or empty file fails before Beam starts
    from components.lm_beam import export_corpus

    with Elapsed(f"Beam: {args.corpus} -> {args.out}"):
        summary = export_corpus(args.corpus, data_dir, args.out, beam_args)
    for split in ("train", "eval", "test"):
        print(
            f"{split:>5} {summary[split]['tokens']:>12} tokens {summary[split]['blocks']:>8} blocks"
        )
    print(f"wrote {args.out}/{{train,eval,test}}/*.tfrecord.gz and {args.out}/summary.json")
    return 0


def pipeline_config(args: argparse.Namespace, beam_args: Sequence[str], **fixed):
    """PipelineConfig from --config FILE, then the command-line flags given, then `fixed`."""
    from pipeline.configs import PipelineConfig, read_config_file

    values = read_config_file(args.config) if args.config else {}
    flags = {
        "babi_dir": args.babi_dir,
        "experiment": "lm" if args.corpus else None,
        "corpus": args.corpus,
        "corpus_dir": args.corpus_dir,
        "train_set": args.train_set,
        "tasks": tuple(args.tasks) if args.tasks else None,
        "epochs": args.epochs,
        "pipeline_root": args.pipeline_root,
        "serving_dir": getattr(args, "serving_dir", None),
        "beam_args": tuple(beam_args) if beam_args else None,
    }
    values.update({name: value for name, value in flags.items() if value is not None})
    values.update(fixed)
    if values.get("experiment", "babi") == "babi" and "babi_dir" not in values:
        raise ValueError("no bAbI folder: give --babi-dir or babi_dir in --config")
    if values.get("experiment") == "lm" and "corpus_dir" not in values:
        raise ValueError("no corpus folder: give --corpus-dir or corpus_dir in --config")
    return PipelineConfig(**values)


def cmd_pipeline_run(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    config = pipeline_config(args, beam_args)
    if config.experiment == "babi":
        find_task_files(config.babi_dir, config.train_set, config.tasks)
    from pipeline.local_runner import run
    from pipeline.report import format_report, run_report

    with Elapsed(f"pipeline {config.pipeline_name} (LocalDagRunner) in {config.pipeline_root}"):
        run(config)
    report = run_report(config)
    print(format_report(report))
    return 0 if report.pushed_to else 3


def cmd_pipeline_compile(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    config = pipeline_config(args, beam_args, check_data=False)
    from pipeline.kubeflow_v2_runner import compile_pipeline

    compile_pipeline(config, args.output, args.image)
    print(f"wrote the Kubeflow V2 pipeline spec {args.output} (image {args.image})")
    return 0


def cmd_bench_babi(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    find_task_files(args.babi_dir, args.train_set, [])  # a wrong folder fails before imports

    from model.babi_benchmark import run_babi_benchmark
    from model.lstm import LSTMConfig
    from model.training import override, paper_defaults, parse_assignments, read_settings_file

    config = paper_defaults(args.mode) if args.model == "memn2n" else LSTMConfig()
    if args.config:
        config = override(config, read_settings_file(args.config), args.config)
    if args.epochs is not None:
        config = override(config, {"epochs": args.epochs}, "--epochs")
    config = override(config, parse_assignments(config, args.set), "--set")

    with Elapsed(f"bench babi: {args.model} {args.mode} on {args.train_set}"):
        result = run_babi_benchmark(
            args.babi_dir,
            args.train_set,
            args.mode,
            args.model,
            args.tasks,
            args.seeds,
            config,
            report_progress,
            beam_args,
        )
    write_result(args.out, result)
    print(f"{'task':>5} {'error %':>8}")
    for task, error in result["per_task_error"].items():
        print(f"{task:>5} {error:>8.1f}")
    for task in result["missing_tasks"]:
        print(f"{task:>5} {'missing':>8}")
    print(
        f"mean error {result['mean_error']:.1f}%, failed tasks (> 5%): "
        f"{len(result['failed_tasks'])} {result['failed_tasks']}; "
        f"{result['train_examples_per_sec']:.0f} training examples/s; wrote {args.out}"
    )
    return 0


def cmd_bench_lm(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from components.lm_corpus import corpus_spans

    corpus_spans(args.corpus, args.data_dir)  # a wrong folder fails before the imports

    from model.lm_benchmark import lm_defaults, run_lm_benchmark
    from model.training import override, parse_assignments, read_settings_file

    config = lm_defaults(args.corpus, args.model)
    if args.config:
        config = override(config, read_settings_file(args.config), args.config)
    flags = {"epochs": args.epochs, "hops": args.hops, "memory_size": args.memory}
    if args.dim is not None:
        flags.update(embedding_dim=args.dim, linear_units=args.dim // 2)
    config = override(config, {k: v for k, v in flags.items() if v is not None}, "flags")
    config = override(config, parse_assignments(config, args.set), "--set")

    with Elapsed(f"bench lm: {config.model} on {args.corpus}"):
        result = run_lm_benchmark(
            args.corpus, args.data_dir, config, args.seed, report_progress, beam_args, args.export
        )
    write_result(args.out, result)
    print(
        f"{config.model} on {args.corpus}: valid perplexity {result['valid_perplexity']:.1f}, "
        f"test perplexity {result['test_perplexity']:.1f} after {result['epochs_run']} epoch(s); "
        f"{result['tokens_per_sec']:.0f} training tokens/s; wrote {args.out}"
    )
    return 0


def cmd_serve(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    if beam_args:
        raise ValueError(f"unknown serve flag(s) {list(beam_args)}")
    import logging
    import signal

    from serving.model_manager import read_model_config_file, single_model_config
    from serving.servable import RequestLimits
    from serving.server import ModelServer

    if bool(args.model_config_file) == bool(args.model_base_path):
        raise ValueError("give either --model_config_file or --model_base_path (with --model_name)")
    if args.model_config_file:
        models = read_model_config_file(args.model_config_file)
    else:
        models = [single_model_config(args.model_name, args.model_base_path)]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    limits = RequestLimits(args.max_request_bytes, args.max_story_lines, args.max_line_words)
    server = ModelServer(
        models,
        port=args.port,
        rest_api_port=args.rest_api_port or None,  # 0 turns REST off, as in TF Serving
        bind_address=args.bind_address,
        poll_seconds=args.file_system_poll_wait_seconds,
        limits=limits,
        enable_batching=args.enable_batching,
    ).start()
    rest = f", REST on {args.bind_address}:{server.rest_api_port}" if server.rest_api_port else ""
    for model in models:
        versions = sorted(server.manager.models[model.name].loaded)
        print(f"model {model.name}: {model.base_path}, versions loaded: {versions or 'none yet'}")
    print(f"serving gRPC on {args.bind_address}:{server.port}{rest}; Ctrl-C stops", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


def cmd_query(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    import json

    from serving.client import QueryError, attention_table, next_words_table

    if args.prefix is None and (args.story is None or args.question is None):
        raise ValueError("give --story and --question (bAbI), or --prefix (a language model)")
    story = ""
    if args.prefix is not None:
        inputs = {"prefix": [args.prefix]}
    else:
        story = sys.stdin.read() if args.story == "-" else open(args.story).read()
        inputs = {"story": [story], "question": [args.question]}
    try:
        if args.rest:
            from serving.client import rest_predict

            server = args.server or "localhost:8501"
            outputs = rest_predict(server, args.model, inputs, args.version)
            version = args.version
        else:
            import grpc
            from tensorflow_serving.apis import prediction_service_pb2_grpc

            from model.export import text_request
            from serving.client import grpc_predict

            request = text_request(args.model, inputs, args.version)
            server = args.server or "localhost:8500"
            with grpc.insecure_channel(server) as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                version, arrays = grpc_predict(stub, request)
            outputs = {k: v.tolist() for k, v in arrays.items()}
    except QueryError as e:
        print(f"memn2n query: {server} refused the request: {e}", file=sys.stderr)
        return 1
    if args.prefix is not None:
        if args.json:
            print(json.dumps({"version": version, **json_safe(outputs)}))
        else:
            print(next_words_table(outputs))
        return 0
    answer = outputs["answer"][0]
    answer = answer.decode() if isinstance(answer, bytes) else answer
    result = {
        "answer": answer,
        "probability": float(outputs["probability"][0]),
        "version": version,
        "attention": outputs.get("attention", [None])[0],  # [hops, memory]
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"answer: {answer}  (p = {result['probability']:.4f})")
    if result["attention"]:
        print(attention_table(story, result["attention"]))
    return 0


def json_safe(value):
    """Lists of bytes (gRPC string tensors) as lists of str, for json.dumps."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value.decode() if isinstance(value, bytes) else value


def cmd_bench_serve(args: argparse.Namespace, beam_args: Sequence[str]) -> int:

    from serving.load_bench import run_serve_benchmark

    versions = [v for v in os.listdir(args.model_base_path) if v.isdigit()]
    if not versions:
        raise ValueError(f"{args.model_base_path}: no numbered version folder to serve")
    model_dir = os.path.join(args.model_base_path, str(args.version or max(versions, key=int)))

    with Elapsed(f"bench serve: {model_dir}"):
        result = run_serve_benchmark(model_dir, args.clients, args.seconds, report_progress)
    write_result(args.out, result)
    print(f"{'protocol':<14} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'failed':>6}")
    for protocol in ("in_process", "grpc", "rest", "grpc_batching"):
        for point in result[protocol]:
            print(
                f"{protocol:<14} {point['clients']:>7} {point['p50_ms']:>8.2f} "
                f"{point['p99_ms']:>8.2f} {point['requests_per_sec']:>8.1f} {point['failed']:>6}"
            )
    swap = result["swap"]
    print(
        f"swap to version 2 under 8 gRPC clients: {swap['requests']} requests, "
        f"{swap['failed']} failed, versions answering {swap['versions']}; wrote {args.out}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from components.babi_download import DEFAULT_CACHE_DIR

    parser = argparse.ArgumentParser(
        prog="memn2n",
        description="End-To-End Memory Networks on TFX. Unknown --flags are passed to Beam.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="ingest datasets into TFRecords with Beam")
    datasets = data.add_subparsers(dest="dataset", required=True)
    babi = datasets.add_parser("babi", help="bAbI v1.2 -> DIR/{train,eval,test}/*.tfrecord.gz")
    babi.add_argument("--babi-dir", help="folder holding en/ and en-10k/ (default: download)")
    babi.add_argument("--out", required=True, help="output folder")
    babi.add_argument("--train-set", choices=TRAIN_SETS, default="en")
    babi.add_argument("--tasks", type=task_list, default=list(ALL_TASKS), help="e.g. 1,2,5 or 1-20")
    babi.add_argument("--eval-every", type=int, default=10, help="hold out every Nth story")
    babi.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, help="where downloads are kept")
    babi.set_defaults(run=cmd_data_babi)
    lm = datasets.add_parser("lm", help="PTB or Text8 -> DIR/{train,eval,test}/*.tfrecord.gz")
    lm.add_argument("--corpus", choices=("ptb", "text8"), required=True)
    lm.add_argument("--data-dir", help="folder holding ptb.*.txt or text8 (default: download)")
    lm.add_argument("--out", required=True, help="output folder")
    lm.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, help="where downloads are kept")
    lm.set_defaults(run=cmd_data_lm)

    pipeline = commands.add_parser("pipeline", help="the TFX pipeline")
    pipeline_commands = pipeline.add_subparsers(dest="pipeline_command", required=True)
    local = pipeline_commands.add_parser(
        "run", help="run the pipeline with LocalDagRunner; exits 3 if nothing was pushed"
    )
    compiled = pipeline_commands.add_parser("compile", help="compile for an orchestrator")
    for command in (local, compiled):
        command.add_argument("--config", help="JSON file of PipelineConfig fields")
        command.add_argument("--babi-dir", help="folder holding en/ and en-10k/")
        command.add_argument(
            "--corpus", choices=("ptb", "text8"), help="the language-modelling pipeline instead"
        )
        command.add_argument("--corpus-dir", help="folder holding ptb.*.txt or text8")
        command.add_argument("--train-set", choices=TRAIN_SETS)
        command.add_argument("--tasks", type=task_list, help="e.g. 1,2,5 or 1-20 (default all)")
        command.add_argument("--epochs", type=int, help="epochs of both trainers")
        command.add_argument("--pipeline-root", help="where artifacts go")
    local.add_argument("--serving-dir", help="Pusher's destination (TF Serving layout)")
    local.set_defaults(run=cmd_pipeline_run)
    compiled.add_argument("--engine", choices=("kubeflow-v2",), required=True)
    compiled.add_argument("--output", required=True, help="pipeline spec JSON file")
    compiled.add_argument("--image", default="memn2n:latest", help="image built from Dockerfile")
    compiled.set_defaults(run=cmd_pipeline_compile)

    bench = commands.add_parser("bench", help="benchmarks that write JSON results")
    benchmarks = bench.add_subparsers(dest="benchmark", required=True)
    bench_babi = benchmarks.add_parser(
        "babi", help="train and test on bAbI; seeds chosen by validation error"
    )
    bench_babi.add_argument("--babi-dir", required=True, help="folder holding en/ and en-10k/")
    bench_babi.add_argument("--train-set", choices=TRAIN_SETS, default="en")
    bench_babi.add_argument("--mode", choices=("joint", "single"), default="joint")
    bench_babi.add_argument("--model", choices=("memn2n", "lstm"), default="memn2n")
    bench_babi.add_argument(
        "--tasks", type=task_list, default=list(ALL_TASKS), help="e.g. 1,2,5 or 1-20"
    )
    bench_babi.add_argument("--seeds", type=int, default=1, help="models trained per unit")
    bench_babi.add_argument("--epochs", type=int, help="epochs (after linear start for MemN2N)")
    bench_babi.add_argument("--config", help="JSON file of settings overriding the defaults")
    bench_babi.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="one setting, repeatable"
    )
    bench_babi.add_argument("--out", required=True, help="result JSON file")
    bench_babi.set_defaults(run=cmd_bench_babi)
    bench_lm = benchmarks.add_parser("lm", help="language modelling: perplexity on PTB or Text8")
    bench_lm.add_argument("--corpus", choices=("ptb", "text8"), required=True)
    bench_lm.add_argument("--data-dir", required=True, help="folder holding ptb.*.txt or text8")
    bench_lm.add_argument("--model", choices=("memn2n", "lstm"), default="memn2n")
    bench_lm.add_argument("--epochs", type=int, help="at most this many epochs")
    bench_lm.add_argument("--hops", type=int)
    bench_lm.add_argument("--memory", type=int, help="memory size N (previous words)")
    bench_lm.add_argument("--dim", type=int, help="embedding size d (ReLU on half)")
    bench_lm.add_argument("--seed", type=int, default=1)
    bench_lm.add_argument("--config", help="JSON file of settings overriding the defaults")
    bench_lm.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="one setting, repeatable"
    )
    bench_lm.add_argument("--out", required=True, help="result JSON file")
    bench_lm.add_argument("--export", help="write the SavedModel here, e.g. S/ptb/1")
    bench_lm.set_defaults(run=cmd_bench_lm)
    bench_serve = benchmarks.add_parser(
        "serve", help="latency and requests/s of memn2n serve (gRPC, REST) vs in-process"
    )
    bench_serve.add_argument("--model_base_path", required=True, help="e.g. build/serving/babi")
    bench_serve.add_argument("--version", type=int, help="default: the latest")
    bench_serve.add_argument(
        "--clients", type=lambda v: [int(c) for c in v.split(",")], default=[1, 8, 32]
    )
    bench_serve.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    bench_serve.add_argument("--out", required=True, help="result JSON file")
    bench_serve.set_defaults(run=cmd_bench_serve)

    serve = commands.add_parser(
        "serve", help="serve pushed models over TF Serving's gRPC and REST APIs"
    )
    serve.add_argument("--port", type=int, default=8500, help="gRPC port")
    serve.add_argument("--rest_api_port", type=int, default=8501, help="REST port; 0: no REST")
    serve.add_argument("--model_name", default="default", help="with --model_base_path")
    serve.add_argument("--model_base_path", help="folder of numbered versions (Pusher's layout)")
    serve.add_argument("--model_config_file", help="ModelServerConfig text file (several models)")
    serve.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0)
    serve.add_argument("--bind_address", default="127.0.0.1", help="e.g. 0.0.0.0 for all")
    serve.add_argument("--enable_batching", action="store_true", help="merge concurrent requests")
    serve.add_argument("--max_request_bytes", type=int, default=1 << 22)
    serve.add_argument("--max_story_lines", type=int, default=1000, help="sentences per story")
    serve.add_argument("--max_line_words", type=int, default=200, help="words per sentence")
    serve.set_defaults(run=cmd_serve)

    query = commands.add_parser(
        "query", help="ask a served bAbI model a question, or a language model for next words"
    )
    query.add_argument("--server", help="host:port (default localhost:8500, or :8501 with --rest)")
    query.add_argument("--model", default="babi")
    query.add_argument("--version", type=int, help="default: the latest served")
    query.add_argument("--story", help="file of sentences, one per line; - stdin")
    query.add_argument("--question")
    query.add_argument("--prefix", help="text whose next words a language model predicts")
    query.add_argument("--json", action="store_true", help="one JSON object")
    query.add_argument("--rest", action="store_true", help="use the REST API")
    query.set_defaults(run=cmd_query)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, beam_args = build_parser().parse_known_args(argv)
    if unexpected := [a for a in beam_args if not a.startswith("--")]:
        print(f"memn2n: unexpected argument(s) {unexpected}", file=sys.stderr)
        return 2
    try:
        return args.run(args, beam_args)
    except (FileFormatError, FileExistsError, OSError, ValueError) as e:
        print(f"memn2n: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
