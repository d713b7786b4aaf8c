"""Loading run directories (see :mod:`labelemb.runs.rundir`) and grouping them for reports.

A report compares runs that differ only in their seed: runs are grouped by ``(dataset, model,
mode)`` **and by their whole settings** (``config.json``'s ``settings``) except the seed and
the settings in :data:`NO_EFFECT` (where and how fast a run ran, not what it computed). Runs of
one mode that differ in anything else are separate groups, never pooled as seeds; their labels
name the settings that tell them apart. Each group is compared with the cross-entropy group
(mode ``baseline``, or ``ce`` in :mod:`labelemb.hf` runs) of the same dataset, model and
recipe (the settings minus :data:`LOSS_ONLY`, which only the other losses read).

What a run folder may be:

* a run of ``run_format`` 1 or 2 (:data:`READABLE_FORMATS`): ``config.json``,
  ``metrics.jsonl`` and, once finished, ``result.json``;
* a run of ``examples/hf_text_classification.py``, ``hf_causal_lm.py`` or
  ``hf_translation.py``: a ``result.json`` that names its
  ``primary_metric`` (and ``mode``, ``seed``, ``dataset``, ``model``, ``settings``), no log;
  the Transformers model folder inside it (a ``config.json`` with ``model_type``) is no run.

Policy for odd run directories:

* no ``result.json`` (still running, or killed): skipped with a warning on stderr, or a
  :class:`IncompleteRunError` with ``strict=True``;
* another ``run_format``: always a :class:`RunFormatError`, since its numbers may mean
  something else;
* a ``config.json`` or ``result.json`` that is not UTF-8 JSON holding an object: a
  ``ValueError`` naming the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..runs.progress import log
from ..runs.rundir import CONFIG, METRICS, RESULT, is_complete, read_json, read_metrics

__all__ = [
    "Run", "IncompleteRunError", "RunFormatError", "read_run", "load_runs", "expand_run_dirs",
    "group_runs", "GroupKey", "READABLE_FORMATS", "NO_EFFECT", "LOSS_ONLY", "BASELINES",
    "read_object",
]

#: ``(dataset, model, mode label, the group's settings as sorted JSON)``
GroupKey = tuple[str, str, str, str]

#: the run-folder formats a report reads: 1 (before the engines were unified) and 2
READABLE_FORMATS = (1, 2)
#: the cross-entropy modes every other mode is compared with (``ce``: :mod:`labelemb.hf`)
BASELINES = ("baseline", "ce")
#: settings that say where or how fast a run ran, or which of a study's runs a command
#: started, but not what it computed: runs differing only in these are seeds of one group.
#: (``chunk_size`` cuts the same loss into pieces: memory, not the result.)
NO_EFFECT = frozenset({
    "seed", "seeds", "mode", "modes", "out", "device", "threads", "resume", "overwrite",
    "data_dir", "eval_batch_size", "chunk_size", "no_summary", "progress",
})
#: settings only the other losses read: a cross-entropy run with another value of one of
#: these trained the same way, so it is still the comparison for them.
LOSS_ONLY = frozenset({
    "embedding", "smoothing", "ols_alpha", "beta", "tau", "alpha", "hinge", "warmup_steps",
    "soft_target_temperature", "chunked_loss", "label_dim", "loss_options",
})


class IncompleteRunError(ValueError):
    """A run directory without ``result.json`` (the run has not finished)."""


class RunFormatError(ValueError):
    """A run directory written by a labelemb with another run-directory format."""


@dataclass
class Run:
    """One finished run: its directory, settings, per-evaluation records and final result."""

    path: Path
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    result: dict[str, Any] = field(default_factory=dict)
    #: the mode label of its group (set by :func:`group_runs`)
    label: str = ""
    #: the settings that do not split groups: :data:`NO_EFFECT` and ``--ignore-setting``
    ignored: frozenset[str] = NO_EFFECT

    @property
    def task(self) -> str:
        return str(self.config.get("task") or self.result.get("task") or "classification")

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
        """The mode label of the run's group (``emb``, ``emb tau=1``): :func:`group_runs`
        names the settings that tell groups of one mode apart."""
        return self.label or self.base_mode

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    @property
    def settings(self) -> dict[str, Any]:
        """The settings that decide the run's numbers: all but :attr:`ignored`, and the
        changed loss options (``loss_options``; older runs record no other settings)."""
        found = self.config.get("settings")
        out = {k: v for k, v in (found if isinstance(found, dict) else {}).items()
               if k not in self.ignored}
        if self.config.get("loss_options"):
            out["loss_options"] = self.config["loss_options"]
        return out

    @property
    def recipe(self) -> str:
        """What a comparison with cross-entropy must share: the task, data, model and the
        settings but :data:`LOSS_ONLY`, as sorted JSON."""
        same = {k: v for k, v in self.settings.items() if k not in LOSS_ONLY}
        return json.dumps([self.task, self.dataset, self.model, same], sort_keys=True,
                          default=str)

    @property
    def calibration(self) -> dict[str, Any] | None:
        """``result.json``'s temperature scaling record (``temperature``, ``raw`` and
        ``calibrated`` measures of the test set), ``None`` for a run that did not record it."""
        found = self.result.get("calibration")
        return found if isinstance(found, dict) else None

    def series(self, name: str) -> list[float | None]:
        """The value of ``name`` at each evaluation (``None`` where missing)."""
        return [r.get(name) for r in self.metrics]


def read_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; a file that is not UTF-8 JSON holding an object is a
    ``ValueError`` naming it (a report must not read half a run)."""
    try:
        found = read_json(path)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); "
                         "the run folder is damaged") from None
    if not isinstance(found, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(found).__name__}; the run "
                         "folder is damaged")
    return found


