"""bAbI stories hidden among Penn Treebank sentences, so that every memory holds exactly N
sentences (as BABILong, Kuratov et al. 2024, hides bAbI facts in PG19 text): the data of
`memn2n bench longmem`.

A question keeps its story's 50 most recent facts; the other N - F slots are distractors, PTB
lines of the matching split cut into chunks of at most 12 words, none holding a word of the
tasks' entities or answers. Placement "scattered" draws the facts' slots at random (order
kept); "block" keeps the story contiguous at depth 0, 25, 50, 75 or 100% of the memory (cycling
over the questions; 0% = the oldest slots). Each question's draws come from a generator seeded
by (task, N, split, question index, epoch): fresh each training epoch, fixed for eval and test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

from ingest.babi.beam import DEFAULT_EVAL_EVERY, split_of
from ingest.babi.format import BabiQuestion, find_task_files, parse_task_file
from ingest.files import PTB_FILES, SPLITS
from model.babi.inputs import PADDING, UNKNOWN, BabiArrays, Tokens, answer_token

Placement = Literal["scattered", "block"]
PLACEMENTS: tuple[Placement, ...] = ("scattered", "block")
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)  # block placement: where the story starts, oldest = 0
STORY_FACTS = 50  # a question keeps its story's most recent 50 facts
CHUNK_WORDS = 12  # a distractor: at most this many consecutive words of one PTB line
SPLIT_CODES = {"train": 0, "eval": 1, "test": 2}


def read_questions(
    babi_dir: str, train_set: str, tasks: Sequence[int], eval_every: int = DEFAULT_EVAL_EVERY
) -> dict[str, list[BabiQuestion]]:
    """Each split's questions of `tasks`, parsed strictly, eval held out as the pipeline does."""
    splits: dict[str, list[BabiQuestion]] = {split: [] for split in SPLITS}
    for task_file in find_task_files(babi_dir, train_set, tasks):
        for question in parse_task_file(task_file):
            splits[split_of(task_file, question, eval_every)].append(question)
    return splits


def entity_words(questions: Iterable[BabiQuestion]) -> set[str]:
    """Lowercased words no distractor may hold: the answers, the names (words never written in
    lower case) and every word after "the" in the statements (places and objects)."""
    answers: set[str] = set()
    capitalized: set[str] = set()
    lower: set[str] = set()
    for question in questions:
        answers.update(answer_token(question.answer).split(","))
        for sentence in question.story:
            words = [w.strip(".?,") for w in sentence.split()]
            for word in words:
                (capitalized if word[:1].isupper() else lower).add(word.lower())
            answers.update(
                b.lower() for a, b in zip(words, words[1:], strict=False) if a.lower() == "the"
            )
    return answers | (capitalized - lower)


def distractor_chunks(ptb_file: str, blocked: set[str]) -> list[tuple[str, ...]]:
    """The file's lines cut into chunks of at most CHUNK_WORDS words, without blocked words."""
    chunks = []
    with open(ptb_file) as lines:
        for line in lines:
            words = line.split()
            for start in range(0, len(words), CHUNK_WORDS):
                chunk = tuple(words[start : start + CHUNK_WORDS])
                if not blocked.intersection(chunk):
                    chunks.append(chunk)
    if not chunks:
        raise ValueError(f"{ptb_file}: no distractor chunk is free of the tasks' words")
    return chunks


@dataclasses.dataclass(frozen=True)
class Haystack:
    """One split's questions with full memories of N sentences (slot 0 = the most recent)."""

    slots: np.ndarray  # [M, N] int32: rows of `table`
    supporting: np.ndarray  # [M, N] bool: the question's supporting facts
    depth: np.ndarray  # [M] float: the block's depth, NaN when scattered
    table: np.ndarray  # [R, J] int32 word ids, row 0 empty
    query: np.ndarray  # [M, J] int32
    answer: np.ndarray  # [M] int32
    task: np.ndarray  # [M] int32

    def arrays(self) -> BabiArrays:
        """The same questions as the model's [M, N, J] stories."""
        return BabiArrays(self.table[self.slots], self.query, self.answer, self.task)

    def within(self, memory: int) -> Haystack:
        """The same questions in a memory of `memory` >= N slots, the oldest ones left empty."""
        pad = [(0, 0), (0, memory - self.slots.shape[1])]
        return dataclasses.replace(
            self, slots=np.pad(self.slots, pad), supporting=np.pad(self.supporting, pad)
        )

    def digest(self) -> str:
        """sha256 of the token ids of every story, query and answer."""
        digest = hashlib.sha256()
        for part in (self.table[self.slots], self.query, self.answer):
            digest.update(np.ascontiguousarray(part, "int32").tobytes())
        return digest.hexdigest()


