"""`memn2n bench serve`: latency and throughput of the model server over gRPC and REST beside an
in-process call of the same SavedModel, with and without batching, and failures across a swap.

The server runs as its own `memn2n serve` process; the clients are threads of this process, each
with its own connection, sending one question per request in a closed loop. The in-process floor
runs in a process of its own with the server's TensorFlow threads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from serving.load_clients import MODEL, STORY, closed_loop, grpc_caller, rest_caller


def copy_version(source: str, base_path: str, version: int) -> None:
    """Write a version as Pusher does: everything else first, saved_model.pb last."""
    target = os.path.join(base_path, str(version))
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("saved_model.pb"))
    shutil.copy(os.path.join(source, "saved_model.pb"), target)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memn2n_command() -> str:
    return os.path.join(os.path.dirname(sys.executable), "memn2n")


@dataclasses.dataclass(frozen=True)
class TensorFlowThreads:
    """`memn2n serve`'s --tensorflow_intra_op_parallelism and --tensorflow_inter_op_parallelism."""

    intra_op: int = 1
    inter_op: int = 0


class ServerProcess:
    """`memn2n serve` in a child process on free loopback ports."""

    def __init__(
        self,
        base_path: str,
        batching: bool,
        source: str | None = None,
        threads: TensorFlowThreads | None = None,
    ):
        """`source`: serve with the code of another checkout (e.g. an older commit) instead; it
        gets only the flags every version had (batching off)."""
        self.port, self.rest_api_port = free_port(), free_port()
        environment = {**os.environ, "PYTHONPATH": os.path.abspath(source)} if source else None
        command = [
            *([sys.executable, "-m", "memn2n_cli.main"] if source else [memn2n_command()]),
            "serve",
            f"--port={self.port}",
            f"--rest_api_port={self.rest_api_port}",
            f"--model_name={MODEL}",
            f"--model_base_path={base_path}",
            "--file_system_poll_wait_seconds=0.5",
        ]
        if source is None:
            threads = threads or TensorFlowThreads()
            command += [
                f"--enable_batching={str(batching).lower()}",
                f"--tensorflow_intra_op_parallelism={threads.intra_op}",
                f"--tensorflow_inter_op_parallelism={threads.inter_op}",
            ]
        elif batching:
            raise ValueError("another checkout is served without batching")
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment,
            cwd=source,
        )
        output = self.process.stdout
        assert output is not None  # stdout=PIPE
        lines: list[str] = []
        while not any(line.startswith("serving gRPC on") for line in lines):
            line = output.readline()
            if not line:
                raise RuntimeError("memn2n serve exited:\n" + "".join(lines))
            lines.append(line)
        threading.Thread(target=output.read, daemon=True).start()  # drain

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def in_process_floor(
    model_dir: str, clients: list[int], seconds: float, threads: TensorFlowThreads
) -> list[dict]:
    """`in_process_caller` at each client count, in a fresh process with `threads`."""
    command = [
        sys.executable,
        "-m",
        "serving.load_clients",
        model_dir,
        ",".join(map(str, clients)),
        str(seconds),
        str(threads.intra_op),
        str(threads.inter_op),
    ]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(command, capture_output=True, text=True, cwd=root, check=False)
    if done.returncode:
        raise RuntimeError(f"the in-process floor failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def one_round(
    model_dir: str,
    base_path: str,
    clients: list[int],
    seconds: float,
    threads: TensorFlowThreads,
    report: Callable[[str], None],
) -> dict:
    """The floor, then each protocol on a fresh server with batching on (the default) and off."""
    measured = {"in_process": in_process_floor(model_dir, clients, seconds, threads)}
    report(f"in-process: {measured['in_process']}")
    for batching in (True, False):
        server = ServerProcess(base_path, batching=batching, threads=threads)
        try:
            for protocol, caller in (
                ("grpc", grpc_caller(server.port)),
                ("rest", rest_caller(server.rest_api_port)),
            ):
                name = protocol if batching else f"{protocol}_no_batching"
                measured[name] = [closed_loop(caller, c, seconds) for c in clients]
                report(f"{name}: {measured[name]}")
        finally:
            server.stop()
    return measured


def ratio(point: dict, floor: dict, key: str) -> float:
    return round(point[key] / floor[key], 3)


