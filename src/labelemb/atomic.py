"""Files that are either wholly old or wholly new: the one way labelemb writes a file.

The bottom of the package (it imports nothing from labelemb), so the method layer
(:func:`labelemb.embedding.save_embedding`) and :mod:`labelemb.runs` share one rule.

A write goes to ``NAME.tmp`` beside the target, is fsynced, renamed over the target, and the
folder is fsynced so the rename itself survives a power cut. A kill before the rename leaves a
stale ``NAME.tmp``, which :func:`remove_stale_temp_files` clears when the folder is next opened.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

__all__ = ["TEMP_SUFFIX", "atomic_write", "atomic_write_text", "fsync_dir",
           "remove_stale_temp_files"]

TEMP_SUFFIX = ".tmp"


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be
    opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the rename is still atomic
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(temp_path)``, then move the finished file onto ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TEMP_SUFFIX)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed or interrupted write leaves no temp file behind
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a UTF-8 text file so readers never see a partial one."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the ``*.tmp`` files a killed writer left in ``folder``; returns them."""
    folder = Path(folder)
    stale = sorted(folder.glob("*" + TEMP_SUFFIX)) if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
