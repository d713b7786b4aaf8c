"""The on-disk layout of one run (what training writes and reports read) and its one owner.

A run directory (``OUT/<mode>/seed-<k>/``, run format :data:`RUN_FORMAT`) holds

* ``config.json``: ``run_format``, ``labelemb_version``, ``task`` (``"classification"`` or
  ``"seq2seq"``), ``mode``, ``seed``, ``settings`` (every setting of the run: what
  ``--resume`` compares), and the task's description of its model and data (what
  ``--resume`` checks is unchanged: class names and split sizes, vocabularies).
* ``metrics.jsonl``: one JSON object per evaluation, appended and fsynced as it happens.
  Every task's records have ``step`` (updates done), ``epoch`` (epochs done; a fraction
  mid-epoch), ``train_loss``, ``terms``, ``lr``, ``seconds`` (training since the previous
  record), ``eval_seconds``, ``best_step``, and ``soft_ce_weight`` for a label embedding
  loss; then the task's scores (errors as fractions; BLEU and ROUGE in 0-100).
* ``embedding.safetensors``: the label embedding (modes that learn one).
* ``checkpoint.pt``: the latest state for ``--resume``; ``best.pt``: the weights of the best
  dev evaluation.
* ``result.json``: written last; its presence means the run finished. It names its
  ``primary_metric`` and whether it is ``higher_is_better``.

The order in which training writes them, and how a resume repairs a kill between two of
them, is :mod:`labelemb.engine.loop`'s. :class:`RunDir` is the only code that creates, resumes
or overwrites a run directory, and every file goes through the atomic writes of
:mod:`labelemb.atomic`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..atomic import atomic_write_text, remove_stale_temp_files
from .checkpoint import load_checkpoint
from .progress import log

__all__ = [
    "RUN_FORMAT", "CONFIG", "METRICS", "EMBEDDING", "CHECKPOINT", "BEST", "RESULT",
    "write_json", "read_json", "MetricsWriter", "read_metrics", "is_complete", "iter_run_dirs",
    "RunDir", "changed_settings", "make_folder", "find_embedding",
]

RUN_FORMAT = 2
CONFIG = "config.json"
METRICS = "metrics.jsonl"
EMBEDDING = "embedding.safetensors"
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
RESULT = "result.json"


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented UTF-8 JSON, atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """The JSON in ``path``; a missing or malformed file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing {path.name} in {path.parent}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text: {err}") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


class MetricsWriter:
    """Appends one JSON line per record and flushes it to disk at once.

    ``truncate_after(n)`` drops records past ``n`` evaluations: on resume, the log is cut back
    to the records its checkpoint counts.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def truncate_after(self, n: int) -> None:
        """Keep the first ``n`` records (none: an empty log)."""
        records = read_metrics(self.path) if self.path.exists() else []
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in records[:n]))

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line and fsync it."""
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl``; a torn last line (killed mid-write) is dropped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing {path.name} in {path.parent}")
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}:{i + 1} is not valid JSON: {err}") from err
    return records


def is_complete(run_dir: str | os.PathLike) -> bool:
    """Whether the run in ``run_dir`` finished (its ``result.json`` exists)."""
    return (Path(run_dir) / RESULT).is_file()


def iter_run_dirs(root: str | os.PathLike) -> Iterator[Path]:
    """Every directory under ``root`` (itself included) that holds a ``config.json``."""
    root = Path(root)
    if (root / CONFIG).is_file():
        yield root
    for p in sorted(root.rglob(CONFIG)):
        if p.parent != root:
            yield p.parent


def find_embedding(template: str, seed: int) -> Path:
    """The ``embedding.safetensors`` that ``template`` names for ``seed`` (``{seed}`` in it is
    replaced): the file itself, or a run folder, its ``emb/seed-<k>/`` or its ``seed-<k>/``."""
    p = Path(template.replace("{seed}", str(seed)))
    if p.is_dir():
        for cand in (p / EMBEDDING, p / "emb" / f"seed-{seed}" / EMBEDDING,
                     p / f"seed-{seed}" / EMBEDDING):
            if cand.is_file():
                return cand
        raise FileNotFoundError(f"--embedding: no {EMBEDDING} in {p} (looked in {p}, "
                                f"{p}/emb/seed-{seed}, {p}/seed-{seed})")
    if not p.is_file():
        raise FileNotFoundError(f"--embedding: no file {p}; give an earlier emb run's "
                                f"{EMBEDDING} or its output folder")
    return p


# --------------------------------------------------------------------------- the owner


def changed_settings(saved: dict[str, Any], new: dict[str, Any],
                     may_change: Iterable[str]) -> list[str]:
    """The settings that differ between ``saved`` and ``new``, except those in ``may_change``."""
    free = set(may_change)
    return sorted(k for k in set(saved) | set(new)
                  if k not in free and saved.get(k) != new.get(k))


