"""BLEU and ROUGE on token lists, as the paper's tables report them (x100).

* BLEU: sacrebleu's corpus BLEU with ``tokenize="none"``: IWSLT15 text is already tokenised, and
  re-tokenising would change the score. So is the text ``labelemb data prepare bible-en-es``
  writes, which is why ``force=True``: without it sacrebleu warns in three lines, at every dev
  evaluation, that 100 lines end in a tokenised period (it changes nothing else).
* ROUGE-1/2/L: rouge-score F-measures averaged over sentences. rouge-score's default tokenizer
  keeps only ``[a-z0-9]`` and would turn Chinese into nothing, so the tokens are handed over
  exactly as they are (one character a token for LCSTS).
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["bleu", "rouge"]


def _check(hyps: Sequence, refs: Sequence) -> None:
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        raise ValueError("no sentences to score")


def bleu(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU (0-100) of token lists against one reference each."""
    import sacrebleu

    _check(hyps, refs)
    return float(
        sacrebleu.corpus_bleu(
            [" ".join(h) for h in hyps], [[" ".join(r) for r in refs]], tokenize="none",
            force=True,  # tokenised on purpose: no "forgot to detokenize" warning
        ).score
    )


class _AsIs:
    """rouge-score tokenizer for text whose tokens are already separated by spaces."""

    def tokenize(self, text: str) -> list[str]:
        return text.split()


def rouge(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure (0-100) of token lists; keys ``rouge1``, ``rouge2``, ``rougeL``."""
    from rouge_score import rouge_scorer

    _check(hyps, refs)
    keys = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(keys), tokenizer=_AsIs())
    totals = dict.fromkeys(keys, 0.0)
    for h, r in zip(hyps, refs):
        # Tokens must not contain spaces (they never do: both tokenisers split on them).
        scores = scorer.score(" ".join(r), " ".join(h))  # (target, prediction)
        for key in keys:
            totals[key] += scores[key].fmeasure
    return {key: 100.0 * v / len(hyps) for key, v in totals.items()}
