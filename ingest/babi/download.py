"""Download the official bAbI v1.2 archive once into a cache folder and verify every file."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request

from ingest.babi.checksums import BABI_GIT_BLOB_SHA1, BABI_SHA256

BABI_URL = "http://www.thespermwhale.com/jaseweston/babi/tasks_1-20_v1-2.tar.gz"
ARCHIVE_ROOT = "tasks_1-20_v1-2"
DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "memn2n")


class ChecksumError(ValueError):
    """A downloaded file whose digest is not the one recorded in the project."""


def file_digest(path: str, kind: str = "sha256") -> str:
    """sha256 of a file, or its git blob id (`kind="git"`)."""
    with open(path, "rb") as f:
        data = f.read()
    if kind == "git":
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return hashlib.sha256(data).hexdigest()


def verify_babi_dir(babi_dir: str) -> int:
    """Check every en/ and en-10k/ file present against the recorded digests; returns the count."""
    checked = 0
    for train_set in ("en", "en-10k"):
        folder = os.path.join(babi_dir, train_set)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            relative = f"{train_set}/{name}"
            if relative in BABI_SHA256:
                expected, actual = BABI_SHA256[relative], file_digest(os.path.join(folder, name))
            elif relative in BABI_GIT_BLOB_SHA1:
                expected = BABI_GIT_BLOB_SHA1[relative]
                actual = file_digest(os.path.join(folder, name), "git")
            else:
                raise ChecksumError(f"{folder}/{name}: not a file of the bAbI v1.2 archive")
            if actual != expected:
                raise ChecksumError(f"{folder}/{name}: digest {actual} != recorded {expected}")
            checked += 1
    if not checked:
        raise ChecksumError(f"{babi_dir}: no en/ or en-10k/ files to verify")
    return checked


def download_babi(cache_dir: str = DEFAULT_CACHE_DIR, url: str = BABI_URL) -> str:
    """The bAbI folder (holding en/ and en-10k/) in `cache_dir`, downloaded and verified once."""
    target = os.path.join(cache_dir, ARCHIVE_ROOT)
    if os.path.isfile(os.path.join(target, ".verified")):
        return target
    os.makedirs(cache_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
        archive = os.path.join(scratch, os.path.basename(url))
        with urllib.request.urlopen(url) as response, open(archive, "wb") as out:
            shutil.copyfileobj(response, out)
        extracted = os.path.join(scratch, "extracted")
        with tarfile.open(archive, "r:gz") as tar:
            members = [
                m
                for m in tar.getmembers()
                if m.isfile()
                and m.name.startswith((f"{ARCHIVE_ROOT}/en/", f"{ARCHIVE_ROOT}/en-10k/"))
            ]
            tar.extractall(extracted, members=members, filter="data")
        verify_babi_dir(os.path.join(extracted, ARCHIVE_ROOT))
        open(os.path.join(extracted, ARCHIVE_ROOT, ".verified"), "w").close()
        shutil.rmtree(target, ignore_errors=True)
        os.replace(os.path.join(extracted, ARCHIVE_ROOT), target)
    return target
