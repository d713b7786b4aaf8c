"""The result tables (the paper's Tables 2-4) and the convergence table, from run directories.

Classification runs with a log (``metrics.jsonl``; errors there are fractions, the table
prints percent):

* **test error (%)**: the test error at each run's final epoch, mean ± sample std over seeds
  (``ddof=1``, like the paper's ±); with one seed only the mean and ``(n=1)``.
* **error reduction**: ``mean(mode) - mean(baseline)`` in percentage points, and in brackets
  the relative reduction ``(mean(baseline) - mean(mode)) / mean(baseline)`` (↓ better,
  ↑ worse), against the cross-entropy group of the same dataset, model and recipe.
* **best-dev test error (%)**: where the runs logged a ``dev_error``, the test error at the
  epoch with the lowest dev error (first such epoch on ties), mean ± std over seeds.
* **ECE (%)**: the final epoch's ``test_ece`` (expected calibration error of the main head,
  15 bins), mean ± std over seeds; **calibrated ECE (%)**: the same after temperature scaling
  fitted on dev (``result.json``'s ``calibration``), ``—`` for runs that did not record it.
* **time/epoch (s)**: the mean of ``seconds`` over all epochs of all seeds.
* **epochs**: epochs per run (a range when seeds differ); **n**: number of seeds.

Sequence-to-sequence runs get a table of scores (BLEU, ROUGE; 0-100, higher is better) read
from ``result.json`` (the test set decoded by the best-dev model), with the change against
cross-entropy and the best dev score from ``metrics.jsonl``. Runs that are only a
``result.json`` get a table of their primary measure.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Iterable, Sequence

from .runs import load_runs
from .summary import Summary, mean_std, scale_of, summarize

__all__ = [
    "format_table", "build_table", "epochs_to_reach", "format_convergence",
    "format_score_table", "format_primary_table", "by_kind", "markdown_table", "format_settings",
]


def by_kind(summaries: Iterable[Summary]) -> dict[str, list[Summary]]:
    """The summaries by the table they go into: ``errors`` (classification runs with a log),
    ``scores`` (seq2seq), ``primary`` (runs that are a ``result.json`` only)."""
    out: dict[str, list[Summary]] = {"errors": [], "scores": [], "primary": []}
    for s in summaries:
        if s.task == "seq2seq":
            out["scores"].append(s)
        elif all(r.metrics and "test_error" in r.metrics[-1] for r in s.runs):
            out["errors"].append(s)
        else:
            out["primary"].append(s)
    return out


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], left: int = 3) -> str:
    """A Markdown table, the first ``left`` columns left-aligned, the rest right-aligned."""
    lines = ["| " + " | ".join(r) + " |" for r in [header, *rows]]
    lines.insert(1, "|" + "|".join("---" if i < left else "---:" for i in range(len(header)))
                 + "|")
    return "\n".join(lines) + "\n"


def _pct(mean: float, std: float | None, n: int) -> str:
    if std is None:
        return f"{100 * mean:.2f} (n={n})"
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def _pct_list(values: list[float] | None) -> str:
    if values is None:
        return "—"
    mean, std = mean_std(values)
    return _pct(mean, std, len(values))


def _no_negative_zero(x: float, decimals: int) -> float:
    """``x``, but 0.0 where it would print as ``-0.00``."""
    return 0.0 if round(x, decimals) == 0 else x


def _reduction(s: Summary) -> str:
    if s.is_baseline:
        return ""
    if s.baseline is None:
        return "no baseline"
    mine, base = statistics.fmean(s.final_test_error), statistics.fmean(s.baseline.final_test_error)
    absolute = _no_negative_zero(100 * (mine - base), 2)
    if base == 0:
        return f"{absolute:+.2f}"
    rel = (base - mine) / base
    arrow = "↓" if rel >= 0 else "↑"
    return f"{absolute:+.2f} ({arrow}{100 * abs(rel):.1f}%)"


def _epochs(epochs: list[int]) -> str:
    lo, hi = min(epochs), max(epochs)
    return str(lo) if lo == hi else f"{lo}–{hi}"


def _best_dev_test(run) -> float | None:
    best: tuple[float, float] | None = None
    for r in run.metrics:
        dev, test = r.get("dev_error"), r.get("test_error")
        if dev is None or test is None:
            continue
        if best is None or dev < best[0]:  # strict: the first epoch wins ties
            best = (float(dev), float(test))
    return None if best is None else best[1]


def _all_or_none(values: list[float | None]) -> list[float] | None:
    """``values`` when every seed has one, else ``None``: a mean over some seeds would not
    compare with the other rows."""
    return None if any(v is None for v in values) else [float(v) for v in values if v is not None]


HEADER = ("dataset", "model", "mode", "test error (%)", "error reduction",
          "best-dev test error (%)", "ECE (%)", "calibrated ECE (%)", "time/epoch (s)",
          "epochs", "n")


def format_table(summaries: Sequence[Summary]) -> str:
    """The Markdown table of classification groups, one row per group."""
    rows = []
    for s in summaries:
        mean, std = mean_std(s.final_test_error)
        ece = _all_or_none([r.metrics[-1].get("test_ece") for r in s.runs])
        calibrated = _all_or_none([r.calibration["calibrated"]["ece"] if r.calibration else None
                                   for r in s.runs])
        secs = [float(v) for r in s.runs for v in r.series("seconds") if v is not None]
        rows.append((
            s.dataset, s.model, s.mode, _pct(mean, std, s.n), _reduction(s),
            _pct_list(_all_or_none([_best_dev_test(r) for r in s.runs])), _pct_list(ece),
            _pct_list(calibrated), f"{statistics.fmean(secs):.2f}" if secs else "—",
            _epochs(s.epochs), str(s.n),
        ))
    return markdown_table(HEADER, rows)


def build_table(run_dirs: Iterable[str | os.PathLike], *, strict: bool = False) -> str:
    """The Markdown result tables of the runs in ``run_dirs`` (run directories or parents).

    Incomplete runs are skipped with a warning (``strict=True``: raise). See the module
    docstring for what each column means.
    """
    kinds = by_kind(summarize(load_runs([Path(d) for d in run_dirs], strict=strict)))
    formats = {"errors": format_table, "scores": format_score_table,
               "primary": format_primary_table}
    return "\n".join(formats[k](group) for k, group in kinds.items() if group)


# --------------------------------------------------------------------------- convergence


def epochs_to_reach(curve: Sequence[float], target: float) -> int | None:
    """First 1-based epoch at which ``curve`` (errors) is at or below ``target``, else None."""
    for i, v in enumerate(curve):
        if v <= target:
            return i + 1
    return None


def format_convergence(summaries: Sequence[Summary]) -> str:
    """Markdown table: epochs each mode's mean curve needs to reach its baseline's final mean
    test error (the paper's "faster convergence", measured)."""
    rows = []
    for s in summaries:
        if s.baseline is None:
            continue
        target = statistics.fmean(s.baseline.final_test_error)
        e = epochs_to_reach(s.mean_curve, target)
        b = epochs_to_reach(s.baseline.mean_curve, target)
        reached = f"{e}" if e is not None else f"not within {len(s.mean_curve)}"
        speed = f"{b / e:.2f}×" if (e is not None and b is not None) else "—"
        rows.append((s.dataset, s.model, s.mode, f"{100 * target:.2f}", reached, speed))
    return markdown_table(("dataset", "model", "mode", "baseline final error (%)",
                           "epochs to reach it", "speed-up vs baseline"), rows)


# --------------------------------------------------------------------------- seq2seq scores

#: result.json keys that start with ``test_`` but are no score
_NOT_SCORES = {"test_pairs", "test_decode_seconds"}


def _score(values: list[float] | None) -> str:
    if not values:
        return "—"
    mean, std = mean_std(values)
    return f"{mean:.2f} (n={len(values)})" if std is None else f"{mean:.2f} ± {std:.2f}"


def _test_scores(s: Summary) -> dict[str, list[float]]:
    """``{"bleu": [per seed]}`` of result.json's ``test_*`` numbers every seed has."""
    names = {k[5:] for r in s.runs for k in r.result
             if k.startswith("test_") and k not in _NOT_SCORES}
    return {m: [float(r.result[f"test_{m}"]) for r in s.runs] for m in sorted(names)
            if all(isinstance(r.result.get(f"test_{m}"), (int, float)) for r in s.runs)}


def format_score_table(summaries: Sequence[Summary]) -> str:
    """Markdown table of seq2seq scores (like the paper's Tables 3 and 4)."""
    tests = [_test_scores(s) for s in summaries]
    metrics = sorted({m for t in tests for m in t})
    header = ("dataset", "model", "mode", *[f"test {m}" for m in metrics],
              "change vs baseline", "best dev score", "time/eval (s)", "updates", "n")
    rows = []
    for s, test in zip(summaries, tests):
        select = s.metric.removeprefix("test_")
        d = s.delta()
        change = "" if s.is_baseline else (
            "no baseline" if d is None else f"{_no_negative_zero(d, 2):+.2f} {select}")
        best = [max((float(v) for v in r.series(f"dev_{select}") if v is not None), default=None)
                for r in s.runs]
        dev = _score(_all_or_none(best))
        secs = [float(v) for r in s.runs for v in r.series("seconds") if v is not None]
        updates = [int(r.result.get("steps") or (r.metrics[-1].get("step") or 0)) for r in s.runs]
        rows.append((
            s.dataset, s.model, s.mode, *[_score(test.get(m)) for m in metrics], change,
            dev if dev == "—" else f"{dev} {select}",
            f"{statistics.fmean(secs):.1f}" if secs else "—", _epochs(updates), str(s.n),
        ))
    return markdown_table(header, rows)


def format_primary_table(summaries: Sequence[Summary]) -> str:
    """Markdown table of runs known by their primary measure alone (``result.json``)."""
    rows = []
    for s in summaries:
        k = scale_of(s.metric)
        if not s.values:
            rows.append((s.dataset, s.model, s.mode, s.metric, "—", "", str(s.n)))
            continue
        mean, std = mean_std([k * v for v in s.values])
        d = s.delta()
        change = "" if s.is_baseline else ("no baseline" if d is None else
                                           f"{_no_negative_zero(k * d, 2):+.2f}")
        cell = f"{mean:.2f}" + (f" (n={s.n})" if std is None else f" ± {std:.2f}")
        unit = " (%)" if k == 100 else ""
        rows.append((s.dataset, s.model, s.mode, f"{s.metric}{unit}", cell, change, str(s.n)))
    return markdown_table(("dataset", "model", "mode", "measure", "mean ± std",
                           "change vs baseline", "n"), rows, left=4)


# --------------------------------------------------------------------------- settings


def _shown(value: object) -> str:
    return "—" if value is None else str(value).replace("|", "/")


def format_settings(summaries: Sequence[Summary]) -> str:
    """Markdown: for each ``(dataset, model)`` whose groups differ in settings (those that
    decide the numbers, :data:`~labelemb.report.runs.NO_EFFECT` aside), one row per group
    with the value of each setting that differs. Empty when every group of a pair shares
    its settings but the mode."""
    pairs: dict[tuple[str, str], list[Summary]] = {}
    for s in summaries:
        pairs.setdefault((s.dataset, s.model), []).append(s)
    parts = []
    for (dataset, model), group in pairs.items():
        settings = [s.runs[0].settings for s in group]
        keys = sorted(k for k in {k for st in settings for k in st}
                      if len({repr(st.get(k)) for st in settings}) > 1)
        if not keys:
            continue
        rows = [(dataset, model, s.mode, *[_shown(st.get(k)) for k in keys])
                for s, st in zip(group, settings)]
        parts.append(markdown_table(("dataset", "model", "mode", *keys), rows, left=3 + len(keys)))
    return "\n".join(parts)
