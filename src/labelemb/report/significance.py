"""How sure a difference between two groups of runs is, in the groups' primary measure.

* **The test**: a paired t-test where the two groups ran the same seeds (the same seed is the
  same initial weights and data order for every mode, so the differences per seed are the
  sample), Welch's t-test (unequal variances) otherwise; both two-sided, from
  ``scipy.stats``. A group of fewer than two seeds is not tested.
* **The 95 % confidence interval** of the difference of means, from the same t distribution.
* **Holm's correction** over a family of comparisons (:func:`holm`): the effects against
  cross-entropy of the label-embedding modes are one family, those of the other losses
  another (:func:`effects_vs_baseline`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Sequence

from .summary import Summary, scale_of
from ..runs.progress import log

__all__ = ["Comparison", "compare", "holm", "effects_vs_baseline", "compare_label_embedding",
           "format_comparisons", "format_effects", "LABEL_EMBEDDING_MODES", "LEVEL"]

#: The modes that train with a label embedding; a variant of one ("emb beta=0.75") is a run
#: with other settings.
LABEL_EMBEDDING_MODES = ("emb", "emb-fixed")
#: the confidence level of every interval
LEVEL = 0.95
#: the Holm families of :func:`effects_vs_baseline`
FAMILIES = ("label embedding", "other losses")


@dataclass(frozen=True)
class Comparison:
    """``mode`` against ``other`` in ``metric`` (the measure's unit: fractions for errors):
    ``difference`` = mean(mode) - mean(other), its 95 % interval ``low``-``high``, the test
    (``"paired"`` or ``"Welch"``), its t, degrees of freedom and two-sided p."""

    task: str
    dataset: str
    model: str
    mode: str
    other: str
    metric: str
    higher_is_better: bool
    difference: float
    low: float
    high: float
    test: str
    t: float
    df: float
    p: float
    n: tuple[int, int]
    family: str = ""
    p_holm: float | None = None

    @property
    def scale(self) -> float:
        """100 for a fraction (differences shown in points), else 1."""
        return scale_of(self.metric)

    @property
    def sign(self) -> int:
        """+1 where a larger measure is better, -1 where smaller is: ``sign * difference``
        is the improvement."""
        return 1 if self.higher_is_better else -1


def _seeds_pair(a: Summary, b: Summary) -> bool:
    return len(set(a.seeds)) == a.n and len(set(b.seeds)) == b.n and set(a.seeds) == set(b.seeds)


def compare(a: Summary, b: Summary) -> Comparison | None:
    """``a`` against ``b``: paired where they ran the same seeds, Welch otherwise; ``None``
    when either has fewer than two seeds (a t-test needs a spread)."""
    from scipy.stats import ttest_ind, ttest_rel  # imported here: only reports need scipy

    if min(len(a.values), len(b.values)) < 2:
        return None
    if _seeds_pair(a, b):
        by_seed = dict(zip(b.seeds, b.values))
        x, y, test = a.values, [by_seed[s] for s in a.seeds], "paired"
    else:
        x, y, test = a.values, b.values, "Welch"
    with warnings.catch_warnings():  # identical values: scipy warns, and the result stands
        warnings.simplefilter("ignore", RuntimeWarning)
        res = ttest_rel(x, y) if test == "paired" else ttest_ind(x, y, equal_var=False)
        ci = res.confidence_interval(LEVEL)
    mean_x, mean_y = sum(x) / len(x), sum(y) / len(y)
    return Comparison(a.task, a.dataset, a.model, a.mode, b.mode, a.metric, a.higher_is_better,
                      mean_x - mean_y, float(ci.low), float(ci.high), test,
                      float(res.statistic), float(res.df), float(res.pvalue), (a.n, b.n))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the ``i``-th smallest of ``m`` p-values is multiplied by
    ``m - i`` (``i`` from 0), then made non-decreasing in that order and capped at 1. A NaN
    p-value stays NaN and does not count in ``m``."""
    valid = sorted((p, i) for i, p in enumerate(pvalues) if p == p)
    out = [float("nan")] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(valid):
        running = max(running, min(1.0, (len(valid) - rank) * p))
        out[i] = running
    return out


def effects_vs_baseline(summaries: Sequence[Summary]) -> list[Comparison]:
    """Every group against the cross-entropy group of its dataset, model and recipe, with
    Holm-adjusted p-values: the label-embedding modes (and their variants) form one family
    over all the summaries given (every task of the report), the other losses another."""
    found = []
    for s in summaries:
        if s.is_baseline:
            continue
        c = None if s.baseline is None else compare(s, s.baseline)
        if c is None:  # said, so that a family smaller than declared is seen
            why = "no cross-entropy group of its recipe" if s.baseline is None else \
                "fewer than 2 seeds on one side"
            log(f"warning: {s.dataset}/{s.model}/{s.mode} is left out of the effects: {why}")
            continue
        family = FAMILIES[0] if s.base_mode in LABEL_EMBEDDING_MODES else FAMILIES[1]
        found.append(replace(c, family=family))
    out = list(found)
    for family in FAMILIES:
        idx = [i for i, c in enumerate(found) if c.family == family]
        if idx:
            log(f"Holm family {family!r}: {sum(found[i].p == found[i].p for i in idx)} "
                "comparisons")
        for i, adjusted in zip(idx, holm([found[i].p for i in idx])):
            out[i] = replace(found[i], p_holm=adjusted)
    return out


def compare_label_embedding(summaries: Sequence[Summary]) -> list[Comparison]:
    """emb against every other group of its recipe, then each variant of emb or emb-fixed (a
    group with other settings, e.g. ``"emb beta=0.75"``) against the groups of its recipe that
    train without a label embedding."""
    out = []
    for ref in summaries:
        same = [s for s in summaries if s.recipe == ref.recipe and s is not ref]
        if ref.mode == "emb":
            others = same
        elif ref.base_mode in LABEL_EMBEDDING_MODES and ref.mode != ref.base_mode:
            others = [s for s in same if s.base_mode not in LABEL_EMBEDDING_MODES]
        else:
            continue
        out += [c for s in others if (c := compare(ref, s)) is not None]
    return out


def _points(c: Comparison, x: float) -> str:
    return f"{c.scale * x:+.2f}"


def _p(p: float | None) -> str:
    return "—" if p is None or p != p else f"{p:.3g}"


def format_comparisons(comparisons: Sequence[Comparison]) -> str:
    """Markdown table of :func:`compare_label_embedding`; empty when there is nothing."""
    if not comparisons:
        return ""
    lines = ["| dataset | model | mode | against | difference | 95% CI | test | t | p | n |",
             "|---|---|---|---|---:|---:|---|---:|---:|---:|"]
    for c in comparisons:
        lines.append(f"| {c.dataset} | {c.model} | {c.mode} | {c.other} | "
                     f"{_points(c, c.difference)} | {_points(c, c.low)} to {_points(c, c.high)} "
                     f"| {c.test} | {c.t:+.2f} | {_p(c.p)} | {c.n[0]} vs {c.n[1]} |")
    return "\n".join(lines) + "\n"


def format_effects(comparisons: Sequence[Comparison]) -> str:
    """Markdown table of :func:`effects_vs_baseline`; empty when there is nothing."""
    if not comparisons:
        return ""
    lines = ["| task | dataset | model | mode | measure | difference vs CE | 95% CI | test | p "
             "| Holm p | Holm family | n |",
             "|---|---|---|---|---|---:|---:|---|---:|---:|---|---:|"]
    for c in comparisons:
        unit = " (points)" if c.scale == 100 else ""
        better = "higher" if c.higher_is_better else "lower"
        lines.append(f"| {c.task} | {c.dataset} | {c.model} | {c.mode} | {c.metric}{unit}, "
                     f"{better} is better | {_points(c, c.difference)} | {_points(c, c.low)} to "
                     f"{_points(c, c.high)} | {c.test} | {_p(c.p)} | {_p(c.p_holm)} | "
                     f"{c.family} | {c.n[0]} vs {c.n[1]} |")
    return "\n".join(lines) + "\n"