def _check_format(path: Path, config: dict[str, Any]) -> None:
    fmt = config.get("run_format")
    if fmt not in READABLE_FORMATS:
        raise RunFormatError(
            f"{path / CONFIG} has run_format {fmt!r}, but this labelemb reads run_format "
            f"{', '.join(map(str, READABLE_FORMATS))} (written by labelemb "
            f"{config.get('labelemb_version', '?')}); report it with the labelemb version "
            "that wrote it")


def _result_only(path: Path) -> Run:
    """A run that is a ``result.json`` naming its primary metric (no config, no log)."""
    result = read_object(path / RESULT)
    config = {k: result.get(k) for k in ("task", "mode", "seed", "dataset", "model", "settings")}
    settings = config["settings"] if isinstance(config["settings"], dict) else {}
    config["loss_options"] = settings.get("loss_options")  # named in the mode's label
    return Run(path=path, config=config, metrics=[], result=result)


def read_run(path: str | os.PathLike, *, require_complete: bool = True) -> Run:
    """Read one run directory; raises on a missing/other-version/incomplete/damaged run."""
    path = Path(path)
    if not (path / CONFIG).is_file() and (path / RESULT).is_file():
        return _result_only(path)
    config = read_object(path / CONFIG)
    _check_format(path, config)
    if require_complete and not is_complete(path):
        raise IncompleteRunError(
            f"{path} is incomplete: no {RESULT} (the run is still going or was killed; "
            "finish it with `labelemb train ... --resume`)"
        )
    try:
        metrics = read_metrics(path / METRICS)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path / METRICS} is not UTF-8 text ({err.reason})") from None
    if not metrics:
        raise ValueError(f"{path / METRICS} holds no evaluations")
    result = read_object(path / RESULT) if is_complete(path) else {}
    return Run(path=path, config=config, metrics=metrics, result=result)


def _is_run_dir(d: Path) -> bool:
    """A run folder: a ``config.json`` that is not a Transformers model's (those have a
    ``model_type``), or a ``result.json`` that names its primary metric."""
    if (d / CONFIG).is_file():
        try:
            config = read_object(d / CONFIG)
        except ValueError:
            return True  # a damaged run: read_run names the file
        return "model_type" not in config or "run_format" in config
    if (d / RESULT).is_file():
        try:
            return "primary_metric" in read_object(d / RESULT)
        except ValueError:
            return True  # a damaged run: read_run names the file
    return False


def _iter_run_dirs(root: Path) -> list[Path]:
    """Run folders at or under ``root``, never one inside another (a run's own files)."""
    candidates = sorted({p.parent for name in (CONFIG, RESULT) for p in root.rglob(name)}
                        | ({root} if root.is_dir() else set()))
    found: list[Path] = []
    for d in candidates:
        if any(d.is_relative_to(f) for f in found):
            continue
        if _is_run_dir(d):
            found.append(d)
    return found


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
        found = _iter_run_dirs(p)
        if not found:
            raise ValueError(f"{p} holds no run directory (no {CONFIG} in it or below it)")
        for d in found:
            r = d.resolve()
            if r not in seen:
                seen.add(r)
                out.append(d)
    return out


