"""Word-level language-modelling corpora: Penn Treebank (Mikolov's version) and Text8.

Both become token streams split into pieces ("blocks") that keep their order: a PTB block is one
line (its words, then `<eos>`), a Text8 block is a run of about `TEXT8_BLOCK_WORDS` words. Blocks
are what the Beam job writes, one tf.Example each, so that no word is stored once per memory
slot; context windows are cut from the reassembled stream when reading.

Text8 split: the paper (section 5) follows Mikolov et al. (2014, "Learning Longer Memory in
Recurrent Neural Networks"): the first 93.3M characters for training, the next 5.7M for
validation, the last 1M for test; words seen fewer than 5 times in training become `<unk>`
(about 44k words). Here the cuts are those fractions of the file's size (exactly the paper's on
the 100,000,000-character text8), moved forward to the next space when inside a word.
"""

from __future__ import annotations

import dataclasses
import os
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator

from ingest.files import PTB_FILES, SPLITS, FileFormatError

CORPORA = ("ptb", "text8")
EOS, UNK = "<eos>", "<unk>"
TEXT8_FILE = "text8"
TEXT8_CUTS = (0.933, 0.99)  # fractions of the file: train | eval | test
TEXT8_BLOCK_WORDS = 10_000
PTB_BLOCK_LINES = 100  # about 2,100 words
CONTEXT_WORDS = 200  # the paper's largest memory
PTB_URL = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz"
PTB_ARCHIVE_DIR = "./simple-examples/data/"
TEXT8_URL = "http://mattmahoney.net/dc/text8.zip"


class CorpusError(FileFormatError):
    """A corpus file or folder that is missing, empty or malformed."""


@dataclasses.dataclass(frozen=True)
class Block:
    """A run of the token stream: `index` orders blocks within a split; `lines` are the 1-based
    file lines its PTB sentences came from (Text8: [1]); `context` is up to the last
    `context_words` words before it in its split, after the split's leading `<eos>`."""

    split: str
    index: int
    tokens: list[str]
    path: str
    lines: list[int]
    context: list[str] = dataclasses.field(default_factory=list)

    def line_of(self, position: int) -> int:
        """The file line of `tokens[position]`."""
        return self.lines[min(self.tokens[:position].count(EOS), len(self.lines) - 1)]


@dataclasses.dataclass(frozen=True)
class CorpusSpan:
    """A byte range of one file that holds (part of) one split; the unit of Beam's work."""

    split: str
    path: str
    start: int
    end: int


def corpus_spans(corpus: str, data_dir: str) -> list[CorpusSpan]:
    """Where each split lies: a whole file per split for PTB, character ranges of one file for
    Text8. Fails naming the missing or empty file."""
    if corpus not in CORPORA:
        raise ValueError(f"corpus {corpus!r} is not one of {CORPORA}")
    if not os.path.isdir(data_dir):
        raise CorpusError(data_dir, "not a folder")
    if corpus == "ptb":
        spans = []
        for split, name in PTB_FILES.items():
            path = os.path.join(data_dir, name)
            if not os.path.isfile(path):
                raise CorpusError(path, f"missing PTB file (expected {sorted(PTB_FILES.values())})")
            if os.path.getsize(path) == 0:
                raise CorpusError(path, "empty corpus file")
            spans.append(CorpusSpan(split, path, 0, os.path.getsize(path)))
        return spans
    path = os.path.join(data_dir, TEXT8_FILE)
    if not os.path.isfile(path):
        raise CorpusError(path, f"missing Text8 file (one file named {TEXT8_FILE!r})")
    size = os.path.getsize(path)
    if size == 0:
        raise CorpusError(path, "empty corpus file")
    cuts = [0, *(next_space(path, int(size * c)) for c in TEXT8_CUTS), size]
    return [CorpusSpan(s, path, cuts[i], cuts[i + 1]) for i, s in enumerate(SPLITS)]


