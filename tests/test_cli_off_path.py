"""One step off the tested path, through real ``python -m labelemb`` processes (issue 27):
a learning rate that trains nothing, a negative seed, a run too short for its warm-up, an
unfinished run used for decoding, ``/dev/null`` as input, parallel files without languages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_process import assert_user_error, labelemb
from test_seq2seq_train import TINY, write_permutation_corpus

FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(not FASHION.is_dir(),
                                   reason="needs Debian's dataset-fashion-mnist")
SMALL = ["--model", "mlp", "--train-subset", "300", "--test-subset", "100", "--dev-subset",
         "100", "--threads", "1", "--data-dir", str(FASHION), "--no-summary"]


@needs_fashion
@pytest.mark.parametrize("lr", ["inf", "-inf", "nan", "0"])
def test_a_learning_rate_that_trains_nothing_is_refused_before_any_folder(tmp_path, lr):
    done = labelemb("train", *SMALL, "--lr", lr, "--out", tmp_path / "out")
    assert_user_error(done, "--lr", alone=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("seeds", ["-3", "2-1", "x"])
def test_a_seed_that_names_no_run_folder_is_refused(tmp_path, seeds):
    done = labelemb("train", f"--seeds={seeds}", "--out", tmp_path / "out")
    assert_user_error(done, "--seeds")
    assert not (tmp_path / "out").exists()


@needs_fashion
def test_a_run_shorter_than_its_warm_up_says_soft_ce_never_counts(tmp_path):
    done = labelemb("train", *SMALL, "--modes", "emb", "--max-steps", "2", "--eval-every", "1",
                    "--warmup-steps", "5", "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 updates in all, --warmup-steps 5: the soft target (soft_ce) never counts" \
        in done.stderr
    assert done.stderr.count("(soft_ce off: warm-up)") == 2
    records = [json.loads(line) for line in
               (tmp_path / "emb" / "seed-0" / "metrics.jsonl").read_text().splitlines()]
    assert [r["soft_ce_weight"] for r in records] == [0.0, 0.0]


@pytest.fixture(scope="module")
def unfinished_run(tmp_path_factory):
    """A seq2seq run with a best.pt and a checkpoint but no result.json (killed)."""
    root = tmp_path_factory.mktemp("s2s")
    write_permutation_corpus(root / "data", n_train=200, n_dev=20, n_test=20)
    done = labelemb("seq2seq", "train", "--task", "parallel", "--data-dir", root / "data",
                    "--modes", "emb", "--out", root / "out", *TINY, "--max-steps", "4",
                    "--eval-every", "2", "--warmup-steps", "1")
    assert done.returncode == 0, done.stderr
    run = root / "out" / "emb" / "seed-0"
    (run / "result.json").unlink()
    return run


def test_translating_dev_null_gives_no_output_and_no_error(unfinished_run):
    done = labelemb("seq2seq", "translate", unfinished_run, "--input", "/dev/null",
                    "--device", "cpu", "--threads", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_decoding_an_unfinished_run_says_so(unfinished_run, tmp_path):
    (tmp_path / "in.txt").write_text("s1 s2 s3\n")
    done = labelemb("seq2seq", "translate", unfinished_run, "--input", tmp_path / "in.txt",
                    "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert "is unfinished" in done.stderr and len(done.stdout.splitlines()) == 1
    assert done.stdout.strip()  # never an empty translation by default


def test_parallel_files_with_other_extensions_name_the_language_flags(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "dev", "test"):
        for lang in ("en", "es"):
            (data / f"{split}.{lang}").write_text("a b\n")
    done = labelemb("seq2seq", "train", "--task", "parallel", "--data-dir", data,
                    "--out", tmp_path / "out")
    assert_user_error(done, "--src-lang", "--tgt-lang", alone=False)


@needs_fashion
def test_a_batch_too_small_for_its_parts_is_refused_not_trained_with_no_update(tmp_path):
    done = labelemb("train", *SMALL, "--modes", "baseline", "--batch-size", "2", "--accumulate",
                    "4", "--out", tmp_path / "out")
    assert_user_error(done, "--batch-size 2", "--accumulate 4", alone=False)
    assert not (tmp_path / "out").exists()
