"""The command line's error boundary, through a real ``python -m labelemb`` process: input the
user can fix is one stderr line ``labelemb: error: ...`` naming the file or flag, exit 2;
Ctrl-C is one line and exit 130; a traceback is only for a bug in labelemb."""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
from pathlib import Path

import damaged_files
import pytest
import torch
from cli_process import assert_user_error, env, labelemb
from test_report import write_run
from test_seq2seq_train import TINY as SEQ2SEQ_TINY
from test_seq2seq_train import write_permutation_corpus

from labelemb.cli import error_line, is_user_error

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


# --------------------------------------------------------------------------- flags


ARGPARSE_ERRORS = [
    (["train", "--epochs", "abc"], ["train: argument --epochs: invalid int value: 'abc'"]),
    (["train", "--model", "foo"], ["train: argument --model", "'foo'"]),
    (["train", "--seeds", "x"], ["train: --seeds: cannot read 'x'"]),
    (["train", "--modes", "nope"], ["train: --modes: unknown ['nope']; choose from baseline"]),
    (["train", "--mod", "emb"], ["train: unrecognized arguments: --mod emb"]),
    (["seq2seq", "train", "--task", "x"], ["seq2seq train: argument --task", "'x'"]),
    (["seq2seq", "translate", "run", "--beam", "two"], ["seq2seq translate: argument --beam"]),
    (["inspect"], ["inspect: the following arguments are required: RUN_DIR"]),
    (["report", "runs", "--bogus"], ["report: unrecognized arguments: --bogus"]),
    (["data", "download", "nope"], ["data download: argument"]),
    (["nope"], ["argument COMMAND: invalid choice: 'nope'"]),
]


@pytest.mark.parametrize("args, named", ARGPARSE_ERRORS,
                         ids=[" ".join(args) for args, _ in ARGPARSE_ERRORS])
def test_a_flag_argparse_refuses_is_one_line_naming_the_command(tmp_path, args, named):
    """Not argparse's usage block and ``labelemb train: error:``: the same one line as every
    other user error, with where to read the flags."""
    line = assert_user_error(labelemb(*args, cwd=tmp_path), *named)
    command = " ".join(args[:2] if args[0] in ("seq2seq", "data") else args[:1])
    help_of = "labelemb" if args == ["nope"] else f"labelemb {command}"
    assert line.endswith(f"; see {help_of} --help"), line


@pytest.mark.parametrize("args, names", [
    ([], "demo, report, inspect, train, data, seq2seq; see labelemb --help"),
    (["seq2seq"], "seq2seq: choose one of train, translate, evaluate, neighbours; "
                  "see labelemb seq2seq --help"),
    (["data"], "data: choose one of download, info, prepare; see labelemb data --help"),
], ids=["labelemb", "seq2seq", "data"])
def test_a_command_without_its_action_is_one_line_listing_the_choices(tmp_path, args, names):
    """Before, the whole help and exit 2: an error without its one line."""
    done = labelemb(*args, cwd=tmp_path)
    assert done.stdout == ""
    assert_user_error(done, names)


# --------------------------------------------------------------------------- inspect


def test_inspect_refuses_a_hostile_header_without_allocating(tmp_path):
    """4x4 data whose metadata says 100,000 classes: before, inspect built a 40 GB matrix."""
    path = damaged_files.set_metadata(damaged_files.saved_full(tmp_path / "e.safetensors"),
                                      num_classes="100000", class_names=None)
    done = labelemb("inspect", path, cwd=tmp_path, limit_memory=True)
    assert_user_error(done, str(path), "num_classes=100000", "[4, 4]")


def test_inspect_refuses_a_non_finite_embedding_and_writes_nothing(tmp_path):
    weight = torch.eye(4)
    weight[2, 0] = float("nan")
    path = damaged_files.saved_full(tmp_path / "e.safetensors", weight)
    done = labelemb("inspect", path, cwd=tmp_path)
    assert_user_error(done, str(path), "'weight'", "non-finite")
    assert not (tmp_path / "inspect").exists()


@pytest.mark.parametrize("damage, named", [
    (lambda p: damaged_files.truncate(p, 10), ["truncated"]),
    (lambda p: damaged_files.truncate(p, 300), ["truncated"]),
    (lambda p: damaged_files.set_metadata(p, dim="5"), ["'A'", "dim=5"]),
    (lambda p: damaged_files.set_metadata(p, num_classes="abc"), ["num_classes"]),
    (lambda p: damaged_files.set_metadata(p, class_names="[oops"), ["class_names"]),
], ids=["truncated-data", "truncated-header", "wrong-shape", "num-classes-abc",
        "class-names-not-json"])
