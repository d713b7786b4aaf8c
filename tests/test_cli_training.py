"""Bad training input through a real ``python -m labelemb`` process: one line, exit 2.

Each case runs the command as a user would (its own process, real Fashion-MNIST, a few
hundred images, one epoch), and checks the exit status, that stderr is one line that names the
flag or file, and that nothing was trained or written where it should not be.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import subprocess
from pathlib import Path

import pytest
import torch
from cli_process import assert_user_error, labelemb

FASHION = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist")
TINY = ["--model", "mlp", "--epochs", "1", "--train-subset", "300", "--test-subset", "100",
        "--dev-subset", "100", "--threads", "1", "--data-dir", str(FASHION), "--no-summary"]


def train(*args: str) -> subprocess.CompletedProcess:
    return labelemb("train", *TINY, *args)


def one_error_line(proc: subprocess.CompletedProcess, pattern: str) -> str:
    """The user-error line matching ``pattern``; training may log before it."""
    return assert_user_error(proc, pattern=pattern, alone=False)


def test_out_that_is_an_existing_file_is_refused_and_left_alone(tmp_path):
    out = tmp_path / "notes.txt"
    out.write_text("mine\n")
    one_error_line(train("--modes", "baseline", "--out", str(out)), r"notes\.txt.*--out")
    assert out.read_text() == "mine\n"


def test_out_that_cannot_be_written_is_refused(tmp_path):
    # Root may write almost anywhere; sysfs refuses new folders even to root.
    target = Path("/sys/labelemb-cannot-write-here")
    try:
        target.mkdir()
    except OSError:
        pass
    else:
        target.rmdir()
        pytest.skip("/sys accepts new folders on this machine")
    one_error_line(train("--modes", "baseline", "--out", str(target / "out")),
                   r"labelemb-cannot-write-here.*--out")


@pytest.mark.parametrize("flags, pattern", [
    (["--device", "foo"], r"--device 'foo'"),
    (["--lr-gamma", "-1"], r"--lr-gamma must be > 0"),
    (["--lr-gamma", "0"], r"--lr-gamma must be > 0"),
    (["--data-dir", "/nonexistent"], r"--data-dir /nonexistent: no such folder"),
])
def test_bad_flag_values_are_one_line_and_make_no_folder(tmp_path, flags, pattern):
    out = tmp_path / "out"
    one_error_line(train("--modes", "baseline", "--out", str(out), *flags), pattern)
    assert not out.exists()


def test_data_dir_without_the_data_is_not_replaced_by_another_copy(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    one_error_line(train("--modes", "baseline", "--out", str(tmp_path / "out"),
                         "--data-dir", str(empty)), r"--data-dir .*empty: no fashion-mnist files")


def test_mode_is_the_authors_spelling_of_modes(tmp_path):
    proc = train("--mode", "emb", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "emb" / "seed-0" / "result.json").is_file()
    assert not (tmp_path / "baseline").exists()
    # --mode=emb, as in `python3 cnn.py --mode=emb`; no other prefix is guessed.
    assert "--mode" in labelemb("train", "--mode=nope").stderr
    one = labelemb("train", "--mod", "emb")
    assert one.returncode == 2 and "unrecognized arguments: --mod" in one.stderr


def test_resume_of_a_finished_run_with_a_changed_setting_is_refused(tmp_path):
    out = str(tmp_path)
    assert train("--modes", "baseline", "--out", out).returncode == 0
    result = (tmp_path / "baseline" / "seed-0" / "result.json").read_bytes()
    one_error_line(train("--modes", "baseline", "--out", out, "--resume", "--lr", "0.01"),
                   r"cannot resume with changed settings \(lr: 0\.001 -> 0\.01\)")
    same = train("--modes", "baseline", "--out", out, "--resume")
    assert same.returncode == 0 and "complete (3 updates), skipped" in same.stderr
    assert (tmp_path / "baseline" / "seed-0" / "result.json").read_bytes() == result


class _Payload:
    """Unpickling this would create a file: the test's proof that nothing ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("damage", ["hostile", "truncated"])
