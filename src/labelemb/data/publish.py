"""Folders that appear whole or not at all: how ``data prepare`` and ``data download`` write.

``data prepare`` writes a dataset into a hidden temporary folder beside ``--out``
(``.<name>.partial-XXXX``) and renames it into place only once every file is written and
flushed, so an interrupted prepare leaves nothing at ``--out`` that looks complete (a killed one
leaves the hidden ``.partial`` folder, safe to delete). It never writes into a folder that
holds anything unless told to (``--overwrite``), and even then only over files that a
``data prepare`` writes: a folder with other files in it is never replaced.

``data download`` creates its folder only for as long as it is used: a download that fails
before any file landed removes the folders it created (:func:`created_folders`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ..atomic import fsync_dir

__all__ = ["PREPARED_FILES", "check_out", "publish_folder", "created_folders"]

#: every file a ``data prepare`` writes (fortunes: ``.jsonl`` and ``labels.json``; bible-en-es:
#: ``.en``/``.es``; bible-lm: ``.txt``): ``--overwrite`` replaces a folder holding only these
PREPARED_FILES = frozenset({f"{split}.{ext}" for split in ("train", "dev", "test")
                            for ext in ("jsonl", "en", "es", "txt")} | {"labels.json"})


def check_out(out: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse ``out`` unless it is absent, an empty folder, or (``overwrite``) a folder that
    holds only :data:`PREPARED_FILES`. Returns it; checked before any data is read."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: a file is in the way; choose another folder")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if entries and not overwrite:
        raise ValueError(f"--out {out} is not empty (it holds {_some(entries)}); choose an "
                         "empty or new folder, or pass --overwrite to replace a prepared set")
    foreign = [n for n in entries if n not in PREPARED_FILES or not (out / n).is_file()]
    if foreign:
        raise ValueError(f"--out {out} holds {_some(foreign)}, which no `labelemb data prepare` "
                         "writes; --overwrite replaces only a prepared set: move them away or "
                         "choose another folder")
    return out


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def publish_folder(out: str | os.PathLike, write: Callable[[Path], None], overwrite: bool
                   ) -> Path:
    """Call ``write(folder)`` on a fresh temporary folder beside ``out``, then put it in
    ``out``'s place (:func:`check_out` decides whether ``out`` may be replaced, checked again
    just before the rename). On any failure, or Ctrl-C, the temporary folder is removed and
    ``out`` is as it was."""
    check_out(out, overwrite)
    target = Path(os.path.abspath(out))  # "." or "a/..": a folder with a name and a parent
    with created_folders(target.parent):
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        try:
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would become the set's mode
            write(tmp)
            for f in tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            fsync_dir(tmp)
            check_out(out, overwrite)  # nothing else wrote there meanwhile
            _replace(target, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return Path(out)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace(out: Path, new: Path) -> None:
    """Rename ``new`` onto ``out``; a non-empty ``out`` is first moved aside, then deleted."""
    if out.is_dir() and any(out.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(new, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, out)  # over an empty folder too: one atomic rename
    fsync_dir(out.parent)


@contextlib.contextmanager
def created_folders(folder: str | os.PathLike) -> Iterator[Path]:
    """Create ``folder`` (and missing parents); if the block fails, remove those that this
    call created and that are still empty, innermost first."""
    folder = Path(folder)
    missing = []
    p = folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        for p in missing:  # innermost first
            with contextlib.suppress(OSError):
                p.rmdir()  # only when empty: a file that did land is kept
        raise
