"""The on-disk layout of one run: what training writes and reports read.

A run directory holds

* ``config.json``: every setting of the run, plus ``run_format``, ``labelemb_version``,
  ``task`` (``"classification"`` or ``"seq2seq"``), ``mode``, ``model``, ``dataset``, ``seed``
  and ``class_names`` (classification).
* ``metrics.jsonl``: one JSON object per evaluation (per epoch for classification), appended
  and flushed as it happens. Errors are fractions in [0, 1]. Classification keys: ``epoch``
  (1-based), ``train_loss``, ``terms`` (dict of loss terms), ``train_error``, ``dev_error``
  (or null), ``test_error``, ``test_loss``, ``test_ece``, ``seconds`` (training time of the
  epoch), ``lr``. Seq2seq keys (one record per evaluation): ``step``, ``epoch``,
  ``train_loss``, ``terms``, ``dev_bleu`` or ``dev_rouge1``/``dev_rouge2``/``dev_rougeL``,
  ``dev_loss``, ``seconds`` (training time since the previous evaluation), ``total_seconds``,
  ``lr``, ``best_step``.
* ``embedding.safetensors``: the label embedding (modes that have one), with class names.
* ``checkpoint.pt``: the latest state for ``--resume``.
* ``result.json``: written last; its presence means the run finished.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from .checkpoint import atomic_write_text

__all__ = [
    "RUN_FORMAT", "CONFIG", "METRICS", "EMBEDDING", "CHECKPOINT", "RESULT",
    "write_json", "read_json", "MetricsWriter", "read_metrics", "is_complete", "iter_run_dirs",
]

RUN_FORMAT = 1
CONFIG = "config.json"
METRICS = "metrics.jsonl"
EMBEDDING = "embedding.safetensors"
CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing {path.name} in {path.parent}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


class MetricsWriter:
    """Appends one JSON line per record and flushes it to disk at once.

    ``truncate_after(n)`` drops records past ``n`` evaluations, used on resume so a run killed
    after logging but before checkpointing does not log an epoch twice.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def truncate_after(self, n: int) -> None:
        records = read_metrics(self.path) if self.path.exists() else []
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in records[:n]))

    def write(self, record: dict[str, Any]) -> None:
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
    return (Path(run_dir) / RESULT).is_file()


def iter_run_dirs(root: str | os.PathLike) -> Iterator[Path]:
    """Every directory under ``root`` (itself included) that holds a ``config.json``."""
    root = Path(root)
    if (root / CONFIG).is_file():
        yield root
    for p in sorted(root.rglob(CONFIG)):
        if p.parent != root:
            yield p.parent
