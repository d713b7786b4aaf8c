"""BLEU on text that is tokenised on purpose says nothing about it (sacrebleu warned in three
lines at every dev evaluation on data ``labelemb data prepare bible-en-es`` wrote)."""

from __future__ import annotations

import logging

import pytest

from labelemb.text_metrics import bleu


def _verses(n: int) -> tuple[list[list[str]], list[list[str]]]:
    """``n`` hypothesis/reference pairs of tokens, each ending in a period token."""
    hyps = [f"and god said , let there be light {i} .".split() for i in range(n)]
    refs = [f"and god said : let there be light {i} .".split() for i in range(n)]
    return hyps, refs


def test_bleu_of_tokenised_text_does_not_warn_and_scores_as_sacrebleu(caplog, capfd):
    import sacrebleu

    hyps, refs = _verses(120)  # sacrebleu warns from 100 lines ending in " ."
    joined = [" ".join(h) for h in hyps], [[" ".join(r) for r in refs]]
    with caplog.at_level(logging.WARNING):
        plain = sacrebleu.corpus_bleu(*joined, tokenize="none").score
    assert any("forgot to detokenize" in r.getMessage() for r in caplog.records)  # the old way
    caplog.clear()
    capfd.readouterr()
    with caplog.at_level(logging.WARNING):
        ours = bleu(hyps, refs)
    assert ours == pytest.approx(plain)  # force=True changes only the warning
    assert 0 < ours < 100
    assert not [r for r in caplog.records if r.name.startswith("sacrebleu")]
    assert "detokenize" not in capfd.readouterr().err
