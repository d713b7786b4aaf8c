"""Two text sets from Debian's SWORD modules: ``bible-en-es``, verse-aligned English-Spanish
parallel text for the seq2seq engine, and ``bible-lm``, the King James Version one verse a line
for language models.

English is the King James Version (``sword-text-kjv``, module ``engKJV2006eb``), Spanish the
Reina-Valera 1909 (``sword-text-sparv``, module ``spaRV1909eb``): both use the KJV
versification, so verse slot ``i`` of one is verse slot ``i`` of the other
(:mod:`labelemb.data.sword`). A verse becomes a pair when both sides have words (book and
chapter headings have none).

Text is lower-cased and split into words and punctuation marks, then written with tokens
separated by spaces, the way ``--task parallel`` reads (``tokenize="words"``). Splits: a shuffle
seeded with ``seed`` puts ``dev_size`` verses in dev, ``test_size`` in test, the rest in train
(verses, not books, are shuffled: dev and test come from every book).

``bible-lm`` is the KJV's text as printed (not lower-cased or split: a tokenizer is trained on
it), one verse a line, split the same way (:func:`labelemb.data.splits.sized_split`), each
split in the Bible's order. Both are written into a fresh folder that appears only when
complete (:mod:`labelemb.data.publish`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from .publish import check_out, publish_folder
from .splits import check_sizes, sized_split
from .sword import TESTAMENTS, SwordModule, find_module, plain_text, read_testament, search_roots

__all__ = ["BIBLE_EN_ES", "DEV_SIZE", "TEST_SIZE", "SEED", "tokenize_verse", "read_bible_pairs",
           "prepare_bible", "read_kjv_verses", "prepare_bible_lm"]

#: side -> (SWORD module, Debian package that installs it)
BIBLE_EN_ES = {"en": ("engKJV2006eb", "sword-text-kjv"), "es": ("spaRV1909eb", "sword-text-sparv")}
#: verses in dev and in test, and the seed of the shuffle that draws them, of both sets
DEV_SIZE, TEST_SIZE, SEED = 1000, 1000, 1

# A word (letters/digits, with inner apostrophes: "father's") or one punctuation mark.
_TOKEN = re.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]")


def tokenize_verse(text: str) -> str:
    """``"And God said, Let there be light"`` -> ``"and god said , let there be light"``."""
    return " ".join(_TOKEN.findall(text.lower()))


def _find_modules(sides: dict[str, tuple[str, str]], roots: list[Path] | None
                  ) -> dict[str, SwordModule]:
    """``{side: module}``; ``FileNotFoundError`` naming the Debian packages of missing ones."""
    found = {side: find_module(name, roots) for side, (name, _) in sides.items()}
    missing = [sides[s] for s, m in found.items() if m is None]
    if missing:
        where = ", ".join(str(r) for r in (roots if roots is not None else search_roots()))
        raise FileNotFoundError(
            f"SWORD module(s) {', '.join(m for m, _ in missing)} not found in {where}; install "
            f"them with: apt-get install {' '.join(p for _, p in missing)}")
    return {side: m for side, m in found.items() if m is not None}


def read_bible_pairs(
    sides: dict[str, tuple[str, str]] = BIBLE_EN_ES, roots: list[Path] | None = None
) -> dict[str, list[str]]:
    """``{side: [tokenised verse, ...]}``, aligned, verses with words on every side only.

    Raises ``FileNotFoundError`` naming the Debian packages to install when a module is missing.
    """
    modules = _find_modules(sides, roots)
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


def _prepare_verses(out: str | os.PathLike, read: Callable[[], dict[str, list[str]]],
                    dev_size: int, test_size: int, seed: int, overwrite: bool, unit: str
                    ) -> dict[str, int]:
    """Check ``out`` and the sizes, ``read()`` ``{suffix: [line, ...]}`` (aligned columns),
    split the lines (:func:`sized_split`) and publish ``out/<split>.<suffix>``."""
    check_out(out, overwrite)
    check_sizes(dev_size, test_size)
    columns = read()
    splits = sized_split(len(next(iter(columns.values()))), dev_size, test_size, seed, unit)

    def write(folder: Path) -> None:
        for split, keep in splits.items():
            for suffix, lines in columns.items():
                (folder / f"{split}.{suffix}").write_text(
                    "".join(lines[i] + "\n" for i in keep), encoding="utf-8")

    publish_folder(out, write, overwrite)
    return {split: len(keep) for split, keep in splits.items()}


def prepare_bible(
    out: str | os.PathLike, dev_size: int = DEV_SIZE, test_size: int = TEST_SIZE,
    seed: int = SEED, roots: list[Path] | None = None, overwrite: bool = False,
) -> dict[str, int]:
    """Write ``out/{train,dev,test}.{en,es}``; returns the number of pairs of each split.

    ``out`` must be new or empty (``overwrite``: or hold only a prepared set); it appears only
    when every file is written. Sizes below 1 or leaving no training pair are refused."""
    return _prepare_verses(out, lambda: read_bible_pairs(roots=roots), dev_size, test_size,
                           seed, overwrite, "verse pairs")


def read_kjv_verses(roots: list[Path] | None = None) -> list[str]:
    """Every verse of the King James Version with words, in the Bible's order, as plain text
    (``"In the beginning God created the heaven and the earth."``)."""
    module = _find_modules({"en": BIBLE_EN_ES["en"]}, roots)["en"]
    verses = (plain_text(raw, tags_split_words=False)
              for testament in TESTAMENTS for _, raw in read_testament(module, testament))
    return [v for v in verses if v]


def prepare_bible_lm(
    out: str | os.PathLike, dev_size: int = DEV_SIZE, test_size: int = TEST_SIZE,
    seed: int = SEED, roots: list[Path] | None = None, overwrite: bool = False,
) -> dict[str, int]:
    """Write ``out/{train,dev,test}.txt``, one KJV verse a line; returns each split's verses.
    The same split and folder rules as :func:`prepare_bible`."""
    return _prepare_verses(out, lambda: {"txt": read_kjv_verses(roots)}, dev_size, test_size,
                           seed, overwrite, "verses")
