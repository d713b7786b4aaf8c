"""examples/hf_causal_lm.py and examples/hf_translation.py --smoke as a user runs them, on the
real King James (and Reina-Valera) text of Debian's SWORD modules."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")  # the [hf] extra

import torch  # noqa: E402

from cli_process import env, labelemb  # noqa: E402
from labelemb.data.bible import BIBLE_EN_ES  # noqa: E402
from labelemb.data.sword import find_module, plain_text, read_testament  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
needs_bible = pytest.mark.skipif(
    any(find_module(name) is None for name, _ in BIBLE_EN_ES.values()),
    reason="needs Debian's sword-text-kjv and sword-text-sparv (scripts/setup.sh --dev)")


def write_kjv_lines(folder: Path) -> None:
    """``{train,dev,test}.txt``, one KJV verse a line (what ``labelemb data prepare bible-lm``
    writes): every 20th verse in dev, the next in test, the rest in train."""
    module = find_module(BIBLE_EN_ES["en"][0])
    verses = [plain_text(raw).strip() for t in ("ot", "nt") for _, raw in
              read_testament(module, t)]
    verses = [v for v in verses if v]
    splits = {"dev": verses[::20], "test": verses[1::20],
              "train": [v for i, v in enumerate(verses) if i % 20 > 1]}
    folder.mkdir(parents=True)
    for split, lines in splits.items():
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_example(script: str, *args: str | Path) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / script), "--smoke", "--threads", "1",
                           *map(str, args)], env=env(), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
@needs_bible
def test_causal_lm_smoke_trains_each_loss_and_saves_a_model_that_generates(tmp_path):
    from transformers import AutoTokenizer

    from labelemb.hf import LabelEmbeddingForCausalLM

    data, out = tmp_path / "kjv", tmp_path / "runs"
    write_kjv_lines(data)
    stdout = run_example("hf_causal_lm.py", "--data", data, "--out", out, "--modes", "ce,emb")
    rows = [line.split() for line in stdout.splitlines() if line.split()[:1] in (["ce"], ["emb"])]
    assert [r[0] for r in rows] == ["ce", "emb"]
    assert "nearest tokens" in stdout and "God ~" in stdout and "samples (emb" in stdout
    for mode in ("ce", "emb"):
        run = out / mode / "seed-0"
        result = json.loads((run / "result.json").read_text())
        # at most the vocabulary (2,000): a model that learned less than nothing fails this
        assert 1 < result["test_perplexity"] < 2000
        assert 0 <= result["test_ece"] <= 1 and result["temperature"] > 0
        assert len(result["samples"]) == 2 and result["samples"][0].startswith("In the")
        model = LabelEmbeddingForCausalLM.from_pretrained(run / "model").eval()
        tokenizer = AutoTokenizer.from_pretrained(run / "model")
        assert (model.label_embedding is not None) == (mode == "emb")
        ids = tokenizer("And God said", return_tensors="pt")["input_ids"]
        with torch.no_grad():
            assert math.isfinite(float(model(input_ids=ids, labels=ids).loss))
        assert model.generate(ids, max_new_tokens=3, do_sample=False).shape[1] == ids.shape[1] + 3
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    # labelemb report reads the runs (one seed: groups, no test) and names the primary measure
    shown = labelemb("report", out, "--out", tmp_path / "report")
    assert shown.returncode == 0, shown.stderr
    rows = [line for line in shown.stdout.splitlines() if "| kjv | gpt2-small |" in line]
    assert [r.split("|")[3].strip() for r in rows] == ["ce", "emb"]
    assert all("test_perplexity" in r for r in rows)


@pytest.mark.slow
@needs_bible
def test_translation_smoke_reports_bleu_from_beam_search(tmp_path):
    from labelemb.hf import LabelEmbeddingForSeq2SeqLM

    data, out = tmp_path / "bible-en-es", tmp_path / "runs"
    assert labelemb("data", "prepare", "bible-en-es", "--out", data).returncode == 0
    stdout = run_example("hf_translation.py", "--data", data, "--out", out)
    rows = [line.split() for line in stdout.splitlines() if line.split()[:1] in (["ce"], ["emb"])]
    assert [r[0] for r in rows] == ["ce", "emb"]
    for mode in ("ce", "emb"):
        result = json.loads((out / mode / "seed-0" / "result.json").read_text())
        assert 0 <= result["test_bleu"] <= 100 and math.isfinite(result["test_loss"])
        assert result["samples"][0]["output"]  # beam search produced words
    model = LabelEmbeddingForSeq2SeqLM.from_pretrained(out / "emb" / "seed-0" / "model")
    assert model.label_embedding is not None


@pytest.mark.parametrize("script, flags, named", [  # the two share the parser (_study.py)
    ("hf_causal_lm.py", ["--modes", "ce,focal"], "'focal'"),
    ("hf_causal_lm.py", ["--seeds", "x"], "'x'"),
    ("hf_translation.py", ["--seeds", "3-1"], "'3-1'"),  # no seed: an empty table, before
])
def test_a_bad_mode_or_seed_is_one_line_before_any_training(script, flags, named, tmp_path):
    """Checked by the command line, not by the first model built after the tokenizer (a
    traceback) or never (an empty study)."""
    done = subprocess.run([sys.executable, str(EXAMPLES / script), "--data", str(tmp_path),
                           "--out", str(tmp_path / "out"), *flags], env=env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert named in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()
