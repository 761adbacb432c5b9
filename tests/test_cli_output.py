"""What a person sees from the `memn2n` script: no native library chatter unless --verbose."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

MEMN2N = os.path.join(os.path.dirname(sys.executable), "memn2n")
# absl's notice before TensorFlow's first native log line, on every machine (the oneDNN notice
# shows on Intel CPUs only: not on this AMD EPYC, 2026-12-07).
NATIVE_START_UP = "All log messages before absl::InitializeLog() is called"


@pytest.mark.e2e
def test_tensorflow_start_up_lines_go_to_a_log_file_unless_verbose(tmp_path):
    story = tmp_path / "story.txt"
    story.write_text("Mary went home.\n")
    query = ["query", "--server", "127.0.0.1:1", "--story", str(story), "--question", "Where?"]
    environment = {**os.environ, "MEMN2N_LOG_DIR": str(tmp_path / "logs")}
    quiet = subprocess.run([MEMN2N, *query], capture_output=True, text=True, env=environment)
    assert quiet.returncode == 1 and "refused the request" in quiet.stderr
    assert "I0000" not in quiet.stderr and NATIVE_START_UP not in quiet.stderr, quiet.stderr
    [log] = os.listdir(tmp_path / "logs")
    assert log in quiet.stderr and NATIVE_START_UP in (tmp_path / "logs" / log).read_text()
    verbose = subprocess.run(
        [MEMN2N, "--verbose", *query], capture_output=True, text=True, env=environment
    )
    assert verbose.returncode == 1 and NATIVE_START_UP in verbose.stderr


def test_an_epoch_is_one_rounded_line():
    from model.engine import describe_epoch

    babi = {"epoch": 3, "phase": "linear", "learning_rate": 0.004999999888241291, "seconds": 14.512}
    babi.update(examples_per_sec=6219.4, loss=251.60823, val_loss=1.40601)
    assert describe_epoch(babi) == (
        "epoch 3 (linear): loss 251.6, val_loss 1.406, lr 0.005; 14.5 s, 6,219 examples/s"
    )
    stack = {**babi, "phase": "softmax", "learning_rate": [0.01, 0.005, 0.01]}
    assert "lr 0.005 to 0.01;" in describe_epoch(stack)
    lm = {"epoch": 1, "phase": "train", "learning_rate": 0.01, "seconds": 300.24}
    lm.update(tokens_per_sec=3325.0, loss=5.5, valid_perplexity=245.8)
    assert describe_epoch(lm) == (
        "epoch 1: loss 5.5, valid_perplexity 245.8, lr 0.01; 300.2 s, 3,325 tokens/s"
    )


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_batch_bar_shows_on_a_terminal_only_and_follows_steps_per_execution():
    from model.trainer_base import BatchBar

    terminal, log = Terminal(), io.StringIO()
    for stream in (terminal, log):
        bar = BatchBar("[memn2n]", stream)
        bar.set_params({"steps": 8})
        bar.on_epoch_begin(0)
        for batch in (3, 7):  # steps_per_execution 4
            bar.on_train_batch_end(batch)
        assert bar.bar.n == 8 if stream is terminal else bar.bar is None
        bar.on_epoch_end(0)
        assert bar.bar is None
    assert "[memn2n] epoch 1:   0%|" in terminal.getvalue() and "0/8" in terminal.getvalue()
    assert log.getvalue() == ""


LIBRARY_WARNING = """
import logging, sys
from memn2n_cli.native_log import divert_native_stderr
path = divert_native_stderr("test")
logging.basicConfig(level=logging.INFO)  # as a library may: too late to take the terminal
logging.getLogger("absl").warning("Fallback to non-ZetaSQL contexts")
print("progress", file=sys.stderr)
print(path)
"""


def test_python_library_warnings_go_to_the_log_file_too(tmp_path):
    shown = subprocess.run(
        [sys.executable, "-c", LIBRARY_WARNING],
        capture_output=True,
        text=True,
        env={**os.environ, "MEMN2N_LOG_DIR": str(tmp_path), "PYTHONPATH": os.getcwd()},
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr == "progress\n"
    with open(shown.stdout.strip()) as log:
        assert "WARNING:absl:Fallback to non-ZetaSQL contexts" in log.read()


def test_pipeline_progress_prints_each_component_and_on_a_terminal_a_bar_of_those_ended(
    tmp_path,
):
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    from pipeline.configs import PipelineConfig
    from pipeline.local_runner import ComponentProgress, open_metadata_store

    config = PipelineConfig(pipeline_root=str(tmp_path))
    store = open_metadata_store(config)
    node_type = store.put_context_type(mlmd.ContextType(name="node"))
    execution_type = store.put_execution_type(mlmd.ExecutionType(name="Run"))

    def record(component: str, state: int) -> mlmd.Execution:
        [node] = store.put_contexts([mlmd.Context(type_id=node_type, name=f"p.{component}")])
        [execution] = store.put_executions([mlmd.Execution(type_id=execution_type)])
        store.put_attributions_and_associations(
            [], [mlmd.Association(context_id=node, execution_id=execution)]
        )
        return update(execution, state)

    def update(execution_id: int, state: int) -> int:
        [execution] = store.get_executions_by_id([execution_id])
        execution.last_known_state = state
        store.put_executions([execution])
        return execution_id

    terminal, log = Terminal(), io.StringIO()
    progress = [ComponentProgress(config, 3, stream=s) for s in (terminal, log)]
    for each in progress:
        each.since_ms = 0  # the executions below are recorded after it starts
    record("ExampleGen", mlmd.Execution.CACHED)
    trainer = record("Trainer", mlmd.Execution.RUNNING)
    for each in progress:
        each.poll()
    assert [each.bar.n if each.bar else None for each in progress] == [1, None]
    update(trainer, mlmd.Execution.COMPLETE)
    for each in progress:
        each.stop()  # the last poll, then the bar closes
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("  [1/3] ExampleGen cached (") and lines[1] == "  [2/3] Trainer ..."
    assert lines[2].startswith("  [2/3] Trainer complete (") and len(lines) == 3
    assert progress[0].bar.n == 2
    shown = terminal.getvalue()
    assert "  [2/3] Trainer complete (" in shown and "pipeline:  67%|" in shown and "2/3" in shown
