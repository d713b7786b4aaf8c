"""The README's example runs as printed, and its set-up commands are the ones CI runs."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_example_runs_and_learns():
    code = _blocks("python")[0]
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    logits, y = scope["logits"], scope["y"]
    # 50 Adam steps on one batch: the model must have fitted it.
    assert (logits.argmax(1) == y).float().mean() > 0.9
    assert scope["soft_targets"].shape == (10, 10)
    torch.testing.assert_close(scope["soft_targets"].sum(1), torch.ones(10))


def test_ci_runs_the_readme_test_command():
    bash = _blocks("bash")
    assert len(bash) == 2, "the README has exactly two set-up commands"
    test_cmd = bash[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    setup, _, pytest_cmd = test_cmd.partition(" && ")
    assert "scripts/setup.sh --dev" in setup and "scripts/setup.sh --dev" in ci
    assert pytest_cmd in ci


def test_the_authors_commands_table_gives_commands_that_parse():
    """Each `labelemb ...` of the README's table from the authors' commands is a command line
    this labelemb accepts (flags, choices, sub-commands), so the table cannot drift."""
    from labelemb.cli import build_parser

    text = (ROOT / "README.md").read_text()
    section = text.split("### From the authors' commands", 1)[1].split("\n#", 1)[0]
    commands = re.findall(r"`labelemb ([^`]+)`", section)
    assert len(commands) >= 8
    for command in commands:
        args = build_parser().parse_args(command.split())
        assert callable(args.func), command


def test_readme_hugging_face_example_runs(tmp_path, monkeypatch):
    """The "With Hugging Face Transformers" block, as printed, on the real fortunes data."""
    import pytest

    pytest.importorskip("transformers")
    from labelemb.data.fortunes import FORTUNES_DIR, prepare_fortunes

    if not (FORTUNES_DIR / "computers").is_file():
        pytest.skip("needs Debian's fortunes (scripts/setup.sh --dev)")
    (code,) = [b for b in _blocks("python") if "labelemb.hf" in b]
    monkeypatch.chdir(tmp_path)
    prepare_fortunes("data/fortunes")
    scope: dict = {}
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        exec(compile(code, "README.md", "exec"), scope)
    assert not [w for w in seen if "pin_memory" in str(w.message)]  # issue 27
    from labelemb.hf import LabelEmbeddingForSequenceClassification

    loaded = LabelEmbeddingForSequenceClassification.from_pretrained("runs/readme-hf/model")
    torch.testing.assert_close(loaded.soft_targets(), scope["soft_targets"])
    assert scope["soft_targets"].shape == (40, 40)
    assert not torch.equal(loaded.label_embedding.weight, torch.eye(40))  # it has learned
    assert loaded.label_embedding.class_names == scope["data"].names
