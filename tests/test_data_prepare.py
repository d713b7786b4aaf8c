"""`labelemb data prepare` never overwrites, and a set appears whole or not at all: real
processes on fortune files written here and on the installed KJV, real folders."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_process import assert_user_error, env, labelemb
from labelemb.data.publish import PREPARED_FILES, publish_folder
from labelemb.data.sword import find_module


@pytest.fixture
def source(tmp_path):
    """Two fortune categories of 40 texts."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("cats", "dogs"):
        (src / name).write_text("\n%\n".join(f"{name} text {i}" for i in range(40)) + "\n")
    return src


def _prepare(out, source, *more):
    return labelemb("data", "prepare", "fortunes", "--out", out, "--source", source, *more)


def test_a_non_empty_out_is_refused_and_left_as_it_was(tmp_path, source):
    out = tmp_path / "D"
    out.mkdir()
    (out / "train.jsonl").write_text("MY OWN DATA\n")
    assert_user_error(_prepare(out, source), str(out), "not empty", "train.jsonl", "--overwrite")
    assert (out / "train.jsonl").read_text() == "MY OWN DATA\n"
    # --overwrite: the user asked; the set replaces the folder whole, nothing left beside it.
    done = _prepare(out, source, "--overwrite")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["dev.jsonl", "labels.json", "test.jsonl",
                                                     "train.jsonl"]
    assert '"label"' in (out / "train.jsonl").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D", "src"]


def test_overwrite_never_replaces_a_folder_holding_other_files(tmp_path, source):
    out = tmp_path / "D"
    assert _prepare(out, source).returncode == 0
    (out / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert_user_error(_prepare(out, source, "--overwrite", "--seed", "5"), "notes.txt",
                      "no `labelemb data prepare` writes")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_an_empty_out_is_used_and_a_file_in_the_way_refused(tmp_path, source):
    (tmp_path / "empty").mkdir()
    assert _prepare(tmp_path / "empty", source).returncode == 0
    assert (tmp_path / "empty" / "labels.json").is_file()
    (tmp_path / "file").write_text("x")
    assert_user_error(_prepare(tmp_path / "file", source), "a file is in the way")
    assert (tmp_path / "file").read_text() == "x"


def test_sizes_are_refused_before_anything_is_written(tmp_path, source):
    out = tmp_path / "D"
    for flags, named in ((["--dev-size", "-5"], "--dev-size must be at least 1, got -5"),
                         (["--test-size", "0"], "--test-size must be at least 1, got 0")):
        assert_user_error(labelemb("data", "prepare", "bible-lm", "--out", out, *flags), named)
    assert_user_error(_prepare(out, source, "--dev-size", "5"), "--dev-size", "bible sets")
    assert not out.exists()


def test_every_file_a_prepare_writes_is_one_overwrite_may_replace(tmp_path, source):
    assert _prepare(tmp_path / "D", source).returncode == 0
    assert {p.name for p in (tmp_path / "D").iterdir()} <= PREPARED_FILES


def test_a_folder_appears_only_when_complete(tmp_path):
    out = tmp_path / "new" / "set"

    def write(folder: Path) -> None:
        (folder / "train.txt").write_text("one\n")
        assert not out.exists()  # nothing at --out while the set is being written
        raise KeyboardInterrupt  # Ctrl-C half-way

    with pytest.raises(KeyboardInterrupt):
        publish_folder(out, write, overwrite=False)
    assert not (tmp_path / "new").exists()  # no partial set, no folder made for it

    def write_all(folder: Path) -> None:
        for split in ("train", "dev", "test"):
            (folder / f"{split}.txt").write_text(f"{split}\n")

    publish_folder(out, write_all, overwrite=False)
    assert sorted(p.name for p in out.iterdir()) == ["dev.txt", "test.txt", "train.txt"]
    assert [p.name for p in out.parent.iterdir()] == ["set"]
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~mask  # as any folder the user makes


@pytest.mark.skipif(find_module("engKJV2006eb") is None,
                    reason="needs Debian's sword-text-kjv (scripts/setup.sh --dev)")
def test_ctrl_c_during_the_writing_leaves_nothing_that_looks_complete(tmp_path):
    # Ctrl-C the moment the hidden temporary folder appears (the files are being written).
    out = tmp_path / "kjv"
    proc = subprocess.Popen([sys.executable, "-m", "labelemb", "data", "prepare", "bible-lm",
                             "--out", str(out)], env=env(), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if any(".partial-" in p.name for p in tmp_path.iterdir()):
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:  # it finished first: then it is whole
        assert sorted(p.name for p in out.iterdir()) == ["dev.txt", "test.txt", "train.txt"]
    else:
        assert proc.returncode == 130 and err.strip() == "labelemb: interrupted", err
        assert list(tmp_path.iterdir()) == []  # no --out, no temporary folder
