"""Damaged and hostile embedding files for the tests: real files written by save_embedding,
then edited the way a bad copy, a hand edit or an attacker would edit them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch

from labelemb import CompressedLabelEmbedding, LabelEmbedding, save_embedding

NAMES = ["cat", "dog", "car", "truck"]


def saved_full(path: Path, values: torch.Tensor | None = None) -> Path:
    """A 4-class full embedding with class names; ``values`` replaces its weight."""
    emb = LabelEmbedding(len(NAMES), class_names=NAMES)
    if values is not None:
        with torch.no_grad():
            emb.weight.copy_(values)
    return save_embedding(emb, path)


def saved_compressed(path: Path) -> Path:
    """A 4-class compressed embedding of dim 2, with a bias."""
    torch.manual_seed(0)
    return save_embedding(CompressedLabelEmbedding(len(NAMES), dim=2), path)


def edit_header(path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """Rewrite the safetensors header of ``path`` (``edit`` changes the parsed JSON in place),
    keeping the data bytes as they are."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    edit(header)
    new = json.dumps(header).encode("utf-8")
    path.write_bytes(len(new).to_bytes(8, "little") + new + raw[8 + n:])
    return path


def set_metadata(path: Path, **fields: str) -> Path:
    """Set (or, with value None, delete) metadata fields of a saved embedding."""
    def edit(header: dict[str, Any]) -> None:
        meta = header["__metadata__"]
        for k, v in fields.items():
            if v is None:
                meta.pop(k, None)
            else:
                meta[k] = v
    return edit_header(path, edit)


def truncate(path: Path, drop: int) -> Path:
    """Cut the last ``drop`` bytes, as an interrupted copy does."""
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) - drop])
    return path
