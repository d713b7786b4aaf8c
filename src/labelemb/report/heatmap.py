"""Heatmaps of a learned label embedding, as in the paper's Figure 3.

Row ``i`` is ``softmax(e_i)``, the soft target of label ``i`` over *all* classes, shown on the
selected columns only: for a subset the rows do not sum to 1, the values are the real soft-target
weights. Class names label both axes.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402

__all__ = ["plot_heatmap", "DPI"]

DPI = 100


def plot_heatmap(probs: Tensor, row_names: Sequence[str], col_names: Sequence[str] | None = None,
                 title: str = "", annotate: bool | None = None,
                 hide_diagonal: bool = False) -> Figure:
    """Figure of ``probs`` (``(R, K)``: rows of ``softmax(E)`` restricted to the shown columns).

    ``annotate`` writes each value in its cell (default: when there are at most 15 columns).
    ``hide_diagonal`` blanks the cells where the row and column name agree, so the colour
    scale spans the off-diagonal similarities (the diagonal dominates a trained embedding).
    The figure grows with the number of classes so names stay legible.
    """
    col_names = list(row_names) if col_names is None else list(col_names)
    R, K = probs.shape
    if len(row_names) != R or len(col_names) != K:
        raise ValueError(f"probs is {R}x{K} but got {len(row_names)} row and "
                         f"{len(col_names)} column names")
    longest = max((len(n) for n in [*row_names, *col_names]), default=1)
    label_in = min(0.09 * longest, 3.0)  # room for the names, in inches
    cell = 0.42 if K <= 30 else 0.22
    width = max(5.5, K * cell + label_in + 1.6)
    height = max(4.5, R * cell + label_in + 0.8)
    fig = Figure(figsize=(width, height), dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    data = probs.detach().float().cpu().numpy().copy()
    if hide_diagonal:
        for r, name in enumerate(row_names):
            for c, other in enumerate(col_names):
                if name == other:
                    data[r, c] = np.nan  # drawn blank and left out of the colour scale
    im = ax.imshow(data, cmap="viridis", aspect="equal", interpolation="nearest")
    fontsize = 9 if K <= 30 else 6
    ax.set_xticks(range(K), labels=col_names, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(R), labels=list(row_names), fontsize=fontsize)
    ax.set_xlabel("label j")
    ax.set_ylabel("label i  (row i: softmax(e_i))")
    if title:
        ax.set_title(title, fontsize=10)
    if annotate is None:
        annotate = K <= 15
    if annotate:
        hi = np.nanmax(data) if np.isfinite(data).any() else 0
        for r in range(R):
            for c in range(K):
                v = data[r, c]
                if np.isnan(v):
                    continue
                ax.text(c, r, f"{v:.2g}", ha="center", va="center", fontsize=7,
                        color="black" if v > 0.6 * hi else "white")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig
