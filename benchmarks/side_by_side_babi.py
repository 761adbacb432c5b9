"""Alternating runs of `memn2n bench babi` from a reference checkout (1 seed) and from this one
(S seeds in one stack) on the same settings; steady epochs (the first left out), validation
included in both; the throughput ratio pair by pair. A stand-in until `memn2n bench speed`.

python benchmarks/side_by_side_babi.py OUT.json ROUNDS REF_CHECKOUT SEEDS -- BENCH_BABI_ARGS...
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def run(checkout: str, seeds: int, bench_args: list[str], out: str) -> dict:
    """One `bench babi` run of `checkout` with this venv; its wall time and steady throughput."""
    command = [sys.executable, "-m", "memn2n_cli.main", "bench", "babi", *bench_args]
    command += ["--seeds", str(seeds), "--out", out]
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": checkout}
    subprocess.run(command, cwd=checkout, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    record = json.loads(pathlib.Path(out).read_text())
    epochs = [h["seconds"] for h in record["per_seed"][0]["history"][1:]]
    examples = seeds * record["data"]["train"]  # one unit (joint); seeds side by side or alone
    return {
        "wall_seconds": round(wall, 1),
        "steady_epoch_seconds": epochs,
        "examples_per_sec": round(examples / statistics.median(epochs), 1),
    }


def main() -> None:
    out, rounds, reference, seeds = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    bench_args = sys.argv[sys.argv.index("--") + 1 :]
    rows: dict[str, list[dict]] = {"reference": [], "this": []}
    for i in range(rounds):
        rows["reference"].append(run(reference, 1, bench_args, f"{out}.reference-{i}.tmp"))
        rows["this"].append(run(str(REPO), seeds, bench_args, f"{out}.this-{i}.tmp"))
        print(i, rows["reference"][-1], rows["this"][-1], flush=True)
    ratios = [
        this["examples_per_sec"] / ref["examples_per_sec"]
        for ref, this in zip(rows["reference"], rows["this"], strict=True)
    ]
    summary = {"bench_args": bench_args, "seeds": seeds, "rounds": rows, "ratios": ratios}
    pathlib.Path(out).write_text(json.dumps(summary, indent=1))
    for tmp in pathlib.Path(out).parent.glob(pathlib.Path(out).name + ".*.tmp"):
        tmp.unlink()


if __name__ == "__main__":
    main()
