"""A prepared text classification set on disk: ``{train,dev,test}.jsonl`` + ``labels.json``.

Each ``.jsonl`` line is ``{"text": str, "label": int}``; ``labels.json`` holds ``names``, the
label names by index. ``labelemb data prepare fortunes --out DIR`` writes one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TextClassificationData", "load_text_classification"]


@dataclass
class TextClassificationData:
    """Texts and integer labels per split, and the label names (index -> name)."""

    names: list[str]
    texts: dict[str, list[str]]
    labels: dict[str, list[int]]
    source: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.names)


def _read_jsonl(path: Path, num_classes: int) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text, label = row["text"], row["label"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{path}:{n}: not a {{\"text\", \"label\"}} line ({err})") from None
            if not isinstance(label, int) or not 0 <= label < num_classes:
                raise ValueError(f"{path}:{n}: label {label!r} outside [0, {num_classes})")
            texts.append(str(text))
            labels.append(label)
    return texts, labels


def load_text_classification(folder: str | os.PathLike,
                             splits: tuple[str, ...] = ("train", "dev", "test")
                             ) -> TextClassificationData:
    """Read a prepared folder; a missing file raises ``FileNotFoundError`` naming it."""
    folder = Path(folder)
    info = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    names = [str(n) for n in info["names"]]
    texts, labels = {}, {}
    for split in splits:
        texts[split], labels[split] = _read_jsonl(folder / f"{split}.jsonl", len(names))
    return TextClassificationData(names, texts, labels, str(folder))
