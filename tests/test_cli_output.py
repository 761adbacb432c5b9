"""What a person sees from the `memn2n` script: no native library chatter unless --verbose."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

MEMN2N = os.path.join(os.path.dirname(sys.executable), "memn2n")


@pytest.mark.e2e
def test_tensorflow_start_up_lines_go_to_a_log_file_unless_verbose(tmp_path):
    story = tmp_path / "story.txt"
    story.write_text("Mary went home.\n")
    query = ["query", "--server", "127.0.0.1:1", "--story", str(story), "--question", "Where?"]
    environment = {**os.environ, "MEMN2N_LOG_DIR": str(tmp_path / "logs")}
    quiet = subprocess.run([MEMN2N, *query], capture_output=True, text=True, env=environment)
    assert quiet.returncode == 1 and "refused the request" in quiet.stderr
    assert "I0000" not in quiet.stderr and "oneDNN" not in quiet.stderr, quiet.stderr
    [log] = os.listdir(tmp_path / "logs")
    assert log in quiet.stderr and "oneDNN" in (tmp_path / "logs" / log).read_text()
    verbose = subprocess.run(
        [MEMN2N, "--verbose", *query], capture_output=True, text=True, env=environment
    )
    assert verbose.returncode == 1 and "oneDNN" in verbose.stderr
