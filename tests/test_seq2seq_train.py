"""Seq2seq end to end through the CLI: learning, run directory, resume, bad input.

``labelemb seq2seq train --out OUT`` writes one folder per run, ``OUT/<mode>/seed-<k>/``: the
tests train one mode (``--modes emb``) and seed 0 unless they say otherwise."""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch

from labelemb.cli import main
from labelemb.data.parallel_text import collate
from labelemb.engine.decoding import load_run
from labelemb.runs.rundir import read_metrics
from labelemb.embedding import load_embedding
from labelemb.models.beam import beam_search, greedy_decode

TINY = ["--emb-dim", "32", "--hidden", "64", "--layers", "1", "--dropout", "0",
        "--label-dim", "16", "--batch-size", "32", "--threads", "1", "--max-len", "12"]


def write_permutation_corpus(d, n_train=1500, n_dev=100, n_test=100, vocab=24, seed=0):
    """Target = source with every word replaced by its image under a fixed permutation."""
    rng = random.Random(seed)
    perm = list(range(vocab))
    rng.shuffle(perm)
    d.mkdir(parents=True, exist_ok=True)
    mapping = {f"s{i}": f"t{perm[i]}" for i in range(vocab)}
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        src, tgt = [], []
        for _ in range(n):
            words = [f"s{rng.randrange(vocab)}" for _ in range(rng.randint(3, 8))]
            src.append(" ".join(words))
            tgt.append(" ".join(mapping[w] for w in words))
        (d / f"{split}.src").write_text("\n".join(src) + "\n", encoding="utf-8")
        (d / f"{split}.tgt").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    return mapping


@pytest.fixture(autouse=True)
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_emb_model_learns_a_permutation_to_bleu_above_90(tmp_path, capsys):
    mapping = write_permutation_corpus(tmp_path / "data")
    rc = main(["seq2seq", "train", "--task", "parallel", "--data-dir", str(tmp_path / "data"),
               "--mode", "emb", "--out", str(tmp_path / "study"), *TINY, "--epochs", "10",
               "--max-steps", "400", "--eval-every", "50", "--warmup-steps", "50", "--beam", "3"])
    assert rc == 0
    run = tmp_path / "study" / "emb" / "seed-0"
    result = json.loads((run / "result.json").read_text())
    assert result["test_bleu"] > 90, result
    records = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in records][:2] == [50, 100]
    assert {"step", "epoch", "train_loss", "terms", "dev_bleu", "dev_loss", "seconds",
            "eval_seconds", "soft_ce_weight", "best_step"} <= set(records[0])
    assert all(r["soft_ce_weight"] > 0 for r in records[1:])  # past the 50 warm-up updates
    assert set(records[-1]["terms"]) == {"ce", "soft_ce", "aux_ce", "aux_hinge", "embedding_ce"}
    assert max(r["dev_bleu"] for r in records) == pytest.approx(result["best_dev_bleu"])
    assert result["steps"] == 400 and result["primary_metric"] == "test_bleu"
    best = max(records, key=lambda r: r["dev_bleu"])["step"]
    assert result["best_step"] == records[-1]["best_step"] == best
    config = json.loads((run / "config.json").read_text())
    assert (config["task"], config["mode"], config["dataset"]) == ("seq2seq", "emb", "parallel")
    assert (config["run_format"], config["seed"]) == (2, 0)
    emb = load_embedding(run / "embedding.safetensors")
    model, criterion, src_vocab, tgt_vocab, _ = load_run(run)
    assert emb.class_names == tgt_vocab.itos
    torch.testing.assert_close(emb.A.weight, criterion.embedding.A.weight)
    hyp = (run / "test.hyp.txt").read_text(encoding="utf-8").splitlines()
    assert len(hyp) == 100

    # translate: the learned mapping, from the saved run
    src = tmp_path / "in.txt"
    src.write_text("s1 s2 s3 s4 s5\ns7 s7 s0\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["seq2seq", "translate", str(run), "--input", str(src), "--beam", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    expect = [" ".join(mapping[w] for w in line.split()) for line in src.read_text().splitlines()]
    assert out == expect

    assert main(["seq2seq", "evaluate", str(run), "--split", "dev", "--beam", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["bleu"] == pytest.approx(result["best_dev_bleu"])
    assert main(["seq2seq", "neighbours", str(run), "t1", "t2", "-k", "5", "--json"]) == 0
    near = json.loads(capsys.readouterr().out)
    assert len(near["t1"]) == 5 and "t1" not in [w for w, _ in near["t1"]]

    # Under the trained model, beam search never finishes below greedy.
    lines = (tmp_path / "data" / "test.src").read_text().splitlines()[:40]
    b = collate([src_vocab.encode(x.split()) for x in lines], [[]] * len(lines))
    g = greedy_decode(model, b.src, b.src_lengths, max_len=12)
    for k in (2, 5):
        bs = beam_search(model, b.src, b.src_lengths, beam=k, max_len=12)
        assert all(sb >= sg - 1e-5 for sb, sg in zip(bs.scores, g.scores))


def _train(tmp_path, out, *extra, data="data", modes="emb"):
    return main(["seq2seq", "train", "--task", "parallel", "--data-dir", str(tmp_path / data),
                 "--out", str(tmp_path / out), "--modes", modes, *TINY, "--eval-every", "3",
                 *extra])


def _run(tmp_path, out, mode="emb", seed=0):
    """The folder of one run of the study ``out``."""
    return tmp_path / out / mode / f"seed-{seed}"


def test_resume_continues_exactly(tmp_path):
    write_permutation_corpus(tmp_path / "data", n_train=200, n_dev=10, n_test=10)
    common = ["--dropout", "0.3", "--layers", "2", "--warmup-steps", "2"]
    assert _train(tmp_path, "straight", *common, "--max-steps", "9") == 0
    assert _train(tmp_path, "resumed", *common, "--max-steps", "6") == 0
    # Killed after checkpoint.pt was written but before its metrics line was:
    log = _run(tmp_path, "resumed") / "metrics.jsonl"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:-1]))
    assert _train(tmp_path, "resumed", *common, "--max-steps", "9", "--resume") == 0
    a = read_metrics(_run(tmp_path, "straight") / "metrics.jsonl")
    b = read_metrics(_run(tmp_path, "resumed") / "metrics.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [3, 6, 9]
    for ra, rb in zip(a, b):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-5)
    sa = torch.load(_run(tmp_path, "straight") / "checkpoint.pt", weights_only=True)
    sb = torch.load(_run(tmp_path, "resumed") / "checkpoint.pt", weights_only=True)
    for key in ("model", "criterion"):
        for name in sa[key]:
            torch.testing.assert_close(sa[key][name], sb[key][name], msg=name)
    assert int(sb["criterion"]["num_updates"]) == 9  # warm-up position survives the resume


