"""The long-memory benchmark: bAbI stories among PTB distractors (model.babi.haystack) and
`memn2n bench longmem` (model.babi.longmem)."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from memn2n_cli.main import main
from model.babi.haystack import CHUNK_WORDS, entity_words, haystack_splits, read_questions
from model.babi.longmem import (
    Growth,
    HaystackBatches,
    complete_tasks,
    summarize,
    training_draws,
)
from tests.conftest import fixture_files, write_babi

PTB_LINES = [  # 14 words: two chunks; one line names a task entity, one a place
    "the company said its shares rose in heavy trading as investors bought the stock",
    "mary said the board met",
    "analysts expect the bathroom market to grow",
    "prices fell sharply last week",
    "the federal reserve held rates steady",
]


def write_data(root: pathlib.Path) -> tuple[str, str]:
    """A bAbI folder (tasks 1 and 8) and a PTB folder whose three splits hold PTB_LINES."""
    babi = write_babi(root / "babi", fixture_files(stories_per_file=10))
    ptb = root / "ptb"
    ptb.mkdir()
    for name in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"):
        (ptb / name).write_text("".join(f" {line} \n" for line in PTB_LINES))
    return str(babi), str(ptb)


def words_of(table_row: np.ndarray, vocabulary: list[str]) -> list[str]:
    return [vocabulary[i] for i in table_row if i]


def test_distractors_hold_no_entity_and_at_most_twelve_words(tmp_path):
    babi, ptb = write_data(tmp_path)
    blocked = entity_words(q for split in read_questions(babi, "en", [1]).values() for q in split)
    assert {"mary", "john", "daniel", "sandra", "bathroom", "hallway", "garden"} <= blocked
    assert not {"where", "is", "moved", "the"} & blocked  # written in lower case too, or verbs
    splits, vocabulary = haystack_splits(babi, ptb, [1])
    test = splits["test"]
    chunks = [words_of(row, vocabulary) for row in test.table[test.first_chunk :]]
    assert chunks == [PTB_LINES[0].split()[:CHUNK_WORDS], PTB_LINES[0].split()[CHUNK_WORDS:]] + [
        line.split() for line in PTB_LINES[3:]
    ]


@pytest.mark.parametrize("placement", ["scattered", "block"])
def test_every_memory_is_full_with_the_story_in_order_and_its_supporting_facts_marked(
    tmp_path, placement
):
    babi, ptb = write_data(tmp_path)
    splits, vocabulary = haystack_splits(babi, ptb, [1])
    test = splits["test"]
    haystack = test.haystack(20, placement)
    assert haystack.slots.shape == (3, 20) and np.all(haystack.slots > 0)
    for i, question in enumerate(test.questions):
        fact_slots = [s for s in range(20) if haystack.slots[i, s] < test.first_chunk]
        kept = question.story[-50:]
        recent_first = [
            " ".join(words_of(test.table[haystack.slots[i, s]], vocabulary)) for s in fact_slots
        ]
        assert recent_first == [f"{s[:-1].lower()} ." for s in reversed(kept)]  # order kept
        [support] = np.flatnonzero(haystack.supporting[i])
        assert haystack.slots[i, support] == test.fact_rows[i][question.supporting_facts[0]]
        if placement == "block":  # question 0 at depth 0: the oldest slots; 1 at depth 25%
            depth = [0.0, 0.25, 0.5][i]
            assert haystack.depth[i] == depth
            oldest = 20 - 1 - max(fact_slots)
            assert oldest == round(depth * (20 - len(kept)))
            assert fact_slots == list(range(min(fact_slots), max(fact_slots) + 1))


def test_draws_are_fixed_for_test_and_fresh_each_training_epoch(tmp_path):
    babi, ptb = write_data(tmp_path)
    splits, _ = haystack_splits(babi, ptb, [1])
    test, train = splits["test"], splits["train"]
    assert (
        test.haystack(20, "scattered", epoch=3).digest() == test.haystack(20, "scattered").digest()
    )
    first, again = train.haystack(20, "scattered", 1), train.haystack(20, "scattered", 1)
    np.testing.assert_array_equal(first.slots, again.slots)
    assert not np.array_equal(first.slots, train.haystack(20, "scattered", 2).slots)
    assert test.haystack(20, "scattered").digest() != test.haystack(30, "scattered").digest()
    first = train.haystack(20, "scattered")
    batches = HaystackBatches(lambda epoch: train.haystack(20, "scattered", epoch), first, [1], 8)
    epoch0 = batches[0][0]
    batches.epoch = 1
    epoch1 = batches[0][0]
    assert not np.array_equal(
        epoch1["sentences"][0][epoch1["slots"][:, 0]], epoch0["sentences"][0][epoch0["slots"][:, 0]]
    )


def test_a_growing_memory_fills_its_most_recent_slots_and_doubles_up_to_n():
    growth = Growth(start=5, every=2)
    assert [growth.size(epoch, 30) for epoch in range(9)] == [5, 5, 10, 10, 20, 20, 30, 30, 30]
    assert [Growth().size(epoch, 30) for epoch in (0, 7)] == [30, 30]
    with pytest.raises(ValueError, match="every 0"):
        Growth(start=5, every=0)


def test_a_smaller_haystack_within_a_larger_memory_leaves_the_oldest_slots_empty(tmp_path):
    babi, ptb = write_data(tmp_path)
    splits, _ = haystack_splits(babi, ptb, [1])
    small = splits["train"].haystack(12, "scattered")
    inside = small.within(20)
    assert inside.slots.shape == inside.supporting.shape == (small.slots.shape[0], 20)
    np.testing.assert_array_equal(inside.slots[:, :12], small.slots)
    np.testing.assert_array_equal(inside.supporting[:, :12], small.supporting)
    assert not inside.slots[:, 12:].any() and not inside.supporting[:, 12:].any()
    with pytest.raises(ValueError, match="train: a memory of 2 slots cannot hold the 4 facts"):
        splits["train"].haystack(2, "scattered")
    draw = training_draws(splits["train"], 20, "scattered", Growth(start=5, every=2))
    in_use = [(draw(epoch).slots > 0).sum(axis=1) for epoch in (0, 1, 2, 4)]
    assert [set(counts) for counts in in_use] == [{5}, {5}, {10}, {20}]
    assert draw(0).slots.shape[1] == 20


def test_a_missing_ptb_file_is_named(tmp_path):
    babi, ptb = write_data(tmp_path)
    (pathlib.Path(ptb) / "ptb.valid.txt").unlink()
    with pytest.raises(FileNotFoundError, match="ptb.valid.txt"):
        haystack_splits(babi, ptb, [1])


@pytest.mark.e2e
def test_bench_longmem_writes_the_curve_and_its_plot_and_resumes(tmp_path, capsys):
    babi, ptb = write_data(tmp_path)
    out = tmp_path / "longmem.json"
    args = ["bench", "longmem", "--babi-dir", babi, "--ptb-dir", ptb, "--tasks", "1"]
    args += ["--memory", "20", "--epochs", "1", "--seeds", "2", "--out", str(out)]
    assert main([*args, "--variants", "plain"]) == 0
    record = json.loads(out.read_text())
    assert [(u["placement"], u["variant"]) for u in record["units"]] == [
        ("scattered", "plain"),
        ("block", "plain"),
    ]
    unit = record["units"][1]
    assert [run["seed"] for run in unit["per_seed"]] == [1, 2] and unit["selected_seed"] in (1, 2)
    assert len(unit["attention_on_support"]) == 3 and set(unit["accuracy_by_depth"]) == {
        "0",
        "0.25",
        "0.5",
    }
    assert record["config"]["random_noise"] == 0.0 and len(unit["test_sha256"]) == 64
    assert record["train_set"] == "en" and record["growth"] == {"start": 0, "every": 5}
    assert (tmp_path / "longmem.png").read_bytes()[:4] == b"\x89PNG"
    main([*args, "--variants", "plain,slot-conv", "--placements", "scattered", "--resume"])
    resumed = json.loads(out.read_text())
    assert resumed["units"][:2] == record["units"]  # kept, not rerun
    assert [u["variant"] for u in resumed["units"]] == ["plain", "plain", "slot-conv"]
    printed = capsys.readouterr().out
    assert "slot-conv" in printed
    assert resumed["summary"]["scattered"]["chosen_on_validation"] in ("plain", "slot-conv")
    assert "scattered: chosen on validation at N=20: " in printed
    assert resumed["placements"] == ["block", "scattered"]
    written_before_temporal_grid = json.loads(out.read_text())
    del written_before_temporal_grid["config"]["temporal_grid"]  # it held the default then
    out.write_text(json.dumps(written_before_temporal_grid))
    assert main([*args, "--variants", "plain", "--placements", "scattered", "--resume"]) == 0
    assert main([*args, "--variants", "plain", "--resume", "--set", "temporal_grid=log"]) == 1
    assert "other settings (temporal_grid); not resumed" in capsys.readouterr().err
    assert main([*args, "--variants", "plain", "--resume", "--set", "epochs=2"]) == 1
    assert "other settings (epochs); not resumed" in capsys.readouterr().err
    write_babi(pathlib.Path(babi), fixture_files(stories_per_file=10), "en-10k")
    assert main([*args, "--variants", "plain", "--resume", "--train-set", "en-10k"]) == 1
    assert "other settings (train_set); not resumed" in capsys.readouterr().err
    assert main([*args, "--variants", "plain", "--resume", "--grow-from", "10"]) == 1
    assert "other settings (growth); not resumed" in capsys.readouterr().err


def scattered_units(runs: list[tuple[int, int, str]]) -> list[dict]:
    """Units of the scattered placement, from (task, memory, variant)."""
    return [{"task": t, "memory": m, "placement": "scattered", "variant": v} for t, m, v in runs]


def test_the_curve_averages_only_the_tasks_run_at_every_size_for_every_variant():
    """A task part-way through (qa2 at N=50 only, or for one variant) would bend the curve."""
    units = scattered_units(
        [
            (1, 50, "plain"),
            (1, 1000, "plain"),
            (1, 50, "top-k"),
            (1, 1000, "top-k"),
            (2, 50, "plain"),
            (2, 50, "top-k"),
            (2, 1000, "plain"),
            (3, 50, "plain"),
            (3, 1000, "plain"),
            (3, 50, "top-k"),
            (3, 1000, "top-k"),
        ]
    )
    units.append({"task": 2, "memory": 50, "placement": "block", "variant": "plain"})
    record = {"tasks": [1, 2, 3], "units": units}
    assert complete_tasks(record, "scattered") == [1, 3]
    assert complete_tasks(record, "block") == [2]


def test_a_curve_keeps_a_task_whose_variants_reach_different_sizes():
    """qa1 with one variant at N = 2000 and 5000 and the other at 2000 only is still drawn; qa2,
    which lacks the first variant's 5000, is not."""
    units = scattered_units(
        [
            (1, 2000, "log-temporal"),
            (1, 5000, "log-temporal"),
            (1, 2000, "plain"),
            (2, 2000, "log-temporal"),
            (2, 2000, "plain"),
        ]
    )
    assert complete_tasks({"tasks": [1, 2], "units": units}, "scattered") == [1]


