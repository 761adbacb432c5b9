"""The bAbI parser and file discovery: correct parses and every bad-input case."""

from __future__ import annotations

import pytest

from ingest.babi.format import (
    BabiFormatError,
    TaskFile,
    find_task_files,
    is_eval_story,
    parse_task_file,
)
from tests.conftest import TASK1, TASK8, fixture_files, write_babi


def parse_text(tmp_path, text: str, name: str = "qa1_x_train.txt"):
    path = tmp_path / name
    path.write_text(text)
    return parse_task_file(TaskFile(task=1, kind="train", path=str(path)))


def test_questions_see_only_statements_and_supporting_ids_become_positions(tmp_path):
    questions = parse_text(tmp_path, TASK1)
    assert [q.question for q in questions] == [
        "Where is Mary?",
        "Where is Daniel?",
        "Where is John?",
    ]
    second = questions[1]
    # Line ids 1, 2, 4, 5 are statements (3 is a question): id 4 is position 2.
    assert second.story == (
        "Mary moved to the bathroom.",
        "John went to the hallway.",
        "Daniel went back to the hallway.",
        "Sandra moved to the garden.",
    )
    assert second.supporting_facts == (2,)
    assert second.answer == "hallway"
    assert [q.story_index for q in questions] == [0, 0, 1]
    assert questions[2].story == ("John moved to the office.", "Mary went to the kitchen.")
    assert questions[2].story_id.endswith("qa1_x_train.txt:7")


def test_answers_are_kept_as_written(tmp_path):
    questions = parse_text(tmp_path, TASK8)
    assert questions[0].answer == "football,apple"
    assert questions[0].supporting_facts == (0, 1)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("1 Mary went home.\nMary went out.\n", 2, "expected '<numeric id> <text>'"),
        ("1 Mary went home.\nx2 Mary went out.\n", 2, "expected '<numeric id> <text>'"),
        ("1 A b.\n2 C d.\n4 E f.\n", 3, "id 4 follows id 2"),
        ("1 A b.\n2 C d.\n3 E f.\n2 G h.\n", 4, "id 2 follows id 3"),
        ("2 A b.\n", 1, "first story starts at id 2"),
        ("1 A b.\n2 Where is A?\n", 2, "question without an answer"),
        ("1 A b.\n2 Where is A?\t\t1\n", 2, "question without an answer"),
        ("1 A b.\n2 Where is A?\tb\t5\n", 2, "supporting fact id 5 points to no statement"),
        ("1 A b.\n2 Where is A?\tb\t2\n", 2, "supporting fact id 2 points to no statement"),
        ("1 A b.\n2 Where is A?\tb\tone\n", 2, "supporting fact id 'one' is not a number"),
        ("1 A b.\n\n", 2, "expected '<numeric id> <text>'"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, line, message):
    with pytest.raises(BabiFormatError, match=message) as error:
        parse_text(tmp_path, text)
    assert error.value.line == line
    assert str(error.value).startswith(f"{tmp_path / 'qa1_x_train.txt'}:{line}: ")


def test_supporting_id_from_an_earlier_story_points_nowhere(tmp_path):
    with pytest.raises(BabiFormatError, match="id 3 points to no statement") as error:
        parse_text(tmp_path, "1 A b.\n2 C d.\n3 E f.\n1 G h.\n2 Where is G?\tb\t3\n")
    assert error.value.line == 5


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "qa1_x_train.txt"
    path.write_bytes(b"1 A b.\n2 Caf\xe9 c.\n")
    with pytest.raises(BabiFormatError, match="not UTF-8") as error:
        parse_task_file(TaskFile(task=1, kind="train", path=str(path)))
    assert error.value.line == 2


def test_empty_file_is_an_error(tmp_path):
    with pytest.raises(BabiFormatError, match="empty file"):
        parse_text(tmp_path, "\n")


def test_find_task_files_selects_tasks(tmp_path):
    root = write_babi(tmp_path, fixture_files())
    files = find_task_files(str(root), "en", [8])
    assert [(f.task, f.kind) for f in files] == [(8, "train"), (8, "test")]


def test_unknown_file_name_is_an_error(tmp_path):
    root = write_babi(tmp_path, {**fixture_files(), "qa21_extra_train.txt": TASK1})
    with pytest.raises(BabiFormatError, match="qa21_extra_train.txt: unknown file name"):
        find_task_files(str(root), "en", [1])
    root = write_babi(tmp_path / "b", {**fixture_files(), "notes.txt": "x"})
    with pytest.raises(BabiFormatError, match="notes.txt: unknown file name"):
        find_task_files(str(root), "en", [1])


def test_missing_task_file_is_named(tmp_path):
    root = write_babi(tmp_path, fixture_files())
    with pytest.raises(BabiFormatError, match=r"en/qa2_\*_train.txt: missing task file"):
        find_task_files(str(root), "en", [1, 2])


def test_missing_train_set_folder_and_unknown_tasks(tmp_path):
    with pytest.raises(BabiFormatError, match="no such bAbI folder"):
        find_task_files(str(tmp_path), "en-10k", [1])
    with pytest.raises(ValueError, match=r"unknown bAbI task\(s\) \[21\]"):
        find_task_files(str(tmp_path), "en", [21])


def test_shared_en_10k_lacks_task_3_training_file(shared_babi):
    with pytest.raises(BabiFormatError, match=r"en-10k/qa3_\*_train.txt: missing task file"):
        find_task_files(str(shared_babi), "en-10k", range(1, 21))


def test_eval_holdout_is_every_tenth_story():
    assert [i for i in range(30) if is_eval_story(i, 10)] == [9, 19, 29]