def test_existing_run_needs_resume(tmp_path, capsys):
    write_permutation_corpus(tmp_path / "data", n_train=50, n_dev=5, n_test=5)
    assert _train(tmp_path, "run", "--max-steps", "1") == 0
    assert _train(tmp_path, "run", "--max-steps", "1") == 2
    assert "already holds a run" in capsys.readouterr().err


def test_a_study_writes_a_folder_per_mode_and_seed_and_resume_skips_finished_runs(tmp_path,
                                                                                  capsys):
    """``--modes baseline,emb --seeds 0-1``: four runs in one call, as ``labelemb train``
    lays them out; ``--resume`` of the finished study trains nothing again."""
    write_permutation_corpus(tmp_path / "data", n_train=50, n_dev=5, n_test=5)
    assert _train(tmp_path, "study", "--seeds", "0-1", "--max-steps", "2",
                  modes="baseline,emb") == 0
    runs = {(m, k): _run(tmp_path, "study", m, k) for m in ("baseline", "emb") for k in (0, 1)}
    assert sorted(p.relative_to(tmp_path / "study") for p in (tmp_path / "study").glob("*/*")
                  ) == sorted(p.relative_to(tmp_path / "study") for p in runs.values())
    results = {}
    for (mode, seed), run in runs.items():
        config = json.loads((run / "config.json").read_text())
        assert (config["mode"], config["seed"], config["settings"]["max_steps"]) == (mode, seed, 2)
        results[run] = (run / "result.json").read_text()
        assert json.loads(results[run])["steps"] == 2
        assert (run / "embedding.safetensors").exists() == (mode == "emb")
    first = torch.load(runs["emb", 0] / "checkpoint.pt", weights_only=True)["model"]
    other = torch.load(runs["emb", 1] / "checkpoint.pt", weights_only=True)["model"]
    assert any(not torch.equal(first[k], other[k]) for k in first)  # the seed counts
    capsys.readouterr()
    assert _train(tmp_path, "study", "--seeds", "0-1", "--max-steps", "2", "--resume",
                  modes="baseline,emb") == 0
    err = capsys.readouterr().err
    for mode, seed in runs:
        assert f"[{mode} seed {seed}] complete (2 updates), skipped" in err
    assert "resuming" not in err
    assert {run: (run / "result.json").read_text() for run in runs.values()} == results


