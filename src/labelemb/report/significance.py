"""How sure a difference between two modes is: Welch's t-test (unequal variances) of the final
test errors over seeds, one mode against each other mode of the same dataset and model."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence

from .table import ModeSummary

__all__ = ["Comparison", "compare", "compare_label_embedding", "format_comparisons"]

#: The modes that train with a label embedding; a variant of one ("emb beta=0.75") is a run
#: that changed a loss option.
LABEL_EMBEDDING_MODES = ("emb", "emb-fixed")


@dataclass(frozen=True)
class Comparison:
    """``mode`` against ``other``: the difference of mean final test errors (fraction,
    negative = ``mode`` makes fewer errors), Welch's t and its two-sided p-value."""

    dataset: str
    model: str
    mode: str
    other: str
    difference: float
    t: float
    p: float
    n: tuple[int, int]


def compare(summaries: Sequence[ModeSummary], mode: str = "emb") -> list[Comparison]:
    """``mode`` against every other mode of its ``(dataset, model)``, where both have at least
    two seeds (a t-test needs a spread)."""
    from scipy.stats import ttest_ind  # imported here: only reports need scipy

    out = []
    by_key = {(s.dataset, s.model, s.mode): s for s in summaries}
    for s in summaries:
        ref = by_key.get((s.dataset, s.model, mode))
        if ref is None or s is ref or min(ref.n, s.n) < 2:
            continue
        a, b = ref.final_test_error, s.final_test_error
        test = ttest_ind(a, b, equal_var=False)
        out.append(Comparison(s.dataset, s.model, mode, s.mode,
                              statistics.fmean(a) - statistics.fmean(b),
                              float(test.statistic), float(test.pvalue), (len(a), len(b))))
    return out


def compare_label_embedding(summaries: Sequence[ModeSummary]) -> list[Comparison]:
    """emb against every other mode, then each variant of emb or emb-fixed (a sweep's re-run,
    e.g. ``"emb beta=0.75"``) against the modes that train without a label embedding."""
    out = compare(summaries, "emb")
    variants = sorted({s.mode for s in summaries
                       if s.base_mode in LABEL_EMBEDDING_MODES and s.mode != s.base_mode})
    without = {s.mode for s in summaries if s.base_mode not in LABEL_EMBEDDING_MODES}
    for variant in variants:
        out += [c for c in compare(summaries, variant) if c.other in without]
    return out


def format_comparisons(comparisons: Sequence[Comparison]) -> str:
    """Markdown table of :func:`compare`; empty when there is nothing to compare."""
    if not comparisons:
        return ""
    lines = ["| dataset | model | mode | against | difference (points) | Welch's t | p | n |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    for c in comparisons:
        lines.append(f"| {c.dataset} | {c.model} | {c.mode} | {c.other} | "
                     f"{100 * c.difference:+.2f} | {c.t:+.2f} | {c.p:.3g} | {c.n[0]} vs {c.n[1]} |")
    return "\n".join(lines) + "\n"
