"""The forest plot: every effect against cross-entropy, one row each, with its 95 % interval.

Each row is one comparison of :func:`~labelemb.report.significance.effects_vs_baseline`
(task, dataset and model, mode), drawn as the **improvement** over cross-entropy in points of
the task's primary measure: percentage points for errors and accuracies, BLEU or ROUGE points
for scores, signed so that right of the zero line is better for every task (a lower error, a
higher accuracy or BLEU). The bar is the 95 % confidence interval of the difference of means
(paired or Welch, as the comparison's test); the text beside it gives the difference, the
interval and the Holm-adjusted p. Filled markers: Holm p < 0.05.
"""

from __future__ import annotations

from typing import Sequence

from matplotlib.figure import Figure

from .curves import DPI
from .significance import FAMILIES, Comparison

__all__ = ["plot_forest", "row_label", "improvement"]

#: Holm-adjusted p under which a marker is filled
ALPHA = 0.05


def row_label(c: Comparison) -> str:
    """``dataset · model: mode (measure)``."""
    return f"{c.dataset} · {c.model}: {c.mode} ({c.metric.removeprefix('test_')})"


def improvement(c: Comparison) -> tuple[float, float, float]:
    """``(estimate, low, high)`` of the improvement over cross-entropy, in points."""
    ends = sorted((c.sign * c.scale * c.low, c.sign * c.scale * c.high))
    return c.sign * c.scale * c.difference, ends[0], ends[1]


def plot_forest(comparisons: Sequence[Comparison], title: str = "") -> Figure:
    """One row per comparison, top to bottom in the given order."""
    if not comparisons:
        raise ValueError("a forest plot needs at least one comparison against cross-entropy")
    fig = Figure(figsize=(9.0, 1.1 + 0.42 * len(comparisons)), dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    colours = {FAMILIES[0]: "tab:blue", FAMILIES[1]: "tab:grey"}
    ys = list(range(len(comparisons)))[::-1]
    for y, c in zip(ys, comparisons):
        est, low, high = improvement(c)
        colour = colours.get(c.family, "black")
        ax.plot([low, high], [y, y], color=colour, linewidth=1.6)
        significant = c.p_holm is not None and c.p_holm < ALPHA
        ax.plot([est], [y], "o", color=colour, markersize=6,
                markerfacecolor=colour if significant else "white")
        p = "—" if c.p_holm is None or c.p_holm != c.p_holm else f"{c.p_holm:.3g}"
        ax.annotate(f"{est:+.2f} [{low:+.2f}, {high:+.2f}]  Holm p {p}", xy=(1.01, y),
                    xycoords=("axes fraction", "data"), va="center", fontsize=8)
    ax.axvline(0.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_yticks(ys, [row_label(c) for c in comparisons], fontsize=8)
    ax.set_ylim(-0.7, len(comparisons) - 0.3)
    ax.set_xlabel("improvement over cross-entropy, points of the primary measure "
                  "(right = better), 95% CI", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(title or "filled: Holm p < 0.05; blue: label embedding, grey: other losses",
                 fontsize=9)
    fig.tight_layout()
    fig.subplots_adjust(right=0.72)
    return fig
