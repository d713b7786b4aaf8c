"""Progress: a tqdm bar on a terminal, plain log lines otherwise (CI, files, pipes)."""

from __future__ import annotations

import sys
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

__all__ = ["progress", "log"]


def progress(it: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
    """Wrap ``it`` in a bar only when stderr is a terminal."""
    if sys.stderr.isatty():
        return iter(tqdm(it, total=total, desc=desc, leave=False, dynamic_ncols=True))
    return iter(it)


def log(msg: str) -> None:
    """One plain line on stderr, flushed (readable in CI logs and under nohup)."""
    print(msg, file=sys.stderr, flush=True)
