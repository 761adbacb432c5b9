"""`memn2n serve`: pushed models over TF Serving's gRPC and REST APIs, with its flags."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence


def serve(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    if beam_args:
        raise ValueError(f"unknown serve flag(s) {list(beam_args)}")
    from serving.model_manager import read_model_config_file, single_model_config
    from serving.rest_api import ConnectionLimits
    from serving.servable import RequestLimits
    from serving.server import ModelServer, set_tensorflow_threads

    set_tensorflow_threads(
        args.tensorflow_intra_op_parallelism, args.tensorflow_inter_op_parallelism
    )
    if bool(args.model_config_file) == bool(args.model_base_path):
        raise ValueError("give either --model_config_file or --model_base_path (with --model_name)")
    if args.model_config_file:
        models = read_model_config_file(args.model_config_file)
    else:
        models = [single_model_config(args.model_name, args.model_base_path)]
    terminal = logging.StreamHandler(sys.stderr)  # the server's own log, not the libraries'
    terminal.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    server_log = logging.getLogger("serving")
    server_log.setLevel(logging.INFO)
    server_log.addHandler(terminal)
    limits = RequestLimits(args.max_request_bytes, args.max_story_lines, args.max_line_words)
    server = ModelServer(
        models,
        port=args.port,
        rest_api_port=args.rest_api_port or None,  # 0 turns REST off, as in TF Serving
        bind_address=args.bind_address,
        poll_seconds=args.file_system_poll_wait_seconds,
        limits=limits,
        enable_batching=args.enable_batching,
        rest_api_num_threads=args.rest_api_num_threads,
        connection_limits=ConnectionLimits(
            max_connections=args.rest_api_max_connections,
            idle_seconds=args.rest_api_timeout_in_ms / 1000,
            body_seconds=args.rest_api_timeout_in_ms / 1000,
        ),
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


def flag_value(value: str) -> bool:
    """absl's boolean flag values, as tensorflow_model_server takes them."""
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {value!r} (true or false)")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "serve", help="serve pushed models over TF Serving's gRPC and REST APIs"
    )
    parser.add_argument("--port", type=int, default=8500, help="gRPC port")
    parser.add_argument("--rest_api_port", type=int, default=8501, help="REST port; 0: no REST")
    parser.add_argument("--model_name", default="default", help="with --model_base_path")
    parser.add_argument("--model_base_path", help="folder of numbered versions (Pusher's layout)")
    parser.add_argument("--model_config_file", help="ModelServerConfig text file (several models)")
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0)
    parser.add_argument("--bind_address", default="127.0.0.1", help="e.g. 0.0.0.0 for all")
    parser.add_argument(
        "--enable_batching",
        type=flag_value,
        nargs="?",
        const=True,
        default=False,
        help="merge concurrent requests (--enable_batching or --enable_batching=true)",
    )
    parser.add_argument(
        "--tensorflow_intra_op_parallelism",
        type=int,
        default=1,
        help="threads within one op (default 1; 0: TensorFlow's choice)",
    )
    parser.add_argument(
        "--tensorflow_inter_op_parallelism",
        type=int,
        default=0,
        help="ops run at once (0: TensorFlow's choice)",
    )
    parser.add_argument(
        "--rest_api_num_threads", type=int, help="threads answering REST (default: 4 per CPU)"
    )
    parser.add_argument(
        "--rest_api_timeout_in_ms",
        type=int,
        default=30000,
        help="an idle REST connection, or one sending a body, is closed after this",
    )
    parser.add_argument(
        "--rest_api_max_connections", type=int, default=1000, help="more are answered 503"
    )
    parser.add_argument("--max_request_bytes", type=int, default=1 << 22)
    parser.add_argument("--max_story_lines", type=int, default=1000, help="sentences per story")
    parser.add_argument("--max_line_words", type=int, default=200, help="words per sentence")
    parser.set_defaults(run=serve)
