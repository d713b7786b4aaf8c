"""Error curves like the paper's Figure 2: every seed thin and light, the mean bold, one colour
per mode, one figure per ``(dataset, model)``."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .summary import Summary  # noqa: E402

__all__ = ["plot_error_curves", "plot_score_curves", "save_figure", "curve_file_stem",
           "FIGSIZE", "DPI"]

FIGSIZE = (6.4, 4.0)  # inches
DPI = 100  # PNG pixels = FIGSIZE * DPI = 640 x 400


def curve_file_stem(dataset: str, model: str) -> str:
    """A file-system-safe name for the figure of ``(dataset, model)``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"curves_{dataset}_{model}")


def plot_error_curves(summaries: Sequence[Summary], *, metric: str = "test_error") -> Figure:
    """One figure: ``metric`` (percent) against epoch for the modes in ``summaries`` (which
    should share dataset and model). Seeds: thin, light; mean over seeds: bold."""
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, s in enumerate(summaries):
        colour = colours[i % len(colours)]
        for run in s.runs:
            ys = [100 * v if v is not None else float("nan") for v in run.series(metric)]
            xs = [r.get("epoch", j + 1) for j, r in enumerate(run.metrics)]
            ax.plot(xs, ys, color=colour, alpha=0.25, linewidth=0.8)
        if metric == "test_error":
            mean = s.mean_curve
        else:  # mean over seeds for the epochs every seed has
            cols = zip(*[run.series(metric)[: min(s.epochs)] for run in s.runs])
            mean = [sum(c) / len(c) if None not in c else float("nan") for c in cols]
        ax.plot(range(1, len(mean) + 1), [100 * v for v in mean], color=colour, linewidth=2.2,
                label=f"{s.mode} (mean of {s.n})")
    if summaries:
        ax.set_title(f"{summaries[0].dataset} · {summaries[0].model}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric.replace("_", " ") + " (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def plot_score_curves(summaries: Sequence[Summary]) -> Figure:
    """Seq2seq: the dev score of the selection metric against update step, seeds thin, the
    mean over seeds (per evaluation, over the evaluations every seed has) bold."""
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    select = summaries[0].metric.removeprefix("test_") if summaries else "score"
    for i, s in enumerate(summaries):
        colour = colours[i % len(colours)]
        key = f"dev_{s.metric.removeprefix('test_')}"
        for run in s.runs:
            xs = [r.get("step", j + 1) for j, r in enumerate(run.metrics)]
            ys = [v if v is not None else float("nan") for v in run.series(key)]
            ax.plot(xs, ys, color=colour, alpha=0.25, linewidth=0.8)
        common = min(len(r.metrics) for r in s.runs)
        cols = list(zip(*[r.series(key)[:common] for r in s.runs]))
        mean = [sum(c) / len(c) if None not in c else float("nan") for c in cols]
        xs = [r.get("step", j + 1) for j, r in enumerate(s.runs[0].metrics[:common])]
        ax.plot(xs, mean, color=colour, linewidth=2.2, label=f"{s.mode} (mean of {s.n})")
    if summaries:
        ax.set_title(f"{summaries[0].dataset} · {summaries[0].model}")
    ax.set_xlabel("update")
    ax.set_ylabel(f"dev {select}")
    ax.grid(True, alpha=0.3)
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, stem: str | os.PathLike, formats: Sequence[str] = ("png", "svg")
                ) -> list[Path]:
    """Write ``fig`` as ``stem.<fmt>`` for each format; returns the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    # SVG text stays text (editable, searchable in a paper's figure), not glyph outlines.
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        for fmt in formats:
            path = stem.with_name(stem.name + "." + fmt)
            fig.savefig(path, format=fmt, dpi=fig.dpi)
            paths.append(path)
    return paths
