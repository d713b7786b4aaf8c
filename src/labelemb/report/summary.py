"""One summary per group of runs, for both tasks: the task's primary measure over seeds.

The primary measure of a run is ``result.json``'s ``primary_metric`` (a key of
``result.json``; ``higher_is_better`` says its direction). Runs of ``run_format`` 1 do not
name it: a classification run's is ``test_error`` at its final epoch (lower is better), a
seq2seq run's is ``test_<select>`` (BLEU or ROUGE of the best-dev model, higher is better).
Measures that are fractions (``*_error``, ``*_accuracy``, ``*_ece``) are shown in percent.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..runs.progress import log
from ..runs.rundir import RESULT
from .runs import BASELINES, Run, group_runs

__all__ = ["Summary", "summarize", "primary_metric", "scale_of", "mean_std"]

#: name endings of measures kept as fractions (printed and plotted in percent)
_FRACTIONS = ("_error", "_accuracy", "_ece")
#: name parts of measures where lower is better, for a run that names no direction
_LOWER_IS_BETTER = ("error", "loss", "ece", "nll", "brier", "perplexity")


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``ddof=1``); std is ``None`` for one value."""
    if not values:
        raise ValueError("mean_std needs at least one value")
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def scale_of(metric: str) -> float:
    """100 for a fraction (shown in percent, differences in points), else 1."""
    return 100.0 if metric.endswith(_FRACTIONS) else 1.0


def primary_metric(run: Run) -> tuple[str, bool]:
    """``(key of result.json, higher_is_better)`` of the run's primary measure."""
    named = run.result.get("primary_metric")
    if isinstance(named, str):
        higher = run.result.get("higher_is_better")
        if not isinstance(higher, bool):
            higher = not any(part in named for part in _LOWER_IS_BETTER)
        return named, higher
    if run.task == "seq2seq":
        select = (run.config.get("settings") or {}).get("select")
        if not select:
            select = next((k[len("best_dev_"):] for k in run.result
                           if k.startswith("best_dev_")), "bleu")
        return f"test_{select}", True
    return "test_error", False


def _value(run: Run, metric: str) -> float | None:
    """The run's ``metric`` from ``result.json``; a format-1 classification run's final
    ``test_error`` from its log when its ``result.json`` lacks it; ``None`` when the run has
    none (a seq2seq run trained without a test set)."""
    found = run.result.get(metric)
    if found is None and metric == "test_error" and run.metrics:
        found = run.metrics[-1].get("test_error")
    if found is None:
        return None
    if isinstance(found, bool) or not isinstance(found, (int, float)):
        raise ValueError(f"{run.path / RESULT}: {metric!r} (the run's primary measure) is "
                         f"{found!r}, not a number; the run folder is damaged")
    return float(found)


@dataclass
class Summary:
    """One group of runs (one mode, one set of settings, several seeds) and its primary
    measure per seed, in the measure's own unit (fractions for errors)."""

    dataset: str
    model: str
    #: the mode label: the mode, then the settings that tell its groups apart
    mode: str
    runs: list[Run]
    metric: str
    higher_is_better: bool
    #: per run; empty when a run lacks the measure (the group is shown, not compared)
    values: list[float]
    #: the cross-entropy group of the same dataset, model and recipe (itself for one)
    baseline: "Summary | None" = None

    @property
    def task(self) -> str:
        return self.runs[0].task

    @property
    def base_mode(self) -> str:
        """The training mode of every run in the group, without the changed settings."""
        return self.runs[0].base_mode

    @property
    def is_baseline(self) -> bool:
        return self.base_mode in BASELINES

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def seeds(self) -> list:
        return [r.seed for r in self.runs]

    @property
    def recipe(self) -> str:
        return self.runs[0].recipe

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def epochs(self) -> list[int]:
        """Evaluations logged per run (epochs of a classification run)."""
        return [len(r.metrics) for r in self.runs]

    @property
    def final_test_error(self) -> list[float]:
        """The final epoch's test error per seed (classification runs with a log)."""
        return [float(r.metrics[-1]["test_error"]) for r in self.runs]

    @property
    def mean_curve(self) -> list[float]:
        """Mean test error per epoch over seeds, for the epochs every seed has."""
        cols = zip(*[r.series("test_error")[:min(self.epochs)] for r in self.runs])
        return [statistics.fmean(c) if None not in c else float("nan") for c in cols]

    def delta(self) -> float | None:
        """``mean(mode) - mean(cross-entropy)`` of the primary measure; ``None`` without one."""
        if self.baseline is None or self.baseline is self or not (
                self.values and self.baseline.values):
            return None
        return self.mean - self.baseline.mean


def _summarize_group(runs: list[Run]) -> Summary:
    first = runs[0]
    metric, higher = primary_metric(first)
    for run in runs[1:]:
        if primary_metric(run) != (metric, higher):
            raise ValueError(f"{run.path} measures {primary_metric(run)[0]!r}, {first.path} "
                             f"{metric!r}: runs of one group must share their primary measure")
    values = [_value(r, metric) for r in runs]
    missing = [r.path for r, v in zip(runs, values) if v is None]
    if missing:
        log(f"warning: {missing[0] / RESULT} has no {metric!r}"
            + (f" (nor {len(missing) - 1} more runs of its group)" if len(missing) > 1 else "")
            + f"; {first.mode} is left out of the effects against cross-entropy")
    return Summary(dataset=first.dataset, model=first.model, mode=first.mode, runs=runs,
                   metric=metric, higher_is_better=higher,
                   values=[] if missing else [v for v in values if v is not None])


def summarize(runs: Iterable[Run]) -> list[Summary]:
    """One :class:`Summary` per group (:func:`~labelemb.report.runs.group_runs`), each linked
    to the cross-entropy group of its dataset, model and recipe."""
    summaries = [_summarize_group(g) for g in group_runs(runs).values()]
    baselines: dict[str, Summary] = {}
    for s in summaries:
        if s.is_baseline:
            baselines.setdefault(s.recipe, s)
    for s in summaries:
        s.baseline = baselines.get(s.recipe)
        if len(set(s.epochs)) > 1 and s.task != "seq2seq":
            log(f"warning: {s.dataset}/{s.model}/{s.mode}: seeds ran different numbers of "
                f"epochs {sorted(set(s.epochs))}; final errors are not at the same epoch")
    return summaries
