"""bAbI training batches for a stack of seeds: each seed's questions, with the distinct
sentences of its batch as one table, so that every sentence is embedded once per step.

bAbI 1k joint has 3,026 distinct sentences in 158,904 story slots; a batch of 32 questions
fills 18% of its 1,600 slots (docs/decisions/stacked-seeds.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model.babi.inputs import BabiArrays
from model.stacking import SeedBatches

TABLE_ROWS_STEP = 64  # tables padded to a multiple of this: few shapes, so few XLA compiles


def table_rows(rows: int) -> int:
    """`rows` rounded up to a multiple of TABLE_ROWS_STEP, or of 1/16 of its power of two when
    larger (long memories: at most 16 table shapes, so compiles, per doubling of the rows)."""
    step = max(TABLE_ROWS_STEP, 1 << max(rows.bit_length() - 5, 0))
    return -(-rows // step) * step


class SentenceBatches(SeedBatches):
    """({"sentences": [S, U, J], "slots": [B, S, N], "query": [B, S, J]}, {output: [B, S]}):
    seed s's batch reads its stories' sentences as rows of its own table (row 0 empty)."""

    varying = {"sentences": (1,)}  # U: the most distinct sentences of a seed's batch

    def __init__(self, data: BabiArrays, seeds: Sequence[int], batch_size: int, output: str):
        super().__init__({"query": data.query}, {output: data.answer}, seeds, batch_size)
        count, memory, words = data.story.shape
        rows = np.concatenate(
            [np.zeros((1, words), data.story.dtype), data.story.reshape(-1, words)]
        )
        self.sentences, ids = np.unique(rows, axis=0, return_inverse=True)  # row 0: no words
        self.sentence_ids = ids.reshape(-1)[1:].reshape(count, memory).astype("int32")

    def memory_rows(self) -> np.ndarray:
        """[M, N]: each question's memory slots as rows of `sentences` (0: empty) this epoch."""
        return self.sentence_ids

    def __getitem__(self, index: int):
        inputs, targets = super().__getitem__(index)
        rows = self.order()[index * self.batch_size : (index + 1) * self.batch_size]  # [B, S]
        ids = self.memory_rows()[rows]  # [B, S, N]
        tables, slots = [], []
        for seed in range(len(self.seeds)):
            used, inverse = np.unique(np.append(0, ids[:, seed]), return_inverse=True)
            tables.append(used)
            slots.append(inverse.reshape(-1)[1:].reshape(ids[:, seed].shape))
        size = table_rows(max(len(t) for t in tables))
        sentences = np.zeros((len(tables), size, self.sentences.shape[1]), "int32")
        for seed, used in enumerate(tables):
            sentences[seed, : len(used)] = self.sentences[used]
        inputs.update(sentences=sentences, slots=np.stack(slots, axis=1).astype("int32"))
        return inputs, targets
