"""The result table (the paper's Table 2) and the convergence table, from run directories.

Every number is computed from the runs' ``metrics.jsonl`` (errors there are fractions; the
table prints percent):

* **test error (%)**: the test error at each run's final epoch, mean ± sample std over seeds
  (``ddof=1``, like the paper's ±); with one seed only the mean and ``(n=1)``.
* **error reduction**: ``mean(mode) - mean(baseline)`` in percentage points, and in brackets
  the relative reduction ``(mean(baseline) - mean(mode)) / mean(baseline)`` (↓ better,
  ↑ worse), against the ``baseline`` mode of the same dataset and model.
* **best-dev test error (%)**: where the runs logged a ``dev_error``, the test error at the
  epoch with the lowest dev error (first such epoch on ties), mean ± std over seeds.
* **ECE (%)**: the final epoch's ``test_ece`` (expected calibration error of the main head,
  15 bins), mean ± std over seeds; **calibrated ECE (%)**: the same after temperature scaling
  fitted on dev (``result.json``'s ``calibration``), ``—`` for runs that did not record it.
* **time/epoch (s)**: the mean of ``seconds`` over all epochs of all seeds.
* **epochs**: epochs per run (a range when seeds differ); **n**: number of seeds.

Sequence-to-sequence runs (``task == "seq2seq"``) get a second table of scores (BLEU, ROUGE;
0-100, higher is better) read from ``result.json`` (the test set decoded by the best-dev
model), with the change against ``baseline`` and the best dev score from ``metrics.jsonl``.
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..runs.progress import log
from .runs import Run, group_runs, load_runs

__all__ = [
    "ModeSummary", "summarize", "format_table", "build_table", "mean_std",
    "epochs_to_reach", "format_convergence", "BASELINE", "ScoreSummary", "summarize_scores",
    "format_score_table", "is_seq2seq",
]

BASELINE = "baseline"


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``ddof=1``); std is ``None`` for one value."""
    if not values:
        raise ValueError("mean_std needs at least one value")
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


@dataclass
class ModeSummary:
    """The numbers of one ``(dataset, model, mode)`` group; errors as fractions."""

    dataset: str
    model: str
    mode: str
    runs: list[Run]
    final_test_error: list[float]
    best_dev_test_error: list[float] | None
    test_ece: list[float] | None
    calibrated_ece: list[float] | None
    seconds_per_epoch: float | None
    epochs: list[int]
    #: mean test error per epoch over seeds, for epochs 1..min(epochs) that all seeds have
    mean_curve: list[float]
    baseline: "ModeSummary | None" = None

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def base_mode(self) -> str:
        """The training mode of every run in the group, without the changed loss options."""
        return self.runs[0].base_mode

    @property
    def mean_error(self) -> float:
        return statistics.fmean(self.final_test_error)

    @property
    def abs_reduction(self) -> float | None:
        """``mean(mode) - mean(baseline)`` (fraction; negative = fewer errors)."""
        if self.baseline is None or self.baseline is self:
            return None
        return self.mean_error - self.baseline.mean_error

    @property
    def rel_reduction(self) -> float | None:
        """``(mean(baseline) - mean(mode)) / mean(baseline)`` (positive = fewer errors)."""
        if self.baseline is None or self.baseline is self or self.baseline.mean_error == 0:
            return None
        return (self.baseline.mean_error - self.mean_error) / self.baseline.mean_error


def _final_value(run: Run, key: str) -> float | None:
    v = run.metrics[-1].get(key)
    return None if v is None else float(v)


def _best_dev_test(run: Run) -> float | None:
    best: tuple[float, float] | None = None
    for r in run.metrics:
        dev, test = r.get("dev_error"), r.get("test_error")
        if dev is None or test is None:
            continue
        if best is None or dev < best[0]:  # strict: the first epoch wins ties
            best = (float(dev), float(test))
    return None if best is None else best[1]


def _summarize_group(key: tuple[str, str, str], runs: list[Run]) -> ModeSummary:
    finals: list[float] = []
    for run in runs:
        v = _final_value(run, "test_error")
        if v is None:
            raise ValueError(f"{run.path}: the last record of metrics.jsonl has no test_error")
        finals.append(v)
    devs = [_best_dev_test(r) for r in runs]
    eces = [_final_value(r, "test_ece") for r in runs]
    calibrated = [r.calibration["calibrated"]["ece"] if r.calibration else None for r in runs]
    secs = [float(s) for r in runs for s in r.series("seconds") if s is not None]
    epochs = [len(r.metrics) for r in runs]
    common = min(epochs)
    curves = [[float(v) if v is not None else math.nan for v in r.series("test_error")[:common]]
              for r in runs]
    mean_curve = [statistics.fmean(col) for col in zip(*curves)]
    return ModeSummary(
        dataset=key[0], model=key[1], mode=key[2], runs=runs,
        final_test_error=finals,
        # All seeds or none: a mean over a subset of seeds would not be comparable.
        best_dev_test_error=None if any(d is None for d in devs) else devs,  # type: ignore[misc]
        test_ece=None if any(e is None for e in eces) else eces,  # type: ignore[misc]
        calibrated_ece=None if any(e is None for e in calibrated) else calibrated,  # type: ignore[misc]
        seconds_per_epoch=statistics.fmean(secs) if secs else None,
        epochs=epochs,
        mean_curve=mean_curve,
    )


