"""The Beam transform outside TFX (`memn2n data babi`), and the archive download."""

from __future__ import annotations

import glob
import json

import pytest
import tensorflow as tf

from ingest.babi.download import ChecksumError, download_babi, verify_babi_dir
from ingest.babi.export import export_babi
from memn2n_cli.main import main
from tests.conftest import BEAM_ARGS, TASK1, fixture_files, make_archive, write_babi


def read_examples(pattern: str) -> list[tf.train.Example]:
    files = sorted(glob.glob(pattern))
    assert files, f"no files match {pattern}"
    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return [tf.train.Example.FromString(r.numpy()) for r in records]


def test_export_writes_splits_by_story_and_counts(babi_dir, tmp_path):
    summary = export_babi(str(babi_dir), str(tmp_path / "out"), tasks=[1, 8], beam_args=BEAM_ARGS)
    # Train files hold 10 copies of each fixture's 2 stories; stories 9 and 19 (each the
    # second story of its copy, with one question) are held out.
    assert summary["per_task"]["1"] == {"train": 28, "eval": 2, "test": 3}
    assert summary["per_task"]["8"] == {"train": 18, "eval": 2, "test": 2}
    assert (summary["train"], summary["eval"], summary["test"]) == (46, 4, 5)
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary

    splits = {
        s: read_examples(str(tmp_path / "out" / s / "*.tfrecord.gz"))
        for s in summary["per_task"]["1"]
    }
    assert {s: len(e) for s, e in splits.items()} == {"train": 46, "eval": 4, "test": 5}
    story_ids = {
        s: {e.features.feature["story_id"].bytes_list.value[0] for e in ex}
        for s, ex in splits.items()
    }
    assert not story_ids["train"] & story_ids["eval"]

    example = next(
        e
        for e in splits["test"]
        if e.features.feature["question"].bytes_list.value == [b"Where is Daniel?"]
    )
    feature = example.features.feature
    assert feature["task"].int64_list.value == [1]
    assert list(feature["story"].bytes_list.value) == [
        b"Mary moved to the bathroom.",
        b"John went to the hallway.",
        b"Daniel went back to the hallway.",
        b"Sandra moved to the garden.",
    ]
    assert feature["answer"].bytes_list.value == [b"hallway"]
    assert feature["supporting_facts"].int64_list.value == [2]
    answers = {e.features.feature["answer"].bytes_list.value[0] for e in splits["test"]}
    assert b"football,apple" in answers


def test_beam_worker_processes_write_what_one_process_writes(babi_dir, tmp_path):
    """The pipeline's default Beam arguments run the transform in worker processes, which import
    it afresh; the other tests run Beam in process, since each worker costs seconds to start."""
    from pipeline.configs import PipelineConfig

    workers = PipelineConfig.beam_args  # the field's default
    assert "--direct_running_mode=multi_processing" in workers
    written = {}
    for name, args in (("workers", workers), ("process", BEAM_ARGS)):
        summary = export_babi(str(babi_dir), str(tmp_path / name), tasks=[1, 8], beam_args=args)
        records = {
            split: sorted(
                e.SerializeToString(deterministic=True)
                for e in read_examples(f"{tmp_path / name}/{split}/*")
            )
            for split in ("train", "eval", "test")
        }
        written[name] = (summary, records)
    assert written["workers"] == written["process"] and written["process"][0]["train"] == 46


def test_failed_export_leaves_no_output(tmp_path):
    root = write_babi(
        tmp_path / "babi", {**fixture_files(), "qa8_lists-sets_test.txt": "1 A b.\n3 C d.\n"}
    )
    out = tmp_path / "out"
    with pytest.raises(Exception, match=r"qa8_lists-sets_test.txt:2: id 3 follows id 1"):
        export_babi(str(root), str(out), tasks=[1, 8], beam_args=BEAM_ARGS)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["babi"]


def test_cli_reports_counts_and_names_bad_lines(babi_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    assert (
        main(
            [
                "data",
                "babi",
                "--babi-dir",
                str(babi_dir),
                "--out",
                str(out),
                "--tasks",
                "1",
                *BEAM_ARGS,
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "train+eval 30, test 3" in printed

    bad = write_babi(
        tmp_path / "bad",
        {**fixture_files(), "qa1_single-supporting-fact_train.txt": TASK1 + "7 x\n"},
    )
    assert (
        main(
            ["data", "babi", "--babi-dir", str(bad), "--out", str(tmp_path / "o2"), "--tasks", "1"]
        )
        == 1
    )
    assert "qa1_single-supporting-fact_train.txt:10: id 7 follows id 3" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_shared_en_counts(shared_babi, tmp_path):
    summary = export_babi(str(shared_babi), str(tmp_path / "en"), beam_args=BEAM_ARGS)
    assert summary["train"] + summary["eval"] == 20_000
    assert summary["test"] == 20_000
    assert all(
        c["train"] + c["eval"] == 1000 and c["test"] == 1000 for c in summary["per_task"].values()
    )
    assert 0.09 < summary["eval"] / 20_000 < 0.11
    assert len(read_examples(str(tmp_path / "en" / "test" / "*.tfrecord.gz"))) == 20_000


def test_download_verifies_every_file_and_caches(shared_babi, tmp_path):
    names = ["en/qa1_single-supporting-fact_train.txt", "en/qa1_single-supporting-fact_test.txt"]
    url = make_archive(tmp_path / "babi.tar.gz", shared_babi, names)
    target = download_babi(str(tmp_path / "cache"), url=url)
    assert sorted(glob.glob(f"{target}/en/*")) == sorted(f"{target}/{n}" for n in names)
    assert verify_babi_dir(target) == 2
    (tmp_path / "babi.tar.gz").unlink()  # a second call must not download again
    assert download_babi(str(tmp_path / "cache"), url=url) == target


def test_download_rejects_a_changed_file(tmp_path):
    root = write_babi(tmp_path / "src", {"qa1_single-supporting-fact_train.txt": TASK1})
    url = make_archive(tmp_path / "babi.tar.gz", root, ["en/qa1_single-supporting-fact_train.txt"])
    with pytest.raises(ChecksumError, match="qa1_single-supporting-fact_train.txt: digest"):
        download_babi(str(tmp_path / "cache"), url=url)
    assert not (tmp_path / "cache" / "tasks_1-20_v1-2").exists()