def load_runs(paths: Iterable[str | os.PathLike], *, strict: bool = False,
              ignore: Iterable[str] = ()) -> list[Run]:
    """Load every run under ``paths`` (run directories or their parents).

    Incomplete runs are skipped with a warning, or raise with ``strict=True``; runs of another
    format always raise. Settings in ``ignore`` do not split groups (besides
    :data:`NO_EFFECT`). Raises ``ValueError`` when no finished run is left.
    """
    runs: list[Run] = []
    skipped = 0
    ignored = NO_EFFECT | frozenset(ignore)
    for d in expand_run_dirs(paths):
        try:
            runs.append(read_run(d))
            runs[-1].ignored = ignored
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


def _settings_key(run: Run) -> str:
    return json.dumps([run.task, run.settings], sort_keys=True, default=str)


def _varying(runs: list[Run]) -> set[str]:
    """The settings whose values differ between runs (``loss_options`` aside: its entries
    are named one by one)."""
    keys = {k for r in runs for k in r.settings} - {"loss_options"}
    return {k for k in keys if len({json.dumps(r.settings.get(k), sort_keys=True, default=str)
                                    for r in runs}) > 1}


def _label(run: Run, varying: set[str]) -> str:
    """``mode k=v ...``: the changed loss options and the settings in ``varying`` that the
    run set (``None`` is the default: a plain ``emb`` beside ``emb beta=0.75``)."""
    changed = dict(run.config.get("loss_options") or {})
    changed.update({k: run.settings[k] for k in varying if run.settings.get(k) is not None})
    return " ".join([run.base_mode, *(f"{k}={v}" for k, v in sorted(changed.items()))])


def group_runs(runs: Iterable[Run]) -> dict[GroupKey, list[Run]]:
    """Runs by ``(dataset, model, mode)`` and their whole settings (see the module docstring);
    each run's ``label`` is set to its group's mode label.

    Groups come in order of first appearance of their ``(dataset, model)``, cross-entropy
    first inside it, then the other modes in order of first appearance; runs inside a group by
    seed. Runs of one mode with differing settings are separate groups, and the settings that
    differ are logged.
    """
    runs = list(runs)
    by_mode: dict[tuple[str, str, str, str], list[Run]] = {}
    for run in runs:
        by_mode.setdefault((run.task, run.dataset, run.model, run.base_mode), []).append(run)
    for (_, dataset, model, mode), same in by_mode.items():
        varying = _varying(same)
        if varying:
            log(f"warning: {dataset}/{model}/{mode}: runs differ in {', '.join(sorted(varying))}; "
                "reported as separate rows, not pooled as seeds")
        for run in same:
            run.label = _label(run, varying)
    groups: dict[GroupKey, list[Run]] = {}
    for run in runs:
        groups.setdefault((run.dataset, run.model, run.mode, _settings_key(run)), []).append(run)
    pair_seen: dict[tuple[str, str], int] = {}
    for k in groups:
        pair_seen.setdefault(k[:2], len(pair_seen))
    mode_seen = {k: i for i, k in enumerate(groups)}

    def order(k: GroupKey) -> tuple:
        return (pair_seen[k[:2]], groups[k][0].base_mode not in BASELINES, mode_seen[k])

    def by_seed(r: Run) -> tuple:
        # Integer seeds in numeric order (2 before 10), anything else after, by text.
        s = r.seed
        is_int = isinstance(s, int) and not isinstance(s, bool)
        return (not is_int, s if is_int else 0, str(s), str(r.path))

    for members in groups.values():  # a seed twice in a group would count as two seeds
        seen: dict[Any, Path] = {}
        for run in members:
            if run.seed in seen:
                raise ValueError(f"seed {run.seed} of {run.label} is in {seen[run.seed]} and in "
                                 f"{run.path} with the same settings: report one of them")
            seen[run.seed] = run.path
    return {k: sorted(groups[k], key=by_seed) for k in sorted(groups, key=order)}
