"""Calibration across seeds: the raw and temperature-scaled measures of each mode, and the
reliability diagram (one panel per mode), from the ``calibration`` entry of ``result.json``
(:func:`labelemb.models.classifier.calibrate`)."""

from __future__ import annotations

from typing import Any, Sequence

from matplotlib.figure import Figure

from .curves import DPI
from .summary import Summary, mean_std

__all__ = ["MEASURES", "format_calibration_table", "plot_reliability", "pooled_bins"]

#: (key in result.json, column title); every value a fraction printed in %, NLL as is.
MEASURES = (("ece", "ECE (%)"), ("adaptive_ece", "adaptive ECE (%)"), ("nll", "NLL"),
            ("brier", "Brier"))


def _calibrations(s: Summary) -> list[dict[str, Any]] | None:
    found = [c for r in s.runs if (c := r.calibration) is not None]
    return found if len(found) == s.n else None  # all seeds or none


def _cell(values: list[float], key: str) -> str:
    scale, digits = (100, 2) if "ece" in key else (1, 4)
    mean, std = mean_std([scale * v for v in values])
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def format_calibration_table(summaries: Sequence[Summary]) -> str:
    """Markdown: per mode, each measure raw -> temperature-scaled (mean ± std over seeds), and
    the fitted temperature. Empty when no run recorded calibration."""
    header = ["dataset", "model", "mode", "T", *(f"{t} raw → calibrated" for _, t in MEASURES)]
    rows = []
    for s in summaries:
        cals = _calibrations(s)
        if cals is None:
            continue
        cells = [_cell([c["temperature"] for c in cals], "T")]
        for key, _ in MEASURES:
            cells.append(_cell([c["raw"][key] for c in cals], key) + " → "
                         + _cell([c["calibrated"][key] for c in cals], key))
        rows.append([s.dataset, s.model, s.mode, *cells])
    if not rows:
        return ""
    lines = ["| " + " | ".join(r) + " |" for r in [header, *rows]]
    lines.insert(1, "|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|")
    return "\n".join(lines) + "\n"


def pooled_bins(calibrations: list[dict[str, Any]], which: str) -> dict[str, list[float]]:
    """The reliability bins of several seeds pooled: counts added, confidence and accuracy
    averaged with the counts as weights."""
    bins = [c[which]["reliability"] for c in calibrations]
    count = [sum(col) for col in zip(*(b["count"] for b in bins))]
    out: dict[str, list[float]] = {"count": [float(n) for n in count]}
    for key in ("confidence", "accuracy"):
        sums = [sum(n * v for n, v in zip(ns, vs))
                for ns, vs in zip(zip(*(b["count"] for b in bins)), zip(*(b[key] for b in bins)))]
        out[key] = [s / n if n else float("nan") for s, n in zip(sums, count)]
    return out


def plot_reliability(summaries: Sequence[Summary]) -> Figure | None:
    """One panel per mode: test-set accuracy against confidence per bin, pooled over seeds,
    before (raw) and after temperature scaling; the diagonal is perfect calibration. ``None``
    when no mode recorded calibration."""
    groups = [(s, c) for s in summaries if (c := _calibrations(s)) is not None]
    if not groups:
        return None
    fig = Figure(figsize=(2.6 * len(groups), 2.9), dpi=DPI)
    for i, (s, cals) in enumerate(groups):
        ax = fig.add_subplot(1, len(groups), i + 1)
        ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--")
        for which, style in (("raw", "o-"), ("calibrated", "s-")):
            b = pooled_bins(cals, which)
            kept = [(c, a) for c, a, n in zip(b["confidence"], b["accuracy"], b["count"]) if n]
            ax.plot(*zip(*kept), style, markersize=3, linewidth=1.2, label=which)
        ax.set_title(f"{s.mode} (n={s.n})", fontsize=9)
        ax.set_xlim(0, 1), ax.set_ylim(0, 1)
        ax.set_xlabel("confidence", fontsize=8)
        if i == 0:
            ax.set_ylabel("accuracy", fontsize=8)
            ax.legend(frameon=False, fontsize=7, loc="upper left")
        ax.tick_params(labelsize=7)
    fig.suptitle(f"reliability · {summaries[0].dataset} · {summaries[0].model} · test set",
                 fontsize=9)
    fig.tight_layout()
    return fig