def test_inspect_names_the_damaged_file_and_field(tmp_path, damage, named):
    path = damage(damaged_files.saved_compressed(tmp_path / "c.safetensors"))
    done = labelemb("inspect", path, cwd=tmp_path)
    assert_user_error(done, str(path), *named)


def test_inspect_refuses_a_pickle(tmp_path):
    path = tmp_path / "embedding.safetensors"
    torch.save({"weight": torch.eye(3)}, path)
    assert_user_error(labelemb("inspect", path, cwd=tmp_path), str(path), "never unpickles")


@pytest.mark.parametrize("command", ["inspect", "report"])
def test_a_missing_run_is_named(tmp_path, command):
    assert_user_error(labelemb(command, "no-such-run", cwd=tmp_path), "no-such-run")


@pytest.mark.skipif(not (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
                    reason="needs the real Fashion-MNIST (Debian package dataset-fashion-mnist)")
@pytest.mark.parametrize("damage, named", [
    (lambda p: damaged_files.truncate(p, 10), ["truncated"]),
    (lambda p: damaged_files.set_metadata(p, num_classes="100000", class_names=None),
     ["num_classes=100000"]),
], ids=["truncated", "wrong-shape"])
def test_emb_fixed_refuses_a_damaged_embedding_before_a_run_folder(tmp_path, damage, named):
    """The same checks guard training on a saved embedding (a NaN one:
    tests/test_cli_training.py)."""
    path = damage(damaged_files.saved_full(tmp_path / "e.safetensors"))
    done = labelemb("train", "--modes", "emb-fixed", "--embedding", path, "--model", "mlp",
                    "--data-dir", FASHION_MNIST, "--out", tmp_path / "out", cwd=tmp_path,
                    limit_memory=True)
    assert_user_error(done, str(path), *named)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- --out


def _source(command: str, tmp_path: Path) -> Path:
    """What ``command`` reads: an embedding file for inspect, a finished run for report."""
    if command == "inspect":
        return damaged_files.saved_full(tmp_path / "e.safetensors")
    return write_run(tmp_path / "runs", "baseline", 0)


@pytest.mark.parametrize("command", ["inspect", "report"])
@pytest.mark.parametrize("out, named", [
    ("taken", ["--out taken", "is a file"]),
    ("taken/below", ["--out taken/below", "Not a directory"]),
    # /sys refuses new folders even to root: a real PermissionError on the user's path.
    ("/sys/labelemb-out", ["--out /sys/labelemb-out", "not permitted"]),
], ids=["onto-a-file", "below-a-file", "not-permitted"])
def test_a_bad_out_folder_is_one_line_and_the_file_there_is_kept(tmp_path, command, out, named):
    source = _source(command, tmp_path)
    (tmp_path / "taken").write_text("keep me")
    assert_user_error(labelemb(command, source, "--out", out, cwd=tmp_path), *named)
    assert (tmp_path / "taken").read_text() == "keep me"


# --------------------------------------------------------------------------- devices, Ctrl-C


def test_seq2seq_unknown_device_names_the_flag(tmp_path):
    """torch raises RuntimeError for it, which the boundary treats as a bug: the flag's
    parser turns it into a ValueError, before a run folder is made (``train --device foo``:
    tests/test_cli_training.py)."""
    done = labelemb("seq2seq", "train", "--task", "iwslt15", "--data-dir", ".", "--device",
                    "foo", "--out", tmp_path / "out", cwd=tmp_path)
    assert_user_error(done, "--device", "'foo'")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def seq2seq_run(tmp_path_factory) -> Path:
    """A finished one-update seq2seq run on a small parallel corpus."""
    root = tmp_path_factory.mktemp("seq2seq")
    write_permutation_corpus(root / "data", n_train=40, n_dev=4, n_test=4)
    done = labelemb("seq2seq", "train", "--task", "parallel", "--data-dir", "data", "--out",
                    "run", "--modes", "emb", *SEQ2SEQ_TINY, "--max-steps", "1", "--device", "cpu",
                    cwd=root)
    assert done.returncode == 0, done.stderr
    return root / "run" / "emb" / "seed-0"


@pytest.mark.parametrize("command", [["translate", "--input", "data/dev.src"],
                                     ["evaluate", "--split", "dev"]], ids=lambda c: c[0])
def test_seq2seq_decoding_with_an_unknown_device_names_the_flag_not_the_checkpoint(
        seq2seq_run, command):
    """Before, torch.load(map_location='foo') failed and the good best.pt was called damaged,
    with the advice to delete it."""
    best = (seq2seq_run / "best.pt").read_bytes()
    done = labelemb("seq2seq", command[0], seq2seq_run, *command[1:], "--device", "foo",
                    cwd=seq2seq_run.parent)
    line = assert_user_error(done, "--device 'foo'")
    assert "damaged" not in line and "delete" not in line
    assert (seq2seq_run / "best.pt").read_bytes() == best


@pytest.mark.parametrize("flag", ["--batch-size", "--beam", "--max-len"])
def test_seq2seq_translate_refuses_a_zero_size_naming_the_flag(seq2seq_run, flag):
    done = labelemb("seq2seq", "translate", seq2seq_run, "--input", "data/dev.src", flag, "0",
                    cwd=seq2seq_run.parent)
    assert_user_error(done, f"{flag} must be an integer >= 1, got 0")


@pytest.mark.parametrize("flags, named", [
    (["--emb-dim", "-1"], "--emb-dim must be an integer >= 1, got -1"),
    (["--hidden", "0"], "--hidden must be an integer >= 1, got 0"),
    (["--layers", "0"], "--layers must be an integer >= 1, got 0"),
    (["--dropout", "2"], "--dropout must be >= 0 and < 1, got 2.0"),
    (["--dropout", "nan"], "--dropout must be >= 0 and < 1, got nan"),
    (["--max-train-pairs", "0"], "--max-train-pairs must be an integer >= 1, got 0"),
    (["--max-train-pairs", "-1"], "--max-train-pairs must be an integer >= 1, got -1"),
    (["--dev-max-pairs", "0"], "--dev-max-pairs must be an integer >= 1, got 0"),
    (["--lr", "0"], "--lr must be > 0, got 0.0"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_seq2seq_train_refuses_a_setting_out_of_range_naming_the_flag(tmp_path, flags, named):
    write_permutation_corpus(tmp_path / "data", n_train=20, n_dev=2, n_test=2)
    done = labelemb("seq2seq", "train", "--task", "parallel", "--data-dir", "data", "--out",
                    "run", *SEQ2SEQ_TINY, "--max-steps", "1", *flags, cwd=tmp_path)
    assert_user_error(done, named)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
                    reason="needs the real Fashion-MNIST (Debian package dataset-fashion-mnist)")
def test_ctrl_c_during_training_is_one_line_and_exit_130(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "labelemb", "train", "--dataset", "fashion-mnist", "--model",
         "mlp", "--modes", "emb", "--epochs", "50", "--train-subset", "2000",
         "--test-subset", "500", "--threads", "1", "--device", "cpu", "--out", str(out)],
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Ctrl-C in a terminal: SIGINT not ignored, even when pytest itself runs in the
        # background (`cmd &` or nohup ignore it, and Python then installs no handler)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # Interrupt once the run is under way: its folder has a config and a first epoch.
        metrics = out / "emb" / "seed-0" / "metrics.jsonl"
        while proc.poll() is None and not (metrics.is_file() and metrics.stat().st_size):
            try:
                proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        assert proc.poll() is None, "training ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert stderr.splitlines()[-1] == (
        "labelemb: interrupted; run the same command with --resume to continue")


# --------------------------------------------------------------------------- the one line


def test_error_line_is_one_line_naming_the_path_and_what_to_do():
    err = FileExistsError(17, "File exists", "out/report.md")
    assert error_line(err) == ("labelemb: error: out/report.md: File exists; "
                               "remove it or choose another path")
    # os.replace(temp, target) onto a folder: the target is what the user named.
    err = IsADirectoryError(21, "Is a directory", "out/report.md.tmp", None, "out/report.md")
    assert error_line(err).startswith("labelemb: error: out/report.md: Is a directory; ")
    assert error_line(ValueError("first\n  second\n")) == "labelemb: error: first second"
    # OSError(errno, text) raised by labelemb itself: its text, without "[Errno 20]".
    assert error_line(NotADirectoryError(20, "x is a file; choose another --out")) == (
        "labelemb: error: x is a file; choose another --out")


def test_only_user_errors_lose_their_traceback():
    """What the boundary turns into one line, and what it leaves as a traceback (a bug)."""
    from safetensors import SafetensorError

    for err in [ValueError("x"), SafetensorError("x"), FileNotFoundError(2, "x", "f"),
                PermissionError(13, "x", "f"), FileExistsError(17, "x", "f"),
                OSError(errno.ENOSPC, "No space left on device", "f")]:
        assert is_user_error(err), err
    for err in [RuntimeError("x"), TypeError("x"), KeyError("x"), AttributeError("x"),
                OSError(errno.ECONNREFUSED, "refused"), ZeroDivisionError()]:
        assert not is_user_error(err), err