class HaystackSplit:
    """One split's questions, facts and distractors as rows of one word-id table; draws its
    haystacks for any N, placement and epoch."""

    def __init__(
        self,
        split: str,
        questions: Sequence[BabiQuestion],
        chunks: Sequence[tuple[str, ...]],
        vocabulary: Sequence[str],
        sentence_size: int,
        tokens: Tokens,
    ):
        self.split, self.questions = split, list(questions)
        ids = {word: i for i, word in enumerate(vocabulary)}
        facts = sorted({s for q in self.questions for s in q.story[-STORY_FACTS:]})
        tokens.add([*facts, *(q.question for q in self.questions)])
        rows = [(), *(tuple(tokens[f]) for f in facts), *chunks]
        self.table = np.zeros((len(rows), sentence_size), "int32")
        for row, words in enumerate(rows):
            word_ids = [ids.get(w, ids[UNKNOWN]) for w in words[:sentence_size]]
            self.table[row, : len(word_ids)] = word_ids
        fact_row = {fact: row for row, fact in enumerate(facts, start=1)}
        self.first_chunk, self.chunk_count = 1 + len(facts), len(chunks)
        self.fact_rows = [[fact_row[s] for s in q.story[-STORY_FACTS:]] for q in self.questions]
        self.query = np.zeros((len(self.questions), sentence_size), "int32")
        for row, q in enumerate(self.questions):
            word_ids = [ids.get(w, ids[UNKNOWN]) for w in tokens[q.question][:sentence_size]]
            self.query[row, : len(word_ids)] = word_ids
        answers = [ids.get(answer_token(q.answer), ids[UNKNOWN]) for q in self.questions]
        self.answer = np.array(answers, "int32")
        self.task = np.array([q.task for q in self.questions], "int32")
        self.index_in_task = np.zeros(len(self.questions), "int64")  # the generator's index
        for task in np.unique(self.task):
            self.index_in_task[self.task == task] = np.arange((self.task == task).sum())

    def haystack(self, memory: int, placement: Placement, epoch: int = 0) -> Haystack:
        """Every question's memory of `memory` slots; eval and test ignore `epoch`."""
        epoch = epoch if self.split == "train" else 0
        if memory < (most := max(map(len, self.fact_rows), default=0)):
            raise ValueError(
                f"{self.split}: a memory of {memory} slots cannot hold the {most} facts of the "
                f"longest story; give it at least {most}"
            )
        count = len(self.questions)
        slots = np.zeros((count, memory), "int32")
        supporting = np.zeros((count, memory), bool)
        depth = np.full(count, np.nan)
        for i, question in enumerate(self.questions):
            seed = [question.task, memory, SPLIT_CODES[self.split], self.index_in_task[i], epoch]
            rng = np.random.default_rng(seed)
            facts = self.fact_rows[i]
            oldest_first = self.first_chunk + rng.integers(0, self.chunk_count, memory)
            if placement == "scattered":
                where = np.sort(rng.choice(memory, len(facts), replace=False))
            else:
                depth[i] = DEPTHS[self.index_in_task[i] % len(DEPTHS)]
                start = round(depth[i] * (memory - len(facts)))
                where = np.arange(start, start + len(facts))
            oldest_first[where] = facts
            slots[i] = oldest_first[::-1]
            dropped = len(question.story) - len(facts)  # facts older than the kept 50
            kept = [where[f - dropped] for f in question.supporting_facts if f >= dropped]
            supporting[i, memory - 1 - np.array(kept, int)] = True
        return Haystack(slots, supporting, depth, self.table, self.query, self.answer, self.task)


def haystack_splits(
    babi_dir: str, ptb_dir: str, tasks: Sequence[int], train_set: str = "en"
) -> tuple[dict[str, HaystackSplit], list[str]]:
    """The three splits of `tasks` among PTB's matching splits, and the vocabulary (training
    facts, questions, answers and distractors)."""
    questions = read_questions(babi_dir, train_set, tasks)
    blocked = entity_words(q for split in questions.values() for q in split)
    chunks = {s: distractor_chunks(os.path.join(ptb_dir, PTB_FILES[s]), blocked) for s in SPLITS}
    texts = [
        text
        for split in questions.values()
        for q in split
        for text in (*q.story[-STORY_FACTS:], q.question)
    ]
    tokens = Tokens()
    tokens.add(texts)
    train = questions["train"]
    words = {answer_token(q.answer) for q in train}
    words.update(w for q in train for s in (*q.story[-STORY_FACTS:], q.question) for w in tokens[s])
    words.update(w for chunk in chunks["train"] for w in chunk)
    vocabulary = [PADDING, UNKNOWN, *sorted(words - {PADDING, UNKNOWN})]
    size = max(CHUNK_WORDS, *(len(tokens[text]) for text in texts))
    splits = {
        split: HaystackSplit(split, questions[split], chunks[split], vocabulary, size, tokens)
        for split in SPLITS
    }
    return splits, vocabulary