def test_a_bad_checkpoint_is_refused_in_one_line_without_unsafe_advice(tmp_path, damage):
    out = str(tmp_path / "out")
    assert train("--modes", "baseline", "--out", out).returncode == 0
    run = tmp_path / "out" / "baseline" / "seed-0"
    (run / "result.json").unlink()  # unfinished: --resume loads the checkpoint
    ckpt = run / "checkpoint.pt"
    marker = tmp_path / "pwned"
    if damage == "hostile":
        with open(ckpt, "wb") as f:
            pickle.dump({"model": _Payload(marker)}, f)
    else:
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
    proc = train("--modes", "baseline", "--out", out, "--resume", "--epochs", "2")
    line = one_error_line(proc, r"checkpoint\.pt is damaged or not a labelemb checkpoint")
    assert "weights_only" not in proc.stderr and "--overwrite" in line
    assert not marker.exists()


def test_stale_temp_file_is_removed_when_the_run_is_opened(tmp_path):
    out = str(tmp_path)
    assert train("--modes", "baseline", "--out", out).returncode == 0
    run = tmp_path / "baseline" / "seed-0"
    stale = run / "checkpoint.pt.tmp"
    stale.write_bytes(b"half a checkpoint from a killed process")
    proc = train("--modes", "baseline", "--out", out, "--resume", "--epochs", "2")
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists()
    assert not list(run.glob("*.tmp"))


def test_emb_fixed_with_a_nan_embedding_is_refused_before_a_run_folder_is_made(tmp_path):
    from labelemb.data.registry import load_dataset
    from labelemb.embedding import LabelEmbedding, save_embedding

    names = load_dataset("fashion-mnist", data_dir=FASHION).class_names
    emb = LabelEmbedding(10, class_names=names)
    with torch.no_grad():
        emb.weight[3, 4] = float("nan")
    path = tmp_path / "embedding.safetensors"
    save_embedding(emb, path)
    out = tmp_path / "out"
    one_error_line(train("--modes", "emb-fixed", "--embedding", str(path), "--out", str(out)),
                   r"embedding\.safetensors: .*non-finite")
    assert not out.exists()


@pytest.mark.parametrize("command", [["train"], ["seq2seq", "train"]])
def test_help_shows_every_default_once_and_the_flags_match_the_config(command):
    from labelemb.cli import build_parser

    proc = labelemb(*command, "--help")
    assert proc.returncode == 0
    # One block per option: its flag line and the wrapped help under it.
    blocks = re.split(r"\n  (?=-)", proc.stdout.split("options:", 1)[1])
    assert len(blocks) > 20
    for block in blocks:
        assert block.count("default") <= 1, block
    # The parser's defaults are the config's: nothing is written twice to drift apart.
    if command == ["train"]:
        from labelemb.engine.classification import TrainConfig

        args = build_parser().parse_args(["train"])
        assert TrainConfig.from_any(args) == TrainConfig()
    else:
        from labelemb.engine.seq2seq import TrainConfig

        args = build_parser().parse_args(["seq2seq", "train", "--task", "lcsts",
                                          "--data-dir", "d"])
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        assert TrainConfig(**{k: v for k, v in vars(args).items() if k in fields}) == \
            TrainConfig(task="lcsts", data_dir="d")


def _run_in_terminal(args: list[str]) -> str:
    """``python -m labelemb ARGS`` with stderr on a pseudo-terminal, as a user at a shell."""
    import pty
    import sys

    from cli_process import env

    import fcntl
    import struct
    import termios

    main_fd, child_fd = pty.openpty()
    # a terminal 24 rows by 100 columns (a fresh pseudo-terminal has none)
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "labelemb", *args], env=env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=child_fd)
    os.close(child_fd)
    chunks = []
    while True:
        try:
            data = os.read(main_fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=300) == 0
    return b"".join(chunks).decode("utf-8", "replace")


def test_progress_is_a_bar_on_a_terminal_and_one_line_per_evaluation_in_a_log(tmp_path):
    args = ["train", *TINY, "--modes", "baseline", "--max-steps", "3", "--eval-every", "3"]
    shown = _run_in_terminal(args + ["--out", str(tmp_path / "tty")])
    assert re.search(r"baseline s0 e1:.*\d+/\d+ \[", shown), shown  # tqdm: count, rate, ETA
    logged = train("--modes", "baseline", "--max-steps", "3", "--eval-every", "3", "--out",
                   str(tmp_path / "log"))
    assert logged.returncode == 0 and "it/s" not in logged.stderr and "s/it" not in logged.stderr
    (line,) = [ln for ln in logged.stderr.splitlines() if ln.startswith("[baseline seed 0]")]
    assert re.search(r"update 3 .*\(train \d+\.\ds, eval \d+\.\ds\)$", line), line
