"""The bAbI v1.2 file layout and line format, parsed strictly: every error names its file and line.

A file is a sequence of stories. Each line is `ID text`; IDs restart at 1 for a new story and
otherwise count up by one. A question line is `ID question<TAB>answer<TAB>supporting IDs`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal, cast

from ingest.files import FileFormatError

ALL_TASKS = tuple(range(1, 21))
TrainSet = Literal["en", "en-10k"]  # bAbI 1k or 10k training questions per task
TRAIN_SETS: tuple[TrainSet, ...] = ("en", "en-10k")
FileKind = Literal["train", "test"]
FILE_KINDS: tuple[FileKind, ...] = ("train", "test")

_FILE_NAME = re.compile(r"^qa(?P<task>\d+)_(?P<name>[a-z-]+)_(?P<kind>train|test)\.txt$")
_LINE = re.compile(r"^(?P<id>\d+) (?P<text>.*)$")


class BabiFormatError(FileFormatError):
    """A bAbI file or directory that does not follow the format."""


@dataclasses.dataclass(frozen=True)
class TaskFile:
    """One `qaN_name_kind.txt` file of a training set."""

    task: int
    kind: FileKind
    path: str


@dataclasses.dataclass(frozen=True)
class BabiQuestion:
    """One question with the story sentences that precede it."""

    task: int
    story_index: int  # 0-based index of the story within its file
    story_id: str  # "<file name>:<line of the story's first line>"
    story: tuple[str, ...]  # statements since the story began, in order, without IDs
    question: str
    answer: str  # as written, e.g. "north,west" in tasks 8 and 19
    supporting_facts: tuple[int, ...]  # 0-based positions in `story`


def _task_file_index(babi_dir: str, train_set: str) -> dict[tuple[int, str], TaskFile]:
    """{(task, "train"|"test"): file} for babi_dir/train_set, checking every file name."""
    if train_set not in TRAIN_SETS:
        raise ValueError(f"unknown training set {train_set!r}; expected one of {TRAIN_SETS}")
    folder = os.path.join(babi_dir, train_set)
    if not os.path.isdir(folder):
        raise BabiFormatError(folder, "no such bAbI folder (expected <babi-dir>/en or /en-10k)")
    found: dict[tuple[int, str], TaskFile] = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        match = _FILE_NAME.match(name)
        if not match or int(match["task"]) not in ALL_TASKS:
            raise BabiFormatError(path, "unknown file name (expected qaN_<name>_{train,test}.txt)")
        key = (int(match["task"]), match["kind"])
        if key in found:
            raise BabiFormatError(path, f"second {key[1]} file for task {key[0]}")
        found[key] = TaskFile(task=key[0], kind=cast(FileKind, key[1]), path=path)  # by _FILE_NAME
    return found


def _checked_tasks(tasks: Iterable[int]) -> list[int]:
    tasks = sorted(set(tasks))
    if unknown := [t for t in tasks if t not in ALL_TASKS]:
        raise ValueError(f"unknown bAbI task(s) {unknown}; tasks are 1-20")
    return tasks


def find_task_files(babi_dir: str, train_set: str, tasks: Iterable[int]) -> list[TaskFile]:
    """The train and test files of `tasks` in `babi_dir/train_set`, checking every file name."""
    tasks = _checked_tasks(tasks)
    found = _task_file_index(babi_dir, train_set)
    files = []
    for task in tasks:
        for kind in FILE_KINDS:
            if (task, kind) not in found:
                missing = os.path.join(babi_dir, train_set, f"qa{task}_*_{kind}.txt")
                raise BabiFormatError(missing, f"missing task file (task {task}, {kind})")
            files.append(found[(task, kind)])
    return files


def missing_tasks(babi_dir: str, train_set: str, tasks: Iterable[int]) -> list[int]:
    """The tasks among `tasks` that lack their train or test file (en-10k has no qa3 train)."""
    found = _task_file_index(babi_dir, train_set)
    return [t for t in _checked_tasks(tasks) if any((t, k) not in found for k in FILE_KINDS)]


def parse_task_file(task_file: TaskFile) -> list[BabiQuestion]:
    """Every question of one file; raises BabiFormatError naming the file and line."""
    with open(task_file.path, "rb") as f:
        data = f.read()
    if not data.strip():
        raise BabiFormatError(task_file.path, "empty file")
    return list(parse_lines(data.split(b"\n"), task_file.task, task_file.path))


def parse_lines(lines: Sequence[bytes], task: int, path: str) -> Iterator[BabiQuestion]:
    """Parse the raw lines of a bAbI file; `path` is only used in error messages."""
    name = os.path.basename(path)
    if lines and lines[-1] == b"":
        lines = lines[:-1]  # the newline that ends the last line
    story_index, story_id, previous_id = -1, "", 0
    statements: list[str] = []
    position_of_id: dict[int, int] = {}
    for number, raw in enumerate(lines, start=1):

        def fail(message: str, number: int = number) -> BabiFormatError:
            return BabiFormatError(path, message, line=number)

        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as e:
            raise fail(f"not UTF-8 ({e.reason} at byte {e.start})") from None
        match = _LINE.match(line)
        if not match:
            raise fail(f"expected '<numeric id> <text>', got {line[:60]!r}")
        line_id, text = int(match["id"]), match["text"]
        if line_id == 1:
            story_index += 1
            story_id = f"{name}:{number}"
            statements, position_of_id = [], {}
        elif line_id != previous_id + 1:
            if previous_id == 0:
                raise fail(f"the first story starts at id {line_id}, not 1")
            raise fail(
                f"id {line_id} follows id {previous_id} (ids count up by one, 1 starts a story)"
            )
        previous_id = line_id

        if "\t" not in text:
            if text.rstrip().endswith("?"):
                raise fail("question without an answer (expected question<TAB>answer<TAB>ids)")
            if not text.strip():
                raise fail("empty sentence")
            position_of_id[line_id] = len(statements)
            statements.append(text.strip())
            continue

        fields = text.split("\t")
        question, answer = fields[0].strip(), fields[1].strip()
        support_field = fields[2] if len(fields) > 2 else ""
        if len(fields) > 3:
            raise fail(f"question line has {len(fields)} tab-separated fields, expected 3")
        if not question:
            raise fail("question line without a question")
        if not answer:
            raise fail("question without an answer")
        supporting_facts = []
        for token in support_field.split():
            if not token.isdigit():
                raise fail(f"supporting fact id {token!r} is not a number")
            if int(token) not in position_of_id:
                raise fail(f"supporting fact id {token} points to no statement of this story")
            supporting_facts.append(position_of_id[int(token)])
        yield BabiQuestion(
            task=task,
            story_index=story_index,
            story_id=story_id,
            story=tuple(statements),
            question=question,
            answer=answer,
            supporting_facts=tuple(supporting_facts),
        )


def is_eval_story(story_index: int, eval_every: int) -> bool:
    """Whether a training story is held out for `eval`: every `eval_every`-th story of a file
    (docs/decisions/eval-split.md)."""
    return story_index % eval_every == eval_every - 1
