"""`memn2n bench speed`: this checkout against a reference checkout, each workload run by both in
turn, round after round, as `memn2n bench` subprocesses under this venv on the same settings.
Throughput is steady state (the first epoch, or the first tenth of an LM epoch, left out) with
compile time apart; this machine's matmul GFLOP/s, measured at the start and the end of the run,
makes the LM figure a fraction of what the machine can do."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

REPO = pathlib.Path(__file__).resolve().parents[1]
LM_MARK = "% of the epoch, "  # EpochProgress: "  N% of the epoch, X tokens/s", every tenth
LM_MARKS = 4  # progress lines read before the LM run is stopped: 40% of an epoch
OUTPUT_LAYER = "[128,150]x[150,10001]"  # the PTB MemN2N logits: 83% of lm_flops_per_token


@dataclasses.dataclass(frozen=True)
class Workload:
    """One `memn2n bench` command, run by each checkout; this one trains `seeds` models at once."""

    name: str
    args: list[str]
    seeds: int = 1

    @property
    def unit(self) -> str:
        return "tokens" if self.args[0] == "lm" else "examples"


def bench_command(checkout: str, args: list[str]) -> tuple[list[str], dict]:
    """The command line and environment that run `memn2n bench ARGS` from `checkout`."""
    env = {**os.environ, "PYTHONPATH": checkout, "PYTHONUNBUFFERED": "1"}
    return [sys.executable, "-m", "memn2n_cli.main", "bench", *args], env


def run_babi(checkout: str, workload: Workload, seeds: int, out: str) -> dict:
    """A whole `bench babi` run: steady examples/s over the epochs after the first (validation
    included, as each epoch's seconds hold it in both checkouts), and the first epoch's extra
    seconds as compile time."""
    command, env = bench_command(checkout, [*workload.args, "--seeds", str(seeds), "--out", out])
    start = time.perf_counter()
    done = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{checkout}: {' '.join(command)} failed:\n{done.stderr[-3000:]}")
    wall = time.perf_counter() - start
    record = json.loads(pathlib.Path(out).read_text())
    epochs = [h["seconds"] for h in record["per_seed"][0]["history"]]
    steady = statistics.median(epochs[1:])
    return {
        "wall_seconds": round(wall, 1),
        "epoch_seconds": epochs,
        "compile_seconds": round(epochs[0] - steady, 2),
        "per_sec": round(seeds * record["data"]["train"] / steady, 1),
    }


def steady_rate(rates: list[float]) -> float:
    """Tokens/s between the first progress mark and the last, from EpochProgress's rates so far
    (mark k at k tenths): k/rate_k is the time to mark k in units of a tenth's tokens."""
    last = len(rates)
    return (last - 1) / (last / rates[-1] - 1 / rates[0])


def run_lm(checkout: str, workload: Workload, out: str) -> dict:
    """The first `LM_MARKS` tenths of an LM epoch, then the run is stopped: steady tokens/s from
    the second tenth on, and the first tenth's extra seconds (XLA compile) as compile time."""
    command, env = bench_command(checkout, [*workload.args, "--out", out])
    process = subprocess.Popen(
        command, cwd=checkout, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    rates: list[float] = []
    stamps: list[float] = []
    tail: collections.deque[str] = collections.deque(maxlen=40)
    try:
        for line in process.stderr:
            tail.append(line)
            if LM_MARK in line:
                stamps.append(time.perf_counter())
                rates.append(float(line.split(LM_MARK)[1].split()[0]))
                if len(rates) == LM_MARKS:
                    break
    finally:
        process.kill()
        process.wait()
    if len(rates) < LM_MARKS:
        raise RuntimeError(f"{checkout}: {' '.join(command)} ended early:\n{''.join(tail)}")
    steady = steady_rate(rates)
    tenth = steady * (stamps[-1] - stamps[0]) / (LM_MARKS - 1)  # tokens per tenth of an epoch
    return {
        "progress_tokens_per_sec": rates,
        "compile_seconds": round(tenth / rates[0] - tenth / steady, 2),
        "per_sec": round(steady, 1),
    }


def matmul_rates() -> dict[str, float]:
    """fp32 GFLOP/s of TF matmuls, XLA-compiled as training steps are: the LM output layer's
    [128, 150] x [150, 10001], its gradient's [128, 10001] x [10001, 150], and 1024^3."""
    import tensorflow as tf

    rates = {}
    for m, k, n in ((128, 150, 10001), (128, 10001, 150), (1024, 1024, 1024)):
        a, b = tf.random.normal((m, k)), tf.random.normal((k, n))
        matmul = tf.function(tf.linalg.matmul, jit_compile=True)
        matmul(a, b).numpy()
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(20):
                c = matmul(a, b)
            c.numpy()
            best = min(best, (time.perf_counter() - start) / 20)
        rates[f"[{m},{k}]x[{k},{n}]"] = round(2 * m * k * n / best / 1e9, 1)
    return rates


def lm_flops_per_token(d: int, hops: int, memory: int, vocab: int) -> int:
    """Training FLOPs per predicted word of the MemN2N LM, 3x the forward pass (backward 2x):
    the output layer 2dV, and per hop the scores and the read (2Nd each) and H (2d^2)."""
    return 3 * (2 * d * vocab + hops * (4 * memory * d + 2 * d * d))


def ptb_vocabulary_size(data_dir: str) -> int:
    """Ids the LM output layer scores on PTB: `<pad>`, `<unk>` and the training words."""
    from ingest.lm.corpus import corpus_spans, read_blocks
    from model.lm.inputs import LMVocabulary

    train = next(s for s in corpus_spans("ptb", data_dir) if s.split == "train")
    return len(LMVocabulary.from_tokens([t for b in read_blocks(train) for t in b.tokens]))


def spread(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def workloads(babi_dir: str, ptb_dir: str, seeds: int, babi_epochs: int) -> list[Workload]:
    """bAbI 1k joint and task 1 alone (paper settings, linear start off so that every epoch
    trains alike), then MemN2N on PTB (d=150, 6 hops, memory 100); folders made absolute, as
    each run starts in its own checkout."""
    babi_dir, ptb_dir = os.path.abspath(babi_dir), os.path.abspath(ptb_dir)
    babi = ["babi", "--babi-dir", babi_dir, "--train-set", "en"]
    babi += ["--set", f"epochs={babi_epochs}", "--set", "linear_start=false"]
    return [
        Workload("babi_joint", [*babi, "--mode", "joint"], seeds),
        Workload("babi_task1", [*babi, "--mode", "single", "--tasks", "1"], seeds),
        Workload("lm_ptb", ["lm", "--corpus", "ptb", "--data-dir", ptb_dir, "--epochs", "1"]),
    ]


def side_by_side(
    workload: Workload, reference: str, rounds: int, scratch: str, report: Callable[[str], None]
) -> dict:
    """`rounds` runs of `workload` by the reference (one seed) and by this checkout in turn; the
    throughput of each side and their ratio, round by round."""
    rows: dict[str, list[dict]] = {"reference": [], "this": []}
    for i in range(rounds):
        for side, checkout in (("reference", reference), ("this", str(REPO))):
            out = os.path.join(scratch, f"{workload.name}-{side}-{i}.json")
            if workload.unit == "tokens":
                row = run_lm(checkout, workload, out)
            else:
                row = run_babi(checkout, workload, workload.seeds if side == "this" else 1, out)
            rows[side].append(row)
            report(f"{workload.name} round {i + 1} {side}: {row['per_sec']} {workload.unit}/s")
    pairs = zip(rows["reference"], rows["this"], strict=True)
    return {
        "command": ["memn2n", "bench", *workload.args],
        "seeds": {"reference": 1, "this": workload.seeds},
        "unit": f"{workload.unit}/s, summed over the models trained at once",
        **rows,
        "ratio": spread([this["per_sec"] / ref["per_sec"] for ref, this in pairs]),
        "throughput": {side: spread([r["per_sec"] for r in rows[side]]) for side in rows},
    }


def run_speed_benchmark(
    reference: str,
    babi_dir: str,
    ptb_dir: str,
    rounds: int,
    seeds: int,
    babi_epochs: int,
    report: Callable[[str], None],
) -> dict:
    """Every workload side by side with the reference; the LM's throughput also as a fraction of
    the roof that the slower of the two output-layer matmul measurements sets."""
    from model.benchmark import environment
    from model.lm.settings import defaults

    matmul_start = matmul_rates()
    with tempfile.TemporaryDirectory() as scratch:
        results = {
            workload.name: side_by_side(workload, reference, rounds, scratch, report)
            for workload in workloads(babi_dir, ptb_dir, seeds, babi_epochs)
        }
    matmul_end = matmul_rates()
    lm_config = defaults("ptb")
    flops = lm_flops_per_token(
        lm_config.embedding_dim, lm_config.hops, lm_config.memory_size, ptb_vocabulary_size(ptb_dir)
    )
    roof = 1e9 * min(rates[OUTPUT_LAYER] for rates in (matmul_start, matmul_end)) / flops
    lm = results["lm_ptb"]
    lm["flops_per_token"] = flops
    lm["roof_tokens_per_sec"] = round(roof, 1)
    lm["fraction_of_roof"] = {
        side: round(rate["median"] / roof, 3) for side, rate in lm["throughput"].items()
    }
    return {
        "benchmark": "speed",
        "reference": checkout_commit(reference),
        "this": checkout_commit(str(REPO)),
        "rounds": rounds,
        "matmul_gflops": {"start": matmul_start, "end": matmul_end},
        **results,
        "environment": environment(),
    }


def checkout_commit(checkout: str) -> str:
    """The commit a checkout holds, with '+changes' when its tracked files differ from it."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=checkout).returncode
    return head + ("+changes" if dirty else "")
