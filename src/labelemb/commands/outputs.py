"""The output folder of the commands that write one (``report --out``, ``inspect --out``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["make_out_folder"]


def make_out_folder(out: Path, what: str, flag: str = "--out") -> Path:
    """Make (or reuse) the folder ``out`` before anything is written or logged, so a bad path
    is one error naming ``flag``, not a FileExistsError deep in the writing.

    ``what`` says what the folder receives, for the message. Raises ``ValueError`` when a file
    has that name, and the ``OSError`` of mkdir (a file among the parents, no permission) with
    a message naming the flag.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"{flag} {out} is a file; {what} go into a folder: choose another "
                         f"{flag} (or remove the file)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise type(err)(err.errno, f"{flag} {out}: cannot make the folder ({err.strerror}); "
                                   f"choose another {flag}") from None
    return out
