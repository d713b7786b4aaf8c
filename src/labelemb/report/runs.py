"""Loading run directories (see :mod:`labelemb.runs.rundir`) and grouping them for reports.

A report compares runs that differ only in ``mode`` and ``seed``: runs are grouped by
``(dataset, model, mode)``, and modes of the same ``(dataset, model)`` are compared with the
``baseline`` mode of that pair.

Policy for odd run directories:

* no ``result.json`` (still running, or killed): skipped with a warning on stderr, or a
  :class:`IncompleteRunError` with ``strict=True``;
* ``run_format`` in ``config.json`` other than :data:`~labelemb.runs.rundir.RUN_FORMAT`:
  always a :class:`RunFormatError`, since its numbers may mean something else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..runs.progress import log
from ..runs.rundir import (CONFIG, METRICS, RESULT, RUN_FORMAT, is_complete, iter_run_dirs,
                             read_json, read_metrics)

__all__ = [
    "Run", "IncompleteRunError", "RunFormatError", "load_run", "load_runs", "expand_run_dirs",
    "group_runs", "GroupKey",
]

#: ``(dataset, model, mode)``
GroupKey = tuple[str, str, str]


class IncompleteRunError(ValueError):
    """A run directory without ``result.json`` (the run has not finished)."""


class RunFormatError(ValueError):
    """A run directory written by a labelemb with another run-directory format."""


@dataclass
class Run:
    """One finished run: its directory, settings, per-epoch records and final result."""

    path: Path
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def dataset(self) -> str:
        return str(self.config.get("dataset", "?"))

    @property
    def model(self) -> str:
        return str(self.config.get("model", "?"))

    @property
    def base_mode(self) -> str:
        """The training mode alone (``emb``), without the changed loss options."""
        return str(self.config.get("mode", "?"))

    @property
    def mode(self) -> str:
        """The training mode, then the loss options the run changed from its preset, as
        ``config.json``'s ``loss_options`` records them (``emb tau=1``): runs of one mode with
        other settings are grouped, compared and drawn apart."""
        changed = self.config.get("loss_options") or {}
        return " ".join([self.base_mode, *(f"{k}={v}" for k, v in sorted(changed.items()))])

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    @property
    def key(self) -> GroupKey:
        return (self.dataset, self.model, self.mode)

    @property
    def calibration(self) -> dict[str, Any] | None:
        """``result.json``'s temperature scaling record (``temperature``, ``raw`` and
        ``calibrated`` measures of the test set), ``None`` for a run that did not record it."""
        found = self.result.get("calibration")
        return found if isinstance(found, dict) else None

    def series(self, name: str) -> list[float | None]:
        """The value of ``name`` at each evaluation (``None`` where missing)."""
        return [r.get(name) for r in self.metrics]


def load_run(path: str | os.PathLike, *, require_complete: bool = True) -> Run:
    """Read one run directory; raises on a missing/other-version/incomplete run."""
    path = Path(path)
    config = read_json(path / CONFIG)
    if not isinstance(config, dict):
        raise ValueError(f"{path / CONFIG}: expected a JSON object, got {type(config).__name__}")
    fmt = config.get("run_format")
    if fmt != RUN_FORMAT:
        raise RunFormatError(
            f"{path / CONFIG} has run_format {fmt!r}, but this labelemb reads run_format "
            f"{RUN_FORMAT} (written by labelemb {config.get('labelemb_version', '?')}); "
            "report it with the labelemb version that wrote it"
        )
    if require_complete and not is_complete(path):
        raise IncompleteRunError(
            f"{path} is incomplete: no {RESULT} (the run is still going or was killed; "
            "finish it with `labelemb train ... --resume`)"
        )
    metrics = read_metrics(path / METRICS)
    if not metrics:
        raise ValueError(f"{path / METRICS} holds no evaluations")
    result = read_json(path / RESULT) if is_complete(path) else {}
    return Run(path=path, config=config, metrics=metrics,
               result=result if isinstance(result, dict) else {})


def expand_run_dirs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Run directories named by ``paths``: each is a run directory or a parent of some.

    Order is kept, duplicates dropped. A path with no run directory under it is an error.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise FileNotFoundError(f"no such run directory: {p}")
        found = list(iter_run_dirs(p))
        if not found:
            raise ValueError(f"{p} holds no run directory (no {CONFIG} in it or below it)")
        for d in found:
            r = d.resolve()
            if r not in seen:
                seen.add(r)
                out.append(d)
    return out


def load_runs(paths: Iterable[str | os.PathLike], *, strict: bool = False) -> list[Run]:
    """Load every run under ``paths`` (run directories or their parents).

    Incomplete runs are skipped with a warning, or raise with ``strict=True``; runs of another
    format always raise. Raises ``ValueError`` when no finished run is left.
    """
    runs: list[Run] = []
    skipped = 0
    for d in expand_run_dirs(paths):
        try:
            runs.append(load_run(d))
        except IncompleteRunError as err:
            if strict:
                raise
            skipped += 1
            log(f"warning: skipped, {err}")
    if not runs:
        raise ValueError(
            "no finished run to report" + (f" ({skipped} incomplete skipped)" if skipped else "")
        )
    return runs


def group_runs(runs: Iterable[Run]) -> dict[GroupKey, list[Run]]:
    """Runs by ``(dataset, model, mode)``.

    Groups come in order of first appearance of their ``(dataset, model)``, ``baseline`` first
    inside it, then the other modes in order of first appearance; runs inside a group by seed.
    """
    groups: dict[GroupKey, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.key, []).append(run)
    pair_seen: dict[tuple[str, str], int] = {}
    for k in groups:
        pair_seen.setdefault(k[:2], len(pair_seen))
    mode_seen = {k: i for i, k in enumerate(groups)}

    def order(k: GroupKey) -> tuple:
        return (pair_seen[k[:2]], k[2] != "baseline", mode_seen[k])

    def by_seed(r: Run) -> tuple:
        # Integer seeds in numeric order (2 before 10), anything else after, by text.
        s = r.seed
        is_int = isinstance(s, int) and not isinstance(s, bool)
        return (not is_int, s if is_int else 0, str(s), str(r.path))

    return {k: sorted(groups[k], key=by_seed) for k in sorted(groups, key=order)}