def test_finished_run_follows_the_resume_rule_and_overwrite_starts_again(tmp_path, capsys):
    """The rule of labelemb train: --resume checks the settings of a finished run too (only
    how long it trains and where it runs may change), and --overwrite starts afresh."""
    write_permutation_corpus(tmp_path / "data", n_train=50, n_dev=5, n_test=5)
    assert _train(tmp_path, "run", "--max-steps", "2") == 0
    run = _run(tmp_path, "run")
    result = (run / "result.json").read_text()
    capsys.readouterr()
    assert _train(tmp_path, "run", "--max-steps", "2", "--resume", "--lr", "0.01") == 2
    err = capsys.readouterr().err
    assert "cannot resume with changed settings (lr: 0.001 -> 0.01)" in err
    assert _train(tmp_path, "run", "--max-steps", "2", "--resume") == 0
    assert "complete (2 updates), skipped" in capsys.readouterr().err
    assert (run / "result.json").read_text() == result
    assert _train(tmp_path, "run", "--max-steps", "3", "--resume") == 0  # a longer run: extended
    assert json.loads((run / "result.json").read_text())["steps"] == 3
    (run / "checkpoint.pt.tmp").write_bytes(b"left by a killed process")
    assert _train(tmp_path, "run", "--max-steps", "1", "--overwrite", "--lr", "0.01") == 0
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1]
    assert json.loads((run / "config.json").read_text())["settings"]["lr"] == 0.01
    assert not (run / "checkpoint.pt.tmp").exists()


@pytest.mark.parametrize("breakage, message", [
    ("short", r"train\.src has 50 lines.*train\.tgt has 49"),
    ("bytes", r"dev\.tgt:3: not valid UTF-8"),
    ("empty", r"test\.src is empty"),
])
def test_bad_input_is_one_clear_error_and_writes_nothing(tmp_path, capsys, breakage, message):
    d = tmp_path / "data"
    write_permutation_corpus(d, n_train=50, n_dev=5, n_test=5)
    if breakage == "short":
        lines = (d / "train.tgt").read_text().splitlines()
        (d / "train.tgt").write_text("\n".join(lines[:-1]) + "\n")
    elif breakage == "bytes":
        lines = (d / "dev.tgt").read_bytes().split(b"\n")
        lines[2] = b"t1 \xe9t\xe9"  # Latin-1, not UTF-8
        (d / "dev.tgt").write_bytes(b"\n".join(lines))
    else:
        (d / "test.src").write_text("")
    assert _train(tmp_path, "run", "--max-steps", "1") == 2
    err = capsys.readouterr().err
    assert err.startswith("labelemb: error:") and "Traceback" not in err
    import re

    assert re.search(message, err), err
    assert not (tmp_path / "run").exists()  # the data is checked before any folder is made


def test_vocabulary_from_another_run_is_refused(tmp_path, capsys):
    write_permutation_corpus(tmp_path / "data", n_train=50, n_dev=5, n_test=5)
    write_permutation_corpus(tmp_path / "other", n_train=50, n_dev=5, n_test=5, seed=1)
    assert _train(tmp_path, "a", "--max-steps", "1") == 0
    assert _train(tmp_path, "b", "--max-steps", "1", data="other") == 0
    shutil.copy(_run(tmp_path, "b") / "vocab.tgt.json", _run(tmp_path, "a") / "vocab.tgt.json")
    src = tmp_path / "in.txt"
    src.write_text("s1 s2\n")
    capsys.readouterr()
    assert main(["seq2seq", "translate", str(_run(tmp_path, "a")), "--input", str(src)]) == 2
    err = capsys.readouterr().err
    assert "vocab.tgt.json is a vocabulary from another run" in err


LCSTS_DOC = """<doc id={i}>
    <human_label>{score}</human_label>
    <summary>
        {summary}
    </summary>
    <short_text>
        {text}
    </short_text>
</doc>
"""