def test_the_summary_chooses_on_validation_among_the_variants_run_on_every_task():
    """Means over the tasks a variant has at every N; top-k, on qa1 only, is not chosen though
    its validation error is the lowest; plain and conv tie on error, and conv's loss is lower."""

    def unit(task, memory, variant, accuracy, val_error, val_loss):
        run = {"seed": 2, "val_error": val_error, "val_loss": val_loss, "accuracy": accuracy}
        return {
            **{"task": task, "memory": memory, "placement": "scattered", "variant": variant},
            **{"accuracy": accuracy, "selected_seed": 2, "per_seed": [{"seed": 1}, run]},
        }

    units = [
        unit(1, 50, "plain", 100.0, 0.0, 0.1),
        unit(2, 50, "plain", 80.0, 20.0, 0.5),
        unit(1, 1000, "plain", 90.0, 10.0, 0.3),
        unit(2, 1000, "plain", 60.0, 30.0, 0.9),
        unit(1, 50, "conv", 100.0, 0.0, 0.1),
        unit(2, 50, "conv", 90.0, 10.0, 0.3),
        unit(1, 1000, "conv", 95.0, 5.0, 0.2),
        unit(2, 1000, "conv", 50.0, 35.0, 0.8),
        unit(1, 50, "top-k", 100.0, 0.0, 0.0),
        unit(1, 1000, "top-k", 99.0, 1.0, 0.0),
        unit(2, 50, "top-k", 99.0, 1.0, 0.0),  # qa2 at N = 1000 not run
    ]
    [(placement, summary)] = summarize({"units": units}).items()
    assert placement == "scattered" and summary["memories"] == [50, 1000]
    plain, conv, top_k = (summary["variants"][v] for v in ("plain", "conv", "top-k"))
    assert plain == {
        "tasks": [1, 2],
        "accuracy": {"50": 90.0, "1000": 75.0},
        "val_error": {"50": 10.0, "1000": 20.0},
        "val_loss": {"50": 0.3, "1000": 0.6},
        "fall": 15.0,
    }
    assert conv["fall"] == 22.5 and conv["val_error"]["1000"] == 20.0
    assert top_k["tasks"] == [1] and top_k["fall"] == 1.0
    assert summary["chosen_on_validation"] == "conv"