def serve_targets(rounds: list[dict], clients: list[int]) -> dict:
    """Each target, per round: gRPC p50 at 1 client <= 2x in-process; requests/s at the most
    clients >= 70% of in-process for gRPC and REST; batching's gain at every client count."""
    targets: dict = {}
    if 1 in clients:
        at = clients.index(1)
        over = [ratio(r["grpc"][at], r["in_process"][at], "p50_ms") for r in rounds]
        targets["grpc_p50_over_in_process_at_1_client"] = over
        targets["grpc_p50_within_2x_in_process_every_round"] = all(x <= 2 for x in over)
    most = clients.index(max(clients))
    for protocol in ("grpc", "rest"):
        share = [
            ratio(r[protocol][most], r["in_process"][most], "requests_per_sec") for r in rounds
        ]
        targets[f"{protocol}_requests_per_sec_over_in_process_at_{max(clients)}_clients"] = share
        targets[f"{protocol}_at_least_70_percent_every_round"] = all(x >= 0.7 for x in share)
    targets["batching_over_no_batching"] = {
        protocol: {
            str(count): {
                "requests_per_sec": [
                    ratio(r[protocol][i], r[f"{protocol}_no_batching"][i], "requests_per_sec")
                    for r in rounds
                ],
                "p50_ms": [
                    ratio(r[protocol][i], r[f"{protocol}_no_batching"][i], "p50_ms") for r in rounds
                ],
            }
            for i, count in enumerate(clients)
        }
        for protocol in ("grpc", "rest")
    }
    return targets


def run_serve_benchmark(
    model_dir: str,
    clients: list[int],
    seconds: float,
    rounds: int = 1,
    threads: TensorFlowThreads | None = None,
    report: Callable[[str], None] = print,
) -> dict:
    """`rounds` rounds of every protocol at every client count, then a version swap."""
    threads = threads or TensorFlowThreads()
    result: dict = {
        "model_dir": os.path.abspath(model_dir),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "seconds_per_point": seconds,
        "request": {"story_sentences": STORY.count("\n") + 1, "questions_per_request": 1},
        "tensorflow_threads": dataclasses.asdict(threads),
        "clients": clients,
        "rounds": [],
    }
    with tempfile.TemporaryDirectory() as base_path:
        copy_version(model_dir, base_path, 1)
        for number in range(1, rounds + 1):
            report(f"round {number} of {rounds}")
            result["rounds"].append(
                one_round(model_dir, base_path, clients, seconds, threads, report)
            )
        server = ServerProcess(base_path, batching=True, threads=threads)
        try:
            result["swap"] = swap_under_load(server, model_dir, base_path, seconds)
            report(f"swap: {result['swap']}")
        finally:
            server.stop()
    result["targets"] = {
        **serve_targets(result["rounds"], clients),
        "zero_failed_across_swap": result["swap"]["failed"] == 0,
    }
    return result


def rest_against_reference(
    model_dir: str, reference: str, clients: list[int], seconds: float, rounds: int
) -> dict:
    """REST of this code beside REST of `reference` (a checkout), served in turn, `rounds`
    times; the ratios are ours over theirs (p50 latency, requests/s) per round."""
    runs: dict[str, list] = {"reference": [], "ours": []}
    with tempfile.TemporaryDirectory() as base_path:
        copy_version(model_dir, base_path, 1)
        for _ in range(rounds):
            for name, source in (("reference", reference), ("ours", None)):
                server = ServerProcess(base_path, batching=False, source=source)
                try:
                    caller = rest_caller(server.rest_api_port)
                    runs[name].append([closed_loop(caller, c, seconds) for c in clients])
                finally:
                    server.stop()
    ratios = [
        {
            "clients": point["clients"],
            "p50": round(point["p50_ms"] / theirs["p50_ms"], 3),
            "requests_per_sec": round(point["requests_per_sec"] / theirs["requests_per_sec"], 3),
        }
        for ours, reference_round in zip(runs["ours"], runs["reference"], strict=True)
        for point, theirs in zip(ours, reference_round, strict=True)
    ]
    return {
        "reference": os.path.abspath(reference),
        "rounds": rounds,
        **runs,
        "ours_over_reference": ratios,
    }


def swap_under_load(server: ServerProcess, model_dir: str, base_path: str, seconds: float) -> dict:
    """8 gRPC clients keep asking while version 2 is pushed; runs until version 2 has answered
    for `seconds` / 2 (at most 120 s); counts failures and the versions that answered."""

    def push_midway(versions: set[int]) -> None:
        time.sleep(seconds / 2)
        copy_version(model_dir, base_path, 2)
        deadline = time.monotonic() + 120  # the server polls, loads, warms up, then swaps
        while 2 not in versions and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(seconds / 2)

    return {**closed_loop(grpc_caller(server.port), 8, seconds, push_midway), "pushed_version": 2}