def test_lcsts_task_end_to_end(tmp_path):
    rng = random.Random(0)
    chars = "北京上海深圳机场新闻经济手机技术"
    d = tmp_path / "lcsts"
    d.mkdir()
    for name, n in (("PART_I.txt", 40), ("PART_II.txt", 6), ("PART_III.txt", 6)):
        docs = []
        for i in range(n):
            text = "".join(rng.choice(chars) for _ in range(12))
            docs.append(LCSTS_DOC.format(i=i, score=1 + i % 5, summary=text[:4], text=text))
        body = "".join(docs)
        if name == "PART_I.txt":  # the training file has no human labels
            body = "".join(line + "\n" for line in body.splitlines() if "human_label" not in line)
        (d / name).write_text(body, encoding="utf-8")
    rc = main(["seq2seq", "train", "--task", "lcsts", "--data-dir", str(d), "--out",
               str(tmp_path / "study"), "--modes", "emb",
               "--emb-dim", "16", "--hidden", "24", "--label-dim", "8", "--batch-size", "8",
               "--max-steps", "4", "--eval-every", "2", "--threads", "1", "--lcsts-min-score", "3"])
    assert rc == 0
    run = _run(tmp_path, "study")
    result = json.loads((run / "result.json").read_text())
    assert {"test_rouge1", "test_rouge2", "test_rougeL"} <= set(result)
    assert result["test_pairs"] == 3  # labels 1 2 3 4 5 1: three are >= 3
    rec = read_metrics(run / "metrics.jsonl")[-1]
    assert {"dev_rouge1", "dev_rouge2", "dev_rougeL"} <= set(rec)
    config = json.loads((run / "config.json").read_text())
    assert config["model_config"]["share_embeddings"] is True
    assert config["settings"]["max_train_len"] == 150  # posts of up to 140 characters stay
    assert config["num_pairs"] == {"train": 40, "dev": 3, "test": 3}
    assert (run / "vocab.src.json").read_text() == (run / "vocab.tgt.json").read_text()
    hyp = (run / "test.hyp.txt").read_text(encoding="utf-8").splitlines()
    assert len(hyp) == 3 and all(" " not in h for h in hyp)  # characters joined back


def test_iwslt15_task_end_to_end(tmp_path):
    d = tmp_path / "iwslt15"
    d.mkdir()
    rng = random.Random(0)
    en, vi = "the a science climate big speak minutes".split(), "khoa học khí hậu lớn nói phút".split()
    for prefix, n in (("train", 30), ("tst2012", 4), ("tst2013", 5)):
        rows = [[rng.randrange(7) for _ in range(rng.randint(2, 6))] for _ in range(n)]
        (d / f"{prefix}.en").write_text("".join(" ".join(en[i] for i in r) + "\n" for r in rows))
        (d / f"{prefix}.vi").write_text("".join(" ".join(vi[i] for i in r) + "\n" for r in rows))
    rc = main(["seq2seq", "train", "--task", "iwslt15", "--data-dir", str(d), "--out",
               str(tmp_path / "study"), "--modes", "emb",
               "--emb-dim", "16", "--hidden", "16", "--label-dim", "8", "--batch-size", "8",
               "--max-steps", "2", "--eval-every", "2", "--threads", "1", "--beam", "4",
               "--max-len", "8"])
    assert rc == 0
    run = _run(tmp_path, "study")
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"] == "iwslt15" and config["num_pairs"] == {"train": 30, "dev": 4, "test": 5}
    assert config["model_config"]["layers"] == 2 and config["settings"]["dropout"] == 0.2
    result = json.loads((run / "result.json").read_text())
    assert "test_bleu" in result and result["beam"] == 4
    assert len((run / "test.hyp.txt").read_text(encoding="utf-8").splitlines()) == 5


@pytest.mark.parametrize("chunk", [None, "5"])
def test_chunked_loss_run_matches_the_plain_run(tmp_path, chunk):
    """The chunked loss (emb's default) changes memory, not training: the same losses and
    weights as `--no-chunked-loss`, with the default chunk or `--chunk-size`, and it reloads."""
    from labelemb.chunked import ChunkedLabelEmbeddingLoss

    write_permutation_corpus(tmp_path / "data", n_train=120, n_dev=10, n_test=10)
    common = ["--warmup-steps", "2", "--max-steps", "6", "--dropout", "0"]
    assert _train(tmp_path, "plain", *common, "--no-chunked-loss") == 0
    assert _train(tmp_path, "chunked", *common, *(["--chunk-size", chunk] if chunk else [])) == 0
    a = read_metrics(_run(tmp_path, "plain") / "metrics.jsonl")
    b = read_metrics(_run(tmp_path, "chunked") / "metrics.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [3, 6]
    for ra, rb in zip(a, b):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-4)
        assert ra["terms"] == pytest.approx(rb["terms"], rel=1e-4, abs=1e-6)
    _, criterion, _, _, config = load_run(_run(tmp_path, "chunked"))
    assert isinstance(criterion, ChunkedLabelEmbeddingLoss)
    assert criterion.chunk_size == (int(chunk) if chunk else None)
    sa = torch.load(_run(tmp_path, "plain") / "checkpoint.pt", weights_only=True)
    sb = torch.load(_run(tmp_path, "chunked") / "checkpoint.pt", weights_only=True)
    for name in sa["model"]:
        torch.testing.assert_close(sa["model"][name], sb["model"][name], rtol=1e-3, atol=1e-5,
                                   msg=name)
