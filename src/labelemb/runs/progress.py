"""Progress: a tqdm bar on a terminal, plain log lines otherwise (CI, files, pipes); from rank
0 alone in a ``torchrun`` run (the other ranks would repeat every line)."""

from __future__ import annotations

import sys
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

from .ranks import is_main_process

T = TypeVar("T")

__all__ = ["progress", "log"]


def progress(it: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
    """Wrap ``it`` in a bar only when stderr is a terminal (and on rank 0)."""
    if sys.stderr.isatty() and is_main_process():
        return iter(tqdm(it, total=total, desc=desc, leave=False, dynamic_ncols=True))
    return iter(it)


def log(msg: str) -> None:
    """One plain line on stderr, flushed (readable in CI logs and under nohup); rank 0 only."""
    if is_main_process() and sys.stderr.isatty():
        tqdm.write(msg, file=sys.stderr)  # above a bar that is drawn, not through it
    elif is_main_process():
        print(msg, file=sys.stderr, flush=True)