def make_folder(path: Path) -> None:
    """``mkdir -p`` whose failure says which path is in the way and what to do."""
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(
                    f"{path}: cannot make the run folder, {parent} is a file; choose another --out")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".labelemb-write-test.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise type(err)(err.errno, f"{path}: cannot write the run folder ({err.strerror}); "
                        "choose another --out") from None


@dataclass
class RunDir:
    """One run's folder: its files, and the one rule for fresh, resumed and overwritten runs.

    Attributes:
        path: the folder.
        checkpoint: the state to continue from (``None``: the run starts from scratch).
        writer: whether this process writes files (rank 0 of a distributed run).
    """

    path: Path
    checkpoint: dict[str, Any] | None = None
    writer: bool = True
    extra_files: tuple[str, ...] = ()

    @classmethod
    def open(cls, path: str | os.PathLike, settings: dict[str, Any], *, may_change: Iterable[str],
             resume: bool = False, overwrite: bool = False, extra_files: Iterable[str] = (),
             writer: bool = True, map_location: Any = "cpu") -> "RunDir":
        """Open ``path`` for training with ``settings`` (the resolved config as a plain dict).

        * no run there yet: a fresh run (``--resume`` with nothing to resume starts one too);
        * a run there, neither flag: refused, the folder is left as it is;
        * ``resume``: the saved settings must equal ``settings`` except ``may_change`` (how
          long it trains, where it runs), finished runs included; the checkpoint is loaded;
        * ``overwrite``: the run's files (the common ones and ``extra_files``) are deleted.

        Stale ``*.tmp`` files of a killed writer are removed. Nothing is written here: the
        folder is made, and old files deleted, only after every check passed.
        """
        path = Path(path)
        if resume and overwrite:
            raise ValueError("--resume and --overwrite exclude each other: choose one")
        run = cls(path, writer=writer, extra_files=tuple(extra_files))
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"{path} is a file, not a run folder; choose another --out")
        if writer:
            remove_stale_temp_files(path)
        has_run = (path / CONFIG).is_file()
        if has_run and not (resume or overwrite):
            raise ValueError(f"{path} already holds a run; pass --resume to continue it or "
                             "--overwrite to start again")
        if has_run and resume:
            saved = read_json(path / CONFIG)
            if not isinstance(saved, dict) or saved.get("run_format") != RUN_FORMAT:
                found = saved.get("run_format", 0) if isinstance(saved, dict) else "?"
                raise ValueError(f"{path}: a run folder of format {found} (an older labelemb; "
                                 f"this one writes format {RUN_FORMAT}): it cannot be resumed; "
                                 "use --overwrite or another --out")
            diff = changed_settings(saved["settings"], settings, may_change)
            if diff:
                shown = ", ".join(f"{k}: {saved['settings'].get(k)!r} -> {settings.get(k)!r}"
                                  for k in diff)
                raise ValueError(f"{path}: cannot resume with changed settings ({shown}); put "
                                 "them back, or use another --out or --overwrite")
            if (path / CHECKPOINT).is_file():
                run.checkpoint = load_checkpoint(path / CHECKPOINT, map_location=map_location)
        if resume and run.checkpoint is None and not is_complete(path):
            log(f"{path}: no checkpoint to resume, starting the run")
        return run

    def start(self, config: dict[str, Any]) -> None:
        """Make the folder and write ``config.json`` (rank 0 only). A fresh run first deletes
        the files of the run it replaces; a resumed one drops ``result.json``, since the run
        is unfinished again until it ends."""
        if not self.writer:
            return
        make_folder(self.path)
        if self.checkpoint is None:
            for name in (CONFIG, METRICS, EMBEDDING, CHECKPOINT, BEST, RESULT,
                         *self.extra_files):
                (self.path / name).unlink(missing_ok=True)
        else:
            (self.path / RESULT).unlink(missing_ok=True)
        write_json(self.path / CONFIG, config)

    def check_same_data(self, config: dict[str, Any], keys: Iterable[str]) -> None:
        """A run resumes on the data it started with: ``config.json``'s ``keys`` (the task's
        vocabularies, class names, split sizes) must equal ``config``'s."""
        saved = read_json(self.path / CONFIG)
        changed = [k for k in keys if saved.get(k) != config.get(k)]
        if changed:
            raise ValueError(f"{self.path}: the data changed since the run started "
                             f"({', '.join(changed)}); resume it on its own data, or use "
                             "--overwrite or another --out")

    def finished_result(self) -> dict[str, Any] | None:
        """The ``result.json`` of a finished run (``None`` if unfinished): enough to skip it
        on ``--resume``, also where its checkpoints were not kept (a study keeps only the
        small files)."""
        if not is_complete(self.path):
            return None
        result = read_json(self.path / RESULT)
        if not isinstance(result, dict) or not {"steps", "epochs"} <= set(result):
            raise ValueError(f"{self.path / RESULT} is not a labelemb result; use --overwrite")
        return result

    @property
    def resumed(self) -> bool:
        """Whether training continues from a checkpoint."""
        return self.checkpoint is not None

    def __truediv__(self, name: str) -> Path:
        """``run / "metrics.jsonl"``: a file of the run."""
        return self.path / name