def summarize(runs: Iterable[Run]) -> list[ModeSummary]:
    """One :class:`ModeSummary` per ``(dataset, model, mode)``, each linked to its baseline.

    Runs without ``test_error`` in their records (not classification runs) are left out with
    a warning.
    """
    usable = []
    for run in runs:
        if is_seq2seq(run):
            continue  # see summarize_scores
        if not run.metrics or "test_error" not in run.metrics[-1]:
            log(f"warning: {run.path} logs no test_error (task {run.config.get('task')!r}); "
                "left out of the table")
            continue
        usable.append(run)
    summaries = [_summarize_group(k, g) for k, g in group_runs(usable).items()]
    baselines = {(s.dataset, s.model): s for s in summaries if s.mode == BASELINE}
    for s in summaries:
        s.baseline = baselines.get((s.dataset, s.model))
        if len(set(s.epochs)) > 1:
            log(f"warning: {s.dataset}/{s.model}/{s.mode}: seeds ran different numbers of "
                f"epochs {sorted(set(s.epochs))}; final errors are not at the same epoch")
    return summaries


def _pct(mean: float, std: float | None, n: int) -> str:
    if std is None:
        return f"{100 * mean:.2f} (n={n})"
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def _pct_list(values: list[float] | None) -> str:
    if values is None:
        return "—"
    mean, std = mean_std(values)
    return _pct(mean, std, len(values))


def _reduction(s: ModeSummary) -> str:
    if s.mode == BASELINE:
        return ""
    if s.baseline is None:
        return "no baseline"
    absolute = _no_negative_zero(100 * s.abs_reduction, 2)  # type: ignore[operator]
    rel = s.rel_reduction
    if rel is None:
        return f"{absolute:+.2f}"
    arrow = "↓" if rel >= 0 else "↑"
    return f"{absolute:+.2f} ({arrow}{100 * abs(rel):.1f}%)"


def _no_negative_zero(x: float, decimals: int) -> float:
    """``x``, but 0.0 where it would print as ``-0.00``."""
    return 0.0 if round(x, decimals) == 0 else x


def _epochs(epochs: list[int]) -> str:
    lo, hi = min(epochs), max(epochs)
    return str(lo) if lo == hi else f"{lo}–{hi}"


HEADER = ("dataset", "model", "mode", "test error (%)", "error reduction",
          "best-dev test error (%)", "ECE (%)", "calibrated ECE (%)", "time/epoch (s)",
          "epochs", "n")


def format_table(summaries: Sequence[ModeSummary]) -> str:
    """The Markdown table, one row per ``(dataset, model, mode)``."""
    rows = [HEADER]
    for s in summaries:
        mean, std = mean_std(s.final_test_error)
        rows.append((
            s.dataset, s.model, s.mode, _pct(mean, std, s.n), _reduction(s),
            _pct_list(s.best_dev_test_error), _pct_list(s.test_ece), _pct_list(s.calibrated_ece),
            "—" if s.seconds_per_epoch is None else f"{s.seconds_per_epoch:.2f}",
            _epochs(s.epochs), str(s.n),
        ))
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("---" if i < 3 else "---:" for i in range(len(HEADER))) + "|")
    return "\n".join(lines) + "\n"


def build_table(run_dirs: Iterable[str | os.PathLike], *, strict: bool = False) -> str:
    """The Markdown result table of the runs in ``run_dirs`` (run directories or parents).

    Incomplete runs are skipped with a warning (``strict=True``: raise). See the module
    docstring for what each column means. Sequence-to-sequence runs add a score table.
    """
    runs = load_runs([Path(d) for d in run_dirs], strict=strict)
    parts = []
    summaries = summarize(runs)
    if summaries:
        parts.append(format_table(summaries))
    scores = summarize_scores(runs)
    if scores:
        parts.append(format_score_table(scores))
    if not parts:
        raise ValueError("none of the runs has test errors or scores to report")
    return "\n".join(parts)


# --------------------------------------------------------------------------- convergence


def epochs_to_reach(curve: Sequence[float], target: float) -> int | None:
    """First 1-based epoch at which ``curve`` (errors) is at or below ``target``, else None."""
    for i, v in enumerate(curve):
        if v <= target:
            return i + 1
    return None


