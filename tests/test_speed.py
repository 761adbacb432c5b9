"""`memn2n bench speed`: steady rates read back from real `memn2n bench` runs of this checkout."""

from __future__ import annotations

import json
import pathlib
import statistics

import pytest

from memn2n_cli.main import main
from memn2n_cli.speed import (
    LM_MARK,
    LM_MARKS,
    REPO,
    Workload,
    lm_flops_per_token,
    ptb_vocabulary_size,
    run_babi,
    run_lm,
    steady_rate,
    workloads,
)
from model.lm.training import EpochProgress


def test_steady_rate_leaves_the_compile_of_the_first_tenth_out():
    """EpochProgress's rates so far, with 7 s of compile before a steady 2,000 tokens/s."""
    tenth, compile_seconds, steady = 5_000.0, 7.0, 2_000.0
    rates = [k * tenth / (compile_seconds + k * tenth / steady) for k in range(1, LM_MARKS + 1)]
    assert steady_rate(rates) == pytest.approx(steady)
    assert rates[-1] < 0.8 * steady  # what the last line alone would have said


def test_the_parser_reads_epoch_progress_lines():
    lines: list[str] = []
    progress = EpochProgress(batches=20, tokens_per_batch=128.0, report=lines.append)
    progress.on_epoch_begin(0)
    for batch in range(20):
        progress.on_train_batch_end(batch)
    assert len(lines) == 9 and all(LM_MARK in line for line in lines)
    assert float(lines[0].split(LM_MARK)[1].split()[0]) > 0


def test_lm_flops_count_the_output_layer_and_each_hop():
    assert lm_flops_per_token(150, 6, 100, 10_001) == 3 * (2 * 150 * 10_001 + 6 * 105_000)


def ptb_folder(folder: pathlib.Path) -> pathlib.Path:
    """A PTB folder of 2,400 training tokens: 5 words and <eos>; with <pad> and <unk>, 8 ids."""
    folder.mkdir()
    (folder / "ptb.train.txt").write_text(" the cat sat on mats \n" * 400)
    (folder / "ptb.valid.txt").write_text(" the mats sat \n")
    (folder / "ptb.test.txt").write_text(" the cat sat \n")
    return folder


def test_an_lm_run_is_stopped_after_its_progress_marks(tmp_path):
    data = ptb_folder(tmp_path / "ptb")
    assert ptb_vocabulary_size(str(data)) == 8
    args = ["lm", "--corpus", "ptb", "--data-dir", str(data), "--epochs", "50"]
    workload = Workload("lm", [*args, "--dim", "8", "--set", "batch_size=16"])
    row = run_lm(str(REPO), workload, str(tmp_path / "lm.json"))
    assert len(row["progress_tokens_per_sec"]) == LM_MARKS and row["per_sec"] > 0
    assert not (tmp_path / "lm.json").exists()  # stopped inside its first epoch


def test_a_babi_run_reports_steady_examples_per_second_summed_over_seeds(babi_dir, tmp_path):
    args = ["babi", "--babi-dir", str(babi_dir), "--mode", "joint", "--tasks", "1"]
    args += ["--set", "epochs=3", "--set", "linear_start=false", "--set", "embedding_dim=8"]
    row = run_babi(str(REPO), Workload("babi", args), 2, str(tmp_path / "babi.json"))
    record = json.loads((tmp_path / "babi.json").read_text())
    epochs = row["epoch_seconds"]
    assert len(epochs) == 3 and len(record["per_seed"]) == 2
    steady = statistics.median(epochs[1:])
    want = 2 * record["data"]["train"] / steady  # per_sec is rounded to 0.1
    assert row["per_sec"] == pytest.approx(want, rel=1e-3, abs=0.05)
    assert row["compile_seconds"] == pytest.approx(epochs[0] - steady, abs=0.01)


def test_workloads_name_data_folders_that_every_checkout_finds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for workload in workloads("data/babi", "data/ptb", seeds=5, babi_epochs=4):
        args = workload.args
        folders = [args[i + 1] for i, a in enumerate(args) if a in ("--babi-dir", "--data-dir")]
        assert folders and all(pathlib.Path(f).is_absolute() for f in folders), args


def test_bad_folders_fail_before_any_run(babi_dir, tmp_path, capsys):
    ptb = ptb_folder(tmp_path / "ptb")
    args = ["bench", "speed", "--babi-dir", str(babi_dir), "--out", str(tmp_path / "x.json")]
    assert main([*args, "--ptb-dir", str(ptb), "--reference", str(tmp_path)]) == 1
    assert "not a memn2n checkout" in capsys.readouterr().err
    assert main([*args, "--ptb-dir", str(tmp_path / "none"), "--reference", str(REPO)]) == 1
    assert "none: not a folder" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
