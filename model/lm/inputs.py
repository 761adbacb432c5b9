"""Language-model inputs: token streams read back from the LM TFRecords, a vocabulary, and the
runs of context windows cut from a stream batch by batch (never stored once per memory slot)."""

from __future__ import annotations

import collections
import dataclasses

import keras
import numpy as np
import tensorflow as tf

from ingest.files import split_files
from ingest.lm.corpus import EOS, UNK

PAD = "<pad>"  # id 0: an empty memory slot


def blocks_in_order(files: list[str], feature: str, dtype: tf.DType) -> list:
    """The values of `feature` (a list per example) of every block in `files`, concatenated in
    the order of the blocks' `index`."""
    spec = {"index": tf.io.FixedLenFeature([], tf.int64), feature: tf.io.RaggedFeature(dtype)}
    blocks: list[tuple[int, list]] = []
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096):
        parsed = tf.io.parse_example(batch, spec)
        blocks.extend(zip(parsed["index"].numpy().tolist(), parsed[feature].to_list(), strict=True))
    blocks.sort(key=lambda block: block[0])
    return [value for _, values in blocks for value in values]


def read_tokens(examples_dir: str, split: str) -> list[str]:
    """A split's tokens in corpus order, from dir/split/*.gz (or TFX's Split-<split>/*.gz)."""
    files = split_files(examples_dir, split)
    return [token.decode() for token in blocks_in_order(files, "tokens", tf.string)]


@dataclasses.dataclass(frozen=True)
class LMVocabulary:
    """Words by id: 0 is `<pad>`, then `<unk>`, then the training words by falling count."""

    words: list[str]

    @classmethod
    def from_tokens(cls, tokens: list[str], min_count: int = 1) -> LMVocabulary:
        counts = collections.Counter(tokens)
        kept = [w for w, c in counts.items() if c >= min_count and w not in (PAD, UNK)]
        kept.sort(key=lambda w: (-counts[w], w))
        return cls([PAD, UNK, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: list[str]) -> np.ndarray:
        """Token ids, [L] int32; words outside the vocabulary become `<unk>`."""
        ids = {w: i for i, w in enumerate(self.words)}
        unk = ids[UNK]
        return np.array([ids.get(t, unk) for t in tokens], dtype="int32")


def stream_start_id(words: list[str]) -> int:
    """The id before every stream (and served prefix): `<eos>`, or `<unk>` for a vocabulary
    without it (Text8), as LMVocabulary.encode maps it."""
    return words.index(EOS) if EOS in words else words.index(UNK)


def token_stream(tokens: list[str], vocabulary: LMVocabulary) -> np.ndarray:
    """[L + 1] ids: the split's tokens after one `<eos>`, the boundary before its first line,
    so that every token of the split is predicted from at least one word."""
    return vocabulary.encode([EOS, *tokens])


class ShuffledStarts(keras.utils.PyDataset):
    """Batches cut at `starts` (positions in a stream), shuffled at the start and after each
    epoch when `shuffle`; the order and the RNG are its checkpointed state."""

    def __init__(self, starts: np.ndarray, shuffle: bool, seed: int):
        super().__init__()
        self.starts, self.shuffle = starts, shuffle
        self.rng = np.random.default_rng(seed)
        if shuffle:
            self.rng.shuffle(self.starts)

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.rng.shuffle(self.starts)

    def get_state(self) -> dict:
        """The order and the RNG after the last epoch (model.checkpoint.Stateful)."""
        return {"starts": self.starts.copy(), "rng": self.rng.bit_generator.state}

    def set_state(self, state: dict) -> None:
        self.starts = np.array(state["starts"])
        self.rng.bit_generator.state = state["rng"]


class RunBatches(ShuffledStarts):
    """MemN2N batches ({"span": [G, N + L - 1]}, targets [G, L], weights [G, L]) predicting every
    position 1..len - 1 of a stream once, in runs of L (`run_length`) consecutive targets, G =
    batch_size / L runs a batch, the runs shuffled each epoch in training. A run's span is the N
    words before its first target, then its first L - 1 targets; 0 before the stream starts,
    and weight 0 on the targets past its end."""

    def __init__(
        self,
        stream: np.ndarray,
        memory_size: int,
        run_length: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
    ):
        if batch_size % run_length:
            raise ValueError(
                f"batch_size {batch_size} is not a multiple of run_length {run_length}"
            )
        self.stream, self.memory_size, self.run_length = stream, memory_size, run_length
        self.runs = batch_size // run_length
        super().__init__(np.arange(1, len(stream), run_length), shuffle, seed)  # first targets

    def __len__(self) -> int:
        return -(-len(self.starts) // self.runs)

    def __getitem__(self, index: int):
        starts = self.starts[index * self.runs : (index + 1) * self.runs, None]  # [G, 1]
        n, length, end = self.memory_size, self.run_length, len(self.stream)
        offsets = starts - n + np.arange(n + length - 1)  # [G, S]
        inside = (offsets >= 0) & (offsets < end)
        span = np.where(inside, self.stream[np.clip(offsets, 0, end - 1)], 0)
        at = starts + np.arange(length)  # [G, L]
        targets = np.where(at < end, self.stream[np.minimum(at, end - 1)], 0)
        return {"span": span.astype("int32")}, targets.astype("int32"), (at < end).astype("float32")


class SequenceBatches(ShuffledStarts):
    """LSTM batches ({"tokens": [B, W + T]}, next words [B, W + T], weight [B, W + T]) of windows
    starting every T words; the first W (`warmup`) words of a window are context only (weight 0),
    so that in scoring every word is predicted after at least W words. 0 pads past either end."""

    def __init__(
        self,
        stream: np.ndarray,
        length: int,
        batch_size: int,
        shuffle: bool,
        warmup: int = 0,
        seed: int = 0,
    ):
        self.stream, self.length, self.warmup = stream, length, warmup
        self.batch_size = batch_size
        super().__init__(np.arange(0, len(stream) - 1, length), shuffle, seed)  # predicts start+1

    def __len__(self) -> int:
        return -(-len(self.starts) // self.batch_size)

    def __getitem__(self, index: int):
        starts = self.starts[index * self.batch_size : (index + 1) * self.batch_size]
        offsets = starts[:, None] - self.warmup + np.arange(self.warmup + self.length)  # [B, W+T]
        inside = (offsets >= 0) & (offsets + 1 < len(self.stream))
        tokens = np.where(inside, self.stream[np.clip(offsets, 0, len(self.stream) - 1)], 0)
        targets = np.where(inside, self.stream[np.clip(offsets + 1, 0, len(self.stream) - 1)], 0)
        scored = inside & (np.arange(self.warmup + self.length) >= self.warmup)[None, :]
        return {"tokens": tokens.astype("int32")}, targets.astype("int32"), scored.astype("float32")
