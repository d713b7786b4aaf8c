"""examples/hf_text_classification.py --smoke as a user runs it, on the real fortunes data,
then `labelemb inspect` on its label-embedding run."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")  # the [hf] extra

import torch  # noqa: E402

from cli_process import env, labelemb  # noqa: E402
from labelemb.data.fortunes import FORTUNES_DIR  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hf_text_classification.py"


@pytest.mark.slow
@pytest.mark.skipif(not (FORTUNES_DIR / "computers").is_file(),
                    reason="needs Debian's fortunes (scripts/setup.sh --dev)")
def test_smoke_example_trains_both_losses_and_inspect_names_the_categories(tmp_path):
    from labelemb.hf import LabelEmbeddingForSequenceClassification

    data, out = tmp_path / "fortunes", tmp_path / "runs"
    assert labelemb("data", "prepare", "fortunes", "--out", data).returncode == 0
    done = subprocess.run([sys.executable, str(EXAMPLE), "--data", str(data), "--smoke",
                           "--out", str(out)], env=env(), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pin_memory" not in done.stderr  # issue 27
    rows = [line.split() for line in done.stdout.splitlines() if line.split()[:1] in (["ce"], ["emb"])]
    assert [r[0] for r in rows] == ["ce", "emb"]
    assert "nearest categories" in done.stdout and "linux ~" in done.stdout
    names = json.loads((data / "labels.json").read_text())["names"]
    for mode in ("ce", "emb"):
        run = out / mode / "seed-0"
        result = json.loads((run / "result.json").read_text())
        assert result["mode"] == mode and 0 <= result["test_accuracy"] <= 1
        assert result["test_ece_calibrated"] >= 0 and result["temperature"] > 0
        # The saved model (encoder, head, embedding) gives back the logits it was scored with.
        model = LabelEmbeddingForSequenceClassification.from_pretrained(run / "model").eval()
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(run / "model")
        texts = [json.loads(line)["text"] for line in (data / "test.jsonl").open()][:8]
        batch = tokenizer(texts, truncation=True, max_length=result["recipe"]["max_length"],
                          padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(**batch).logits
        saved = torch.load(run / "predictions.pt", weights_only=True)["test_logits"][:8]
        torch.testing.assert_close(logits, saved, rtol=1e-4, atol=1e-4)
        assert model.config.id2label[0] == names[0]
        assert tokenizer.model_max_length == result["recipe"]["max_length"]  # the positions
    assert not (out / "ce" / "seed-0" / "embedding.safetensors").exists()
    shown = labelemb("inspect", out / "emb" / "seed-0", "--classes", "linux", "love",
                     "--out", tmp_path / "inspect")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[2].startswith("| linux |") and lines[3].startswith("| love |")
    nearest = [cell.split(" (")[0] for cell in lines[2].split("|")[2].strip().split(", ")]
    assert len(nearest) == 5 and set(nearest) <= set(names) - {"linux"}
    assert (tmp_path / "inspect" / "heatmap.png").stat().st_size > 0
    # Run again: every run is finished, so nothing trains and the same table prints.
    again = subprocess.run([sys.executable, str(EXAMPLE), "--data", str(data), "--smoke",
                            "--out", str(out)], env=env(), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0 and "train_runtime" not in again.stdout + again.stderr
    assert [line for line in again.stdout.splitlines() if line.split()[:1] in (["ce"], ["emb"])] \
        == [line for line in done.stdout.splitlines() if line.split()[:1] in (["ce"], ["emb"])]
