"""LCSTS, the Chinese short-text summarisation corpus (Hu et al., 2015; paper Table 3).

The release has three files (``PART_I.txt`` train, ``PART_II.txt`` dev, ``PART_III.txt`` test,
directly in ``data_dir`` or in ``data_dir/DATA``) in an XML-like text format::

    <doc id=0>
        <human_label>5</human_label>          (PART_II and PART_III only: score 1-5)
        <summary>
            修改后的立法法全文公布
        </summary>
        <short_text>
            新华社受权于18日全文播发修改后的《中华人民共和国立法法》...
        </short_text>
    </doc>

The model reads the short text and writes the summary, character by character. The paper's
counts (2,400,591 / 10,666 / 1,106) are the whole files; ``min_score=3`` keeps only pairs
whose human relevance score is at least 3 (8,685 / 725), as many later papers do.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .parallel_text import ParallelCorpus

__all__ = ["LCSTS_FILES", "read_lcsts", "load_lcsts", "find_lcsts_file"]

LCSTS_FILES = {"train": "PART_I.txt", "dev": "PART_II.txt", "test": "PART_III.txt"}
_FIELDS = ("human_label", "summary", "short_text")
# Only our own tags are tags: '<' in the text itself stays text.
_TAG = re.compile(r"(</?(?:doc|summary|short_text|human_label)\b[^<>]*>)")
_DOC_OPEN = re.compile(r"<doc(?:\s+id\s*=\s*\"?(\d+)\"?)?\s*>$")


def _lines(path: Path):
    """(line number, text) of a UTF-8 file, streamed: PART_I is about a gigabyte."""
    with open(path, "rb") as f:
        for i, raw in enumerate(f, start=1):
            try:
                yield i, raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path}:{i}: not valid UTF-8 (byte {raw[err.start]:#04x} at column "
                    f"{err.start + 1})"
                ) from None


def read_lcsts(path: str | os.PathLike, min_score: int | None = None) -> ParallelCorpus:
    """Parse one LCSTS file into (short text -> summary) pairs, character level.

    Args:
        path: ``PART_I.txt``, ``PART_II.txt`` or ``PART_III.txt``.
        min_score: keep only documents whose ``<human_label>`` is at least this (documents
            without a label, as in PART_I, are kept).

    Raises ``ValueError`` naming the file and line on malformed input.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty")
    src: list[str] = []
    tgt: list[str] = []
    starts: list[int] = []
    doc: dict[str, str] | None = None
    doc_line = 0
    field: str | None = None
    buf: list[str] = []
    lineno = 0
    for lineno, line in _lines(path):
        for piece in _TAG.split(line):
            if not piece or (field is None and piece.isspace()):
                continue
            if field is not None and not piece.startswith("<"):
                buf.append(piece)
                continue
            if doc is None:
                if not _DOC_OPEN.match(piece.strip()):
                    raise ValueError(f"{path}:{lineno}: expected <doc id=...>, found {piece.strip()[:40]!r}")
                doc, doc_line = {}, lineno
                continue
            if field is not None:
                if piece != f"</{field}>":
                    raise ValueError(f"{path}:{lineno}: expected </{field}>, found {piece!r}")
                doc[field] = "".join(buf).strip()
                field, buf = None, []
                continue
            if not piece.startswith("<"):
                raise ValueError(f"{path}:{lineno}: text {piece.strip()[:40]!r} outside any field")
            name = piece.strip("</>").split()[0]
            if piece.startswith("</"):
                if name != "doc":
                    raise ValueError(f"{path}:{lineno}: unexpected closing tag {piece!r}")
                for need in ("summary", "short_text"):
                    if need not in doc:
                        raise ValueError(
                            f"{path}:{doc_line}: document has no <{need}> (ends on line {lineno})"
                        )
                score = None
                if "human_label" in doc:
                    try:
                        score = int(doc["human_label"])
                    except ValueError:
                        raise ValueError(
                            f"{path}:{doc_line}: <human_label> is {doc['human_label']!r}, not an integer"
                        ) from None
                if min_score is None or score is None or score >= min_score:
                    src.append(doc["short_text"])
                    tgt.append(doc["summary"])
                    starts.append(doc_line)
                doc = None
                continue
            if name not in _FIELDS:
                raise ValueError(f"{path}:{lineno}: unexpected tag {piece!r} inside <doc>")
            if name in doc:
                raise ValueError(f"{path}:{lineno}: <{name}> appears twice in one document")
            field = name
    if doc is not None:
        raise ValueError(f"{path}:{doc_line}: <doc> is never closed (file ends on line {lineno})")
    if not src:
        raise ValueError(f"{path} holds no documents" + (f" with human_label >= {min_score}" if min_score else ""))
    return ParallelCorpus(src, tgt, "chars", path.stem, str(path), starts)


def find_lcsts_file(data_dir: str | os.PathLike, split: str) -> Path:
    data_dir = Path(data_dir)
    name = LCSTS_FILES[split]
    for cand in (data_dir / name, data_dir / "DATA" / name):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"LCSTS {split} file {name} not found in {data_dir} or {data_dir / 'DATA'}")


def load_lcsts(
    data_dir: str | os.PathLike, min_score: int | None = None, splits=("train", "dev", "test")
) -> dict[str, ParallelCorpus | None]:
    """``{"train": PART_I, "dev": PART_II, "test": PART_III}``; ``min_score`` filters II/III."""
    paths = {s: find_lcsts_file(data_dir, s) for s in splits}  # all present before parsing
    return {
        s: read_lcsts(p, min_score=None if s == "train" else min_score) for s, p in paths.items()
    }