def format_convergence(summaries: Sequence[ModeSummary]) -> str:
    """Markdown table: epochs each mode's mean curve needs to reach its baseline's final mean
    test error (the paper's "faster convergence", measured)."""
    rows = [("dataset", "model", "mode", "baseline final error (%)", "epochs to reach it",
             "speed-up vs baseline")]
    for s in summaries:
        if s.baseline is None:
            continue
        target = s.baseline.mean_error
        e = epochs_to_reach(s.mean_curve, target)
        b = epochs_to_reach(s.baseline.mean_curve, target)
        reached = f"{e}" if e is not None else f"not within {len(s.mean_curve)}"
        speed = f"{b / e:.2f}×" if (e is not None and b is not None) else "—"
        rows.append((s.dataset, s.model, s.mode, f"{100 * target:.2f}", reached, speed))
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "|---|---|---|---:|---:|---:|")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- seq2seq scores

#: result.json keys that start with ``test_`` but are no score
_NOT_SCORES = {"test_pairs", "test_decode_seconds"}


def is_seq2seq(run: Run) -> bool:
    return run.config.get("task") == "seq2seq"


@dataclass
class ScoreSummary:
    """Scores (0-100, higher is better) of one ``(dataset, model, mode)`` group."""

    dataset: str
    model: str
    mode: str
    runs: list[Run]
    #: the model-selection metric (``bleu``, ``rougeL``, ...)
    select: str
    #: ``{"bleu": [per seed]}`` from result.json's ``test_*``
    test: dict[str, list[float]]
    #: best dev score of the selection metric per seed, from metrics.jsonl
    best_dev: list[float] | None
    seconds_per_eval: float | None
    updates: list[int]
    baseline: "ScoreSummary | None" = None

    @property
    def n(self) -> int:
        return len(self.runs)

    def delta(self) -> float | None:
        """``mean(mode) - mean(baseline)`` of the test selection metric."""
        if self.baseline is None or self.baseline is self:
            return None
        a, b = self.test.get(self.select), self.baseline.test.get(self.select)
        if not a or not b:
            return None
        return statistics.fmean(a) - statistics.fmean(b)


def _select_metric(run: Run) -> str:
    settings = run.config.get("settings") or {}
    if isinstance(settings, dict) and settings.get("select"):
        return str(settings["select"])
    for k in run.result:
        if k.startswith("best_dev_"):
            return k[len("best_dev_"):]
    return "bleu"


def summarize_scores(runs: Iterable[Run]) -> list[ScoreSummary]:
    """One :class:`ScoreSummary` per ``(dataset, model, mode)`` of the seq2seq runs."""
    out = []
    for key, group in group_runs([r for r in runs if is_seq2seq(r)]).items():
        select = _select_metric(group[0])
        names = sorted({k[5:] for r in group for k in r.result
                        if k.startswith("test_") and k not in _NOT_SCORES
                        and isinstance(r.result[k], (int, float))})
        # a score every seed has; a mean over some seeds would not compare
        test = {m: [float(r.result[f"test_{m}"]) for r in group] for m in names
                if all(isinstance(r.result.get(f"test_{m}"), (int, float)) for r in group)}
        devs = []
        for r in group:
            vals = [float(v) for v in r.series(f"dev_{select}") if v is not None]
            devs.append(max(vals) if vals else None)
        secs = [float(v) for r in group for v in r.series("seconds") if v is not None]
        out.append(ScoreSummary(
            dataset=key[0], model=key[1], mode=key[2], runs=group, select=select, test=test,
            best_dev=None if any(d is None for d in devs) else devs,  # type: ignore[misc]
            seconds_per_eval=statistics.fmean(secs) if secs else None,
            updates=[int(r.result.get("steps") or (r.metrics[-1].get("step") or 0))
                     for r in group],
        ))
    baselines = {(s.dataset, s.model): s for s in out if s.mode == BASELINE}
    for s in out:
        s.baseline = baselines.get((s.dataset, s.model))
    return out


def _score(values: list[float] | None) -> str:
    if not values:
        return "—"
    mean, std = mean_std(values)
    return f"{mean:.2f} (n={len(values)})" if std is None else f"{mean:.2f} ± {std:.2f}"


def format_score_table(summaries: Sequence[ScoreSummary]) -> str:
    """Markdown table of seq2seq scores (like the paper's Tables 3 and 4)."""
    metrics = sorted({m for s in summaries for m in s.test})
    header = ("dataset", "model", "mode", *[f"test {m}" for m in metrics],
              "change vs baseline", "best dev score", "time/eval (s)", "updates", "n")
    rows = [header]
    for s in summaries:
        d = s.delta()
        change = "" if s.mode == BASELINE else (
            "no baseline" if d is None else f"{_no_negative_zero(d, 2):+.2f} {s.select}")
        dev = _score(s.best_dev)
        rows.append((
            s.dataset, s.model, s.mode, *[_score(s.test.get(m)) for m in metrics], change,
            dev if dev == "—" else f"{dev} {s.select}",
            "—" if s.seconds_per_eval is None else f"{s.seconds_per_eval:.1f}",
            _epochs(s.updates), str(s.n),
        ))
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|")
    return "\n".join(lines) + "\n"
