"""Token vocabulary for sequence to sequence: specials, size cap, min count, fingerprint.

Indices 0-3 are the specials ``<pad>`` (0), ``<unk>`` (1), ``<s>`` (2, BOS) and ``</s>`` (3,
EOS); real tokens follow, most frequent first (ties by the token's text, so a vocabulary is
the same on every machine). A vocabulary is saved as JSON with a fingerprint (SHA-256 of its
token list): the model's checkpoint records the fingerprint, and loading a vocabulary file from
another run is refused with an error that names the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from ..atomic import atomic_write_text

__all__ = ["Vocab", "PAD", "UNK", "BOS", "EOS", "SPECIALS"]

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
_FORMAT = "labelemb.vocab"


class Vocab:
    """An index <-> token table whose first four entries are :data:`SPECIALS`.

    Args:
        tokens: the real tokens (no specials), in index order; they get indices 4, 5, ...
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = [str(t) for t in tokens]
        clash = set(tokens) & set(SPECIALS)
        if clash:
            raise ValueError(f"tokens contain reserved special symbol(s) {sorted(clash)}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("tokens contain duplicates")
        self.itos: list[str] = list(SPECIALS) + tokens
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls, sentences: Iterable[Sequence[str]], max_size: int | None = 50_000, min_count: int = 1
    ) -> "Vocab":
        """Count tokens over ``sentences`` (lists of tokens) and keep the frequent ones.

        ``max_size`` caps the whole vocabulary, specials included (the paper's 50,000);
        ``None`` keeps every token with at least ``min_count`` occurrences.
        """
        if max_size is not None and max_size <= len(SPECIALS):
            raise ValueError(f"max_size must be > {len(SPECIALS)} (room for the specials), got {max_size}")
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts: Counter[str] = Counter()
        for sent in sentences:
            counts.update(sent)
        for s in SPECIALS:
            counts.pop(s, None)
        ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[: max_size - len(SPECIALS)]
        return cls(ranked)

    # ------------------------------------------------------------------ mapping
    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def encode(self, tokens: Sequence[str], bos: bool = False, eos: bool = False) -> list[int]:
        ids = [self.stoi.get(t, UNK) for t in tokens]
        return ([BOS] if bos else []) + ids + ([EOS] if eos else [])

    def decode(self, ids: Iterable[int], strip: bool = True) -> list[str]:
        """Ids -> tokens; with ``strip`` stop at EOS and drop PAD/BOS."""
        out = []
        for i in ids:
            i = int(i)
            if strip and i == EOS:
                break
            if strip and i in (PAD, BOS):
                continue
            out.append(self.itos[i])
        return out

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the token list: two vocabularies map ids alike iff fingerprints match."""
        return hashlib.sha256("\n".join(self.itos).encode("utf-8")).hexdigest()

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        obj = {"format": _FORMAT, "fingerprint": self.fingerprint, "tokens": self.itos}
        return atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=0) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike, expected_fingerprint: str | None = None) -> "Vocab":
        """Read a file written by :meth:`save`.

        With ``expected_fingerprint`` (the one a checkpoint recorded), a vocabulary from another
        run is refused: its ids would silently mean other words.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no vocabulary file at {path}")
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} is not a labelemb vocabulary file: {err}") from err
        if not isinstance(obj, dict) or obj.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a labelemb vocabulary file (no format tag)")
        tokens = obj.get("tokens")
        if not isinstance(tokens, list) or tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"{path}: token list missing or does not start with {SPECIALS}")
        vocab = cls(tokens[len(SPECIALS):])
        if vocab.fingerprint != obj.get("fingerprint"):
            raise ValueError(f"{path}: fingerprint does not match its token list (file edited?)")
        if expected_fingerprint is not None and vocab.fingerprint != expected_fingerprint:
            raise ValueError(
                f"{path} is a vocabulary from another run (fingerprint {vocab.fingerprint[:12]}..., "
                f"the model was trained with {expected_fingerprint[:12]}...); use the vocabulary "
                "files saved in the model's run directory"
            )
        return vocab
