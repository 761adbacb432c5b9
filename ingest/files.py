"""What both datasets' files share: the splits, errors that name a file and line, and where a
split's TFRecords are. Pure Python: configs and parsers import it without TensorFlow."""

from __future__ import annotations

import glob
import os
import re

SPLITS = ("train", "eval", "test")  # eval: held-out training stories, or a corpus's validation
# Penn Treebank (Mikolov's version) per split: the LM corpus, and bAbI's long-memory distractors
PTB_FILES = {"train": "ptb.train.txt", "eval": "ptb.valid.txt", "test": "ptb.test.txt"}


class FileFormatError(ValueError):
    """A data file or folder that does not follow its format; says which file and line."""

    def __init__(self, path: str, message: str, line: int | None = None):
        self.path, self.line = path, line
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


def unwrap_format_error(
    error: BaseException, error_class: type[FileFormatError]
) -> FileFormatError | None:
    """The `error_class` error behind an error a Beam runner raised, which may only quote it."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, error_class):
            return seen
        seen = seen.__cause__ or seen.__context__
    wrapped = re.compile(
        rf"{error_class.__name__}: (?P<path>[^\n]+?)(?::(?P<line>\d+))?: (?P<message>[^\n]+?)"
        r"(?: \[while running [^\n]*)?$",
        re.MULTILINE,
    )
    if match := wrapped.search(str(error)):
        line = int(match["line"]) if match["line"] else None
        return error_class(match["path"], match["message"], line=line)
    return None


def split_files(examples_dir: str, split: str) -> list[str]:
    """A split's TFRecord files: dir/split/*.gz (`memn2n data`) or dir/Split-split/*.gz (TFX)."""
    files = sorted(
        glob.glob(os.path.join(examples_dir, split, "*.gz"))
        + glob.glob(os.path.join(examples_dir, f"Split-{split}", "*.gz"))
    )
    if not files:
        raise FileNotFoundError(f"{examples_dir}: no TFRecord files for split {split!r}")
    return files