def next_space(path: str, offset: int) -> int:
    """The first offset at or after `offset` that starts a word (just after a space)."""
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = f.read(1 << 16)
    at = chunk.find(b" ")
    return offset + (at + 1 if at >= 0 else len(chunk))


def read_blocks(
    span: CorpusSpan, context_words: int = CONTEXT_WORDS, block_lines: int = PTB_BLOCK_LINES
) -> Iterator[Block]:
    """The span's blocks in order: runs of `block_lines` PTB lines (each + `<eos>`), or of Text8
    words; each with the `context_words` words before it."""
    with open(span.path, "rb") as f:
        f.seek(span.start)
        data = f.read(span.end - span.start)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        at_line = data[: e.start].count(b"\n") + 1
        raise CorpusError(span.path, f"not valid UTF-8 (byte {e.start})", at_line) from None
    if not text.split():
        raise CorpusError(span.path, f"no words in the {span.split} split (empty corpus)")
    if span.path.endswith(TEXT8_FILE):
        if "\n" in text.rstrip("\n"):
            raise CorpusError(span.path, "Text8 is one line of words; this file has several")
        words = text.split()
        runs = [
            (words[start : start + TEXT8_BLOCK_WORDS], [1])
            for start in range(0, len(words), TEXT8_BLOCK_WORDS)
        ]
    else:
        sentences = []
        for number, line in enumerate(text.splitlines(), start=1):
            line_words = line.split()
            if EOS in line_words:
                raise CorpusError(span.path, f"the text itself holds {EOS}", number)
            if line_words:
                sentences.append(([*line_words, EOS], number))
        runs = [
            (
                [w for words, _ in sentences[start : start + block_lines] for w in words],
                [number for _, number in sentences[start : start + block_lines]],
            )
            for start in range(0, len(sentences), block_lines)
        ]
    before = [EOS]  # the boundary before the split's first line, as model.lm.inputs reads it
    for index, (tokens, lines) in enumerate(runs):
        context = before[-context_words:] if context_words else []
        yield Block(span.split, index, tokens, span.path, lines, context)
        before = (before + tokens)[-context_words:]


def download_ptb(cache_dir: str, url: str = PTB_URL) -> str:
    """Mikolov's simple-examples archive, unpacked once: the folder holding ptb.*.txt."""
    target = os.path.join(cache_dir, "ptb")
    if all(os.path.isfile(os.path.join(target, n)) for n in PTB_FILES.values()):
        return target
    os.makedirs(target, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
        archive = os.path.join(scratch, "simple-examples.tgz")
        urllib.request.urlretrieve(url, archive)
        with tarfile.open(archive) as tar:
            for name in PTB_FILES.values():
                member = tar.extractfile(PTB_ARCHIVE_DIR + name)
                if member is None:
                    raise CorpusError(url, f"the archive holds no {PTB_ARCHIVE_DIR + name}")
                with open(os.path.join(target, name), "wb") as out:
                    out.write(member.read())
    return target


def download_text8(cache_dir: str, url: str = TEXT8_URL) -> str:
    """Matt Mahoney's text8.zip, unpacked once: the folder holding `text8`."""
    target = os.path.join(cache_dir, "text8")
    if os.path.isfile(os.path.join(target, TEXT8_FILE)):
        return target
    os.makedirs(target, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
        archive = os.path.join(scratch, "text8.zip")
        urllib.request.urlretrieve(url, archive)
        with zipfile.ZipFile(archive) as z:
            z.extract(TEXT8_FILE, target)
    return target


def download_corpus(corpus: str, cache_dir: str, url: str = "") -> str:
    """The folder of `corpus` in `cache_dir`, downloaded once (from `url` when given)."""
    downloads = {"ptb": (download_ptb, PTB_URL), "text8": (download_text8, TEXT8_URL)}
    if corpus not in downloads:
        raise ValueError(f"corpus {corpus!r} is not one of {CORPORA}")
    download, official = downloads[corpus]
    return download(cache_dir, url or official)
