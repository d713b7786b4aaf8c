"""``bible-en-es``: verse-aligned English-Spanish parallel text from Debian's SWORD modules.

English is the King James Version (``sword-text-kjv``, module ``engKJV2006eb``), Spanish the
Reina-Valera 1909 (``sword-text-sparv``, module ``spaRV1909eb``): both use the KJV
versification, so verse slot ``i`` of one is verse slot ``i`` of the other
(:mod:`labelemb.data.sword`). A verse becomes a pair when both sides have words (book and
chapter headings have none).

Text is lower-cased and split into words and punctuation marks, then written with tokens
separated by spaces, the way ``--task parallel`` reads (``tokenize="words"``). Splits: a shuffle
seeded with ``seed`` puts ``dev_size`` verses in dev, ``test_size`` in test, the rest in train
(verses, not books, are shuffled: dev and test come from every book).
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

from ..atomic import atomic_write_text
from .sword import TESTAMENTS, find_module, plain_text, read_testament, search_roots

__all__ = ["BIBLE_EN_ES", "tokenize_verse", "read_bible_pairs", "prepare_bible"]

#: side -> (SWORD module, Debian package that installs it)
BIBLE_EN_ES = {"en": ("engKJV2006eb", "sword-text-kjv"), "es": ("spaRV1909eb", "sword-text-sparv")}

# A word (letters/digits, with inner apostrophes: "father's") or one punctuation mark.
_TOKEN = re.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]")


def tokenize_verse(text: str) -> str:
    """``"And God said, Let there be light"`` -> ``"and god said , let there be light"``."""
    return " ".join(_TOKEN.findall(text.lower()))


def read_bible_pairs(
    sides: dict[str, tuple[str, str]] = BIBLE_EN_ES, roots: list[Path] | None = None
) -> dict[str, list[str]]:
    """``{side: [tokenised verse, ...]}``, aligned, verses with words on every side only.

    Raises ``FileNotFoundError`` naming the Debian packages to install when a module is missing.
    """
    modules = {side: find_module(name, roots) for side, (name, _) in sides.items()}
    missing = [sides[s] for s, m in modules.items() if m is None]
    if missing:
        where = ", ".join(str(r) for r in (roots if roots is not None else search_roots()))
        raise FileNotFoundError(
            f"SWORD module(s) {', '.join(m for m, _ in missing)} not found in {where}; install "
            f"them with: apt-get install {' '.join(p for _, p in missing)}")
    versifications = {m.versification for m in modules.values()}
    if len(versifications) != 1:
        raise ValueError(f"modules use different versifications {sorted(versifications)}: "
                         "their verses do not align slot by slot")
    out: dict[str, list[str]] = {side: [] for side in sides}
    for testament in TESTAMENTS:
        slots = {s: read_testament(m, testament) for s, m in modules.items()}
        if len({len(v) for v in slots.values()}) != 1:
            raise ValueError(f"{testament}: the modules have different numbers of verse slots")
        for verse in zip(*slots.values()):
            texts = [tokenize_verse(plain_text(raw)) for _, raw in verse]
            if all(texts):
                for side, text in zip(slots, texts):
                    out[side].append(text)
    return out


def prepare_bible(
    out: str | os.PathLike, dev_size: int = 1000, test_size: int = 1000, seed: int = 1,
    roots: list[Path] | None = None,
) -> dict[str, int]:
    """Write ``out/{train,dev,test}.{en,es}``; returns the number of pairs of each split."""
    pairs = read_bible_pairs(roots=roots)
    n = len(pairs["en"])
    if n <= dev_size + test_size:
        raise ValueError(f"only {n} aligned verses: too few for dev {dev_size} + test {test_size}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    splits = {"dev": sorted(order[:dev_size]), "test": sorted(order[dev_size:dev_size + test_size]),
              "train": sorted(order[dev_size + test_size:])}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for split, keep in splits.items():
        for side, lines in pairs.items():
            atomic_write_text(out / f"{split}.{side}", "".join(lines[i] + "\n" for i in keep))
    return {split: len(keep) for split, keep in splits.items()}
