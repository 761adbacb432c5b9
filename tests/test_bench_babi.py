"""`memn2n bench babi` end to end on small fixtures: the result file and its selection rule."""

from __future__ import annotations

import json

import pytest

from memn2n_cli.main import main
from model.babi.benchmark import FAILED_ABOVE
from model.babi.paper import JOINT_1K_ERROR
from tests.conftest import fixture_files, write_babi


@pytest.mark.e2e
def test_single_mode_selects_each_tasks_seed_by_validation(babi_dir, tmp_path, capsys):
    out = tmp_path / "results" / "single.json"
    args = ["bench", "babi", "--babi-dir", str(babi_dir), "--mode", "single", "--tasks", "1,8"]
    args += ["--seeds", "2", "--epochs", "2", "--set", "linear_start_max_epochs=1"]
    assert main([*args, "--out", str(out)]) == 0

    result = json.loads(out.read_text())
    assert (result["mode"], result["model"], result["tasks"]) == ("single", "memn2n", [1, 8])
    assert set(result["per_task_error"]) == {"1", "8"}
    assert len(result["per_seed"]) == 4
    for unit in ("1", "8"):
        runs = [run for run in result["per_seed"] if run["unit"] == unit]
        best = min(runs, key=lambda run: (run["val_error"], run["val_loss"]))
        assert result["selection"]["selected_seed"][unit] == best["seed"]
        assert result["per_task_error"][unit] == best["test_error"][unit]
        assert all(run["epochs"] == 3 for run in runs)  # 1 linear + 2 with the softmax
    errors = result["per_task_error"]
    assert result["failed_tasks"] == [t for t in (1, 8) if errors[str(t)] > 5]
    assert result["mean_error"] == round((errors["1"] + errors["8"]) / 2, 2)
    assert (result["config"]["epochs"], result["config"]["embedding_dim"]) == (2, 20)
    assert result["data"] == {"train": 46, "eval": 4, "test": 5}
    assert result["train_examples_per_sec"] > 0

    # Every unit's stack was saved each epoch; resumed, the ended runs give the same result.
    saved = sorted(p.name for p in (out.parent / "single.json.checkpoints").iterdir())
    assert saved == ["memn2n-1.npz", "memn2n-8.npz"]
    again = tmp_path / "again.json"
    checkpoint_dir = ["--checkpoint-dir", str(out.parent / "single.json.checkpoints")]
    assert main([*args, *checkpoint_dir, "--resume", "--out", str(again)]) == 0
    resumed = json.loads(again.read_text())
    assert resumed["per_task_error"] == result["per_task_error"]
    figures = [(r["val_error"], r["val_loss"], r["history"]) for r in resumed["per_seed"]]
    assert figures == [(r["val_error"], r["val_loss"], r["history"]) for r in result["per_seed"]]
    changed = [*args[:-2], "--set", "linear_start_max_epochs=2", *checkpoint_dir, "--resume"]
    capsys.readouterr()
    assert main([*changed, "--out", str(again)]) == 1
    assert "settings field 'linear_start_max_epochs' changed: 1" in capsys.readouterr().err


@pytest.mark.e2e
def test_missing_tasks_are_reported_and_the_lstm_trains(tmp_path):
    files = fixture_files(stories_per_file=10)
    del files["qa8_lists-sets_train.txt"]  # as en-10k lacks qa3's training file
    babi_dir = write_babi(tmp_path / "babi", files, train_set="en-10k")
    out = tmp_path / "lstm.json"
    args = ["bench", "babi", "--babi-dir", str(babi_dir), "--train-set", "en-10k"]
    args += ["--model", "lstm", "--tasks", "1,8", "--epochs", "1", "--out", str(out)]
    assert main(args) == 0

    result = json.loads(out.read_text())
    assert (result["model"], result["tasks"], result["missing_tasks"]) == ("lstm", [1], [8])
    assert set(result["per_task_error"]) == {"1"}
    assert result["config"]["max_tokens"] == 0  # sized from the data per unit, not stored


def test_bad_settings_fail_before_training(babi_dir, tmp_path, capsys):
    args = ["bench", "babi", "--babi-dir", str(babi_dir), "--out", str(tmp_path / "x.json")]
    assert main([*args, "--set", "hops=many"]) == 1
    assert "hops takes a int" in capsys.readouterr().err
    settings = tmp_path / "settings.json"
    settings.write_text('{"epochz": 3}')
    assert main([*args, "--config", str(settings)]) == 1
    assert f"{settings}: unknown setting(s) ['epochz']" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_the_papers_joint_1k_errors_are_the_table_it_summarises():
    errors = list(JOINT_1K_ERROR.values())
    assert sorted(JOINT_1K_ERROR) == list(range(1, 21))
    assert round(sum(errors) / 20, 1) == 12.4  # Table 1, PE LS RN joint: 12.4 mean, 11 failed
    assert sum(error > FAILED_ABOVE for error in errors) == 11
