"""`memn2n bench babi|longmem|lm|speed|serve`: benchmarks that write JSON results."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from ingest.babi.format import ALL_TASKS, TRAIN_SETS, find_task_files
from memn2n_cli.arguments import (
    add_checkpoint_flags,
    add_corpus,
    add_settings_overrides,
    checkpoints,
    task_list,
)
from memn2n_cli.progress import Elapsed, report_progress, write_result
from model.babi.settings import MODES
from model.settings import MODELS


def bench_babi(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    find_task_files(args.babi_dir, args.train_set, [])  # a wrong folder fails before imports

    from model.babi.benchmark import run_babi_benchmark
    from model.babi.settings import model_defaults
    from model.settings import apply_overrides

    config = apply_overrides(
        model_defaults(args.model, args.mode), args.config, {"epochs": args.epochs}, args.set
    )
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
            checkpoints(args),
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


def bench_longmem(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    babi_dir = args.babi_dir or os.path.join(args.data_root, "babi")
    ptb_dir = args.ptb_dir or os.path.join(args.data_root, "ptb")
    find_task_files(babi_dir, args.train_set, [])  # a wrong folder fails before imports

    from model.babi.longmem import VARIANTS, Growth, longmem_defaults, run_longmem_benchmark
    from model.settings import apply_overrides

    config = apply_overrides(longmem_defaults(), args.config, {"epochs": args.epochs}, args.set)
    with Elapsed("bench longmem"):
        result = run_longmem_benchmark(
            babi_dir,
            ptb_dir,
            args.train_set,
            args.tasks,
            args.memory,
            args.placements,
            args.variants or list(VARIANTS),
            args.seeds,
            config,
            args.out,
            args.resume,
            report_progress,
            Growth(args.grow_from, args.grow_every),
        )
    print(f"{'task':>4} {'N':>6} {'placement':<10} {'variant':<18} {'accuracy %':>10}")
    for unit in result["units"]:
        print(
            f"{unit['task']:>4} {unit['memory']:>6} {unit['placement']:<10} "
            f"{unit['variant']:<18} {unit['accuracy']:>10.1f}"
        )
    for placement, part in result["summary"].items():
        for variant, figures in part["variants"].items():
            tasks = ",".join(str(task) for task in figures["tasks"])
            at = ", ".join(f"N={n} {a:.1f}%" for n, a in figures["accuracy"].items())
            print(f"{placement} {variant} (qa{tasks}): {at}; falls {figures['fall']:.1f} points")
        largest = part["memories"][-1]
        chosen = part["chosen_on_validation"] or "none (no variant has every task)"
        print(f"{placement}: chosen on validation at N={largest}: {chosen}")
    print(f"wrote {args.out} and {os.path.splitext(args.out)[0]}.png")
    return 0


def bench_lm(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from ingest.lm.corpus import corpus_spans

    corpus_spans(args.corpus, args.data_dir)  # a wrong folder fails before the imports

    from model.lm.benchmark import run_lm_benchmark
    from model.lm.settings import defaults
    from model.settings import apply_overrides

    flags = {"epochs": args.epochs, "hops": args.hops, "memory_size": args.memory}
    if args.dim is not None:
        flags.update(embedding_dim=args.dim, linear_units=args.dim // 2)
    config = apply_overrides(defaults(args.corpus, args.model), args.config, flags, args.set)
    with Elapsed(f"bench lm: {config.model} on {args.corpus}"):
        result = run_lm_benchmark(
            args.corpus,
            args.data_dir,
            config,
            args.seed,
            report_progress,
            beam_args,
            args.export,
            checkpoints(args),
        )
    write_result(args.out, result)
    print(
        f"{config.model} on {args.corpus}: valid perplexity {result['valid_perplexity']:.1f}, "
        f"test perplexity {result['test_perplexity']:.1f} after {result['epochs_run']} epoch(s); "
        f"{result['train_tokens_per_sec']:.0f} training tokens/s; wrote {args.out}"
    )
    return 0


def bench_serve(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from model.benchmark import environment
    from serving.load_bench import (
        TensorFlowThreads,
        rest_against_reference,
        run_serve_benchmark,
    )

    versions = [v for v in os.listdir(args.model_base_path) if v.isdigit()]
    if not versions:
        raise ValueError(f"{args.model_base_path}: no numbered version folder to serve")
    model_dir = os.path.join(args.model_base_path, str(args.version or max(versions, key=int)))

    if args.reference:
        with Elapsed(f"bench serve: REST of {model_dir}, against {args.reference}"):
            result = rest_against_reference(
                model_dir, args.reference, args.clients, args.seconds, args.rounds
            )
        result["environment"] = environment()
        write_result(args.out, result)
        for ratio in result["ours_over_reference"]:
            print(
                f"REST, {ratio['clients']:>3} clients: p50 x{ratio['p50']:.3f}, "
                f"requests/s x{ratio['requests_per_sec']:.3f} (ours over the reference)"
            )
        return 0
    with Elapsed(f"bench serve: {model_dir}"):
        threads = TensorFlowThreads(intra_op=args.tensorflow_intra_op_parallelism)
        result = run_serve_benchmark(
            model_dir, args.clients, args.seconds, args.rounds, threads, report_progress
        )
    write_result(args.out, result)
    print(f"{'protocol':<18} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'failed':>6}")
    for number, measured in enumerate(result["rounds"], 1):
        print(f"round {number}")
        for protocol, points in measured.items():
            for point in points:
                print(
                    f"{protocol:<18} {point['clients']:>7} {point['p50_ms']:>8.2f} "
                    f"{point['p99_ms']:>8.2f} {point['requests_per_sec']:>8.1f} "
                    f"{point['failed']:>6}"
                )
    for name, value in result["targets"].items():
        if name != "batching_over_no_batching":
            print(f"{name}: {value}")
    swap = result["swap"]
    print(
        f"swap to version 2 under 8 gRPC clients: {swap['requests']} requests, "
        f"{swap['failed']} failed, versions answering {swap['versions']}; wrote {args.out}"
    )
    return 0


def bench_speed(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from ingest.lm.corpus import corpus_spans

    if not os.path.isfile(os.path.join(args.reference, "memn2n_cli", "main.py")):
        raise ValueError(f"--reference {args.reference}: not a memn2n checkout (no memn2n_cli/)")
    find_task_files(args.babi_dir, "en", [])  # wrong folders fail before any run
    corpus_spans("ptb", args.ptb_dir)

    from memn2n_cli.speed import run_speed_benchmark

    with Elapsed(f"bench speed: this checkout against {args.reference}"):
        result = run_speed_benchmark(
            args.reference,
            args.babi_dir,
            args.ptb_dir,
            args.rounds,
            args.seeds,
            args.babi_epochs,
            report_progress,
        )
    write_result(args.out, result)
    print(f"{'workload':<12} {'reference':>10} {'this':>10} {'ratio min/median/max':>24}")
    for name in ("babi_joint", "babi_task1", "lm_ptb"):
        rates, ratio = result[name]["throughput"], result[name]["ratio"]
        print(
            f"{name:<12} {rates['reference']['median']:>10.0f} {rates['this']['median']:>10.0f} "
            f"{ratio['min']:>8.2f} {ratio['median']:>7.2f} {ratio['max']:>7.2f}"
        )
    print(f"wrote {args.out}")
    return 0


def number_list(text: str) -> list[int]:
    """ "50,200" -> [50, 200]."""
    return [int(n) for n in text.split(",")]


def name_list(text: str) -> list[str]:
    """ "plain,top-k" -> ["plain", "top-k"]."""
    return [name.strip() for name in text.split(",")]


def register(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="benchmarks that write JSON results")
    benchmarks = bench.add_subparsers(dest="benchmark", required=True)
    babi = benchmarks.add_parser(
        "babi", help="train and test on bAbI; seeds chosen by validation error"
    )
    babi.add_argument("--babi-dir", required=True, help="folder holding en/ and en-10k/")
    babi.add_argument("--train-set", choices=TRAIN_SETS, default="en")
    babi.add_argument("--mode", choices=MODES, default="joint")
    babi.add_argument("--model", choices=MODELS, default="memn2n")
    babi.add_argument("--tasks", type=task_list, default=list(ALL_TASKS), help="e.g. 1,2,5 or 1-20")
    babi.add_argument("--seeds", type=int, default=1, help="models trained per unit")
    babi.add_argument("--epochs", type=int, help="epochs (after linear start for MemN2N)")
    add_settings_overrides(babi)
    babi.add_argument("--out", required=True, help="result JSON file")
    add_checkpoint_flags(babi)
    babi.set_defaults(run=bench_babi)

    longmem = benchmarks.add_parser(
        "longmem", help="accuracy against memory size: bAbI stories among PTB distractors"
    )
    longmem.add_argument(
        "--data-root", default="../shared/data", help="folder holding babi/ and ptb/"
    )
    longmem.add_argument("--babi-dir", help="folder holding en/ (default: DATA_ROOT/babi)")
    longmem.add_argument("--train-set", choices=TRAIN_SETS, default="en")
    longmem.add_argument("--ptb-dir", help="folder holding ptb.*.txt (default: DATA_ROOT/ptb)")
    longmem.add_argument("--tasks", type=task_list, default=[1, 2, 3, 4, 5], help="e.g. 1-5")
    longmem.add_argument(
        "--memory", type=number_list, default=[50, 100, 200, 500, 1000], help="sizes N, e.g. 50,200"
    )
    longmem.add_argument("--placements", type=name_list, default=["scattered", "block"])
    longmem.add_argument(
        "--variants", type=name_list, default=None, help="comma-separated (default: all of them)"
    )
    longmem.add_argument("--seeds", type=int, default=3, help="models per unit, side by side")
    longmem.add_argument("--epochs", type=int, help="training epochs per unit (default 100)")
    longmem.add_argument(
        "--grow-from",
        type=int,
        default=0,
        help="train on memories of this many slots first, doubled every --grow-every epochs "
        "up to N (default 0: all N from the first epoch)",
    )
    longmem.add_argument("--grow-every", type=int, default=5, help="epochs per memory size")
    add_settings_overrides(longmem)
    longmem.add_argument("--out", required=True, help="result JSON file (the plot beside it)")
    longmem.add_argument("--resume", action="store_true", help="keep the units OUT already has")
    longmem.set_defaults(run=bench_longmem)

    lm = benchmarks.add_parser("lm", help="language modelling: perplexity on PTB or Text8")
    add_corpus(lm, required=True, help="the corpus")
    lm.add_argument("--data-dir", required=True, help="folder holding ptb.*.txt or text8")
    lm.add_argument("--model", choices=MODELS, default="memn2n")
    lm.add_argument("--epochs", type=int, help="at most this many epochs")
    lm.add_argument("--hops", type=int)
    lm.add_argument("--memory", type=int, help="memory size N (previous words)")
    lm.add_argument("--dim", type=int, help="embedding size d (ReLU on half)")
    lm.add_argument("--seed", type=int, default=1)
    add_settings_overrides(lm)
    lm.add_argument("--out", required=True, help="result JSON file")
    lm.add_argument("--export", help="write the SavedModel here, e.g. S/ptb/1")
    add_checkpoint_flags(lm)
    lm.set_defaults(run=bench_lm)

    speed = benchmarks.add_parser(
        "speed", help="steady training throughput side by side with a reference checkout"
    )
    speed.add_argument("--reference", required=True, help="a checkout to compare against")
    speed.add_argument("--babi-dir", required=True, help="folder holding en/")
    speed.add_argument("--ptb-dir", required=True, help="folder holding ptb.*.txt")
    speed.add_argument("--rounds", type=int, default=3, help="runs of each workload by each")
    speed.add_argument("--seeds", type=int, default=5, help="bAbI models this checkout stacks")
    speed.add_argument("--babi-epochs", type=int, default=4, help="epochs per bAbI run")
    speed.add_argument("--out", required=True, help="result JSON file")
    speed.set_defaults(run=bench_speed)

    serve = benchmarks.add_parser(
        "serve", help="latency and requests/s of memn2n serve (gRPC, REST) vs in-process"
    )
    serve.add_argument("--model_base_path", required=True, help="e.g. build/serving/babi")
    serve.add_argument("--version", type=int, help="default: the latest")
    serve.add_argument(
        "--clients", type=lambda v: [int(c) for c in v.split(",")], default=[1, 8, 32]
    )
    serve.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    serve.add_argument(
        "--reference", help="a checkout of other code: compare REST only, served in turn"
    )
    serve.add_argument("--rounds", type=int, default=3, help="each on freshly started servers")
    serve.add_argument(
        "--tensorflow_intra_op_parallelism",
        type=int,
        default=1,
        help="the server's and the in-process floor's (memn2n serve's flag; 0: TF's choice)",
    )
    serve.add_argument("--out", required=True, help="result JSON file")
    serve.set_defaults(run=bench_serve)
