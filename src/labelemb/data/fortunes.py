"""Debian's ``fortunes`` package as a text classification set: the category is the label.

The package installs about 15,200 fortune-cookie texts in 43 category files
(``/usr/share/games/fortunes/<category>``, texts separated by lines holding only ``%``). The
categories overlap in topic (``computers``, ``linux``, ``perl``; ``love``, ``men-women``), so
learned label similarities can be read against what a person expects.

The rules, applied in this order (:func:`prepare_fortunes`):

1. a text is stripped of surrounding blank space; empty texts are dropped;
2. a text found in more than one category has no single label: it is dropped everywhere;
   a text repeated inside one category is kept once;
3. a category left with fewer than :data:`MIN_TEXTS` texts is dropped (too few for a
   10 % dev and a 10 % test share of at least 3 texts each); with the 2022 package that
   drops ``pratchett`` (2), ``ascii-art`` (10) and ``translate-me`` (12), leaving 40;
4. each category is split on its own (stratified), seeded: 10 % dev, 10 % test, the rest
   train (each share rounded, at least 1 text).
"""

from __future__ import annotations

import errno
import json
import os
import random
from collections import Counter, defaultdict
from pathlib import Path

from .publish import check_out, publish_folder

__all__ = ["FORTUNES_DIR", "MIN_TEXTS", "SPLITS", "SEED", "read_fortunes", "prepare_fortunes"]

#: where the Debian package ``fortunes`` puts its category files
FORTUNES_DIR = Path("/usr/share/games/fortunes")
#: categories with fewer texts (after de-duplication) are dropped
MIN_TEXTS = 30
#: the files written, in this order
SPLITS = ("train", "dev", "test")
#: the seed of the split unless one is given
SEED = 0
_SHARES = {"dev": 0.1, "test": 0.1}


def read_fortunes(source: str | os.PathLike = FORTUNES_DIR) -> dict[str, list[str]]:
    """``{category: [text, ...]}`` from a folder of fortune files, in file order.

    A category file is any plain file without a dot in its name (``art``, ``men-women``);
    the package's ``.dat`` indexes and ``.u8`` links are skipped. Raises ``FileNotFoundError``
    naming the Debian package when there is none.
    """
    source = Path(source)
    files = sorted(p for p in source.iterdir() if p.is_file() and not p.is_symlink()
                   and "." not in p.name) if source.is_dir() else []
    if not files:
        raise FileNotFoundError(
            errno.ENOENT, f"no fortune files in {source}: install the Debian package "
            "`fortunes` (apt-get install fortunes) or pass --source DIR")
    out = {}
    for path in files:
        # A few texts are not valid UTF-8: replace those bytes rather than drop the text.
        raw = path.read_text(encoding="utf-8", errors="replace")
        texts = (t.strip() for t in raw.replace("\r\n", "\n").split("\n%\n"))
        out[path.name] = [t for t in texts if t and t != "%"]
    return out


def _clean(categories: dict[str, list[str]], min_texts: int
           ) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Rules 2 and 3: one label per text, enough texts per category. Returns the kept
    categories (texts de-duplicated, in order) and why each dropped one went."""
    owners: dict[str, set[str]] = defaultdict(set)
    for name, texts in categories.items():
        for t in texts:
            owners[t].add(name)
    kept, dropped = {}, {}
    for name in sorted(categories):
        unique = list(dict.fromkeys(t for t in categories[name] if len(owners[t]) == 1))
        if len(unique) < min_texts:
            dropped[name] = f"{len(unique)} texts < {min_texts}"
        else:
            kept[name] = unique
    return kept, dropped


def _split(kept: dict[str, list[str]], seed: int) -> dict[str, list[tuple[str, int]]]:
    """Rule 4: a seeded, stratified split into ``(text, label)`` pairs per split."""
    rng = random.Random(seed)
    splits: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
    for label, name in enumerate(kept):
        texts = sorted(kept[name])  # the split depends on the seed, not on file order
        rng.shuffle(texts)
        start = 0
        for split in ("dev", "test"):
            n = max(1, round(_SHARES[split] * len(texts)))
            splits[split] += [(t, label) for t in texts[start:start + n]]
            start += n
        splits["train"] += [(t, label) for t in texts[start:]]
    for pairs in splits.values():
        rng.shuffle(pairs)  # no file is sorted by class
    return splits


def prepare_fortunes(out: str | os.PathLike, source: str | os.PathLike = FORTUNES_DIR,
                     seed: int = SEED, min_texts: int = MIN_TEXTS, overwrite: bool = False
                     ) -> dict:
    """Write ``{train,dev,test}.jsonl`` (one ``{"text": str, "label": int}`` a line) and
    ``labels.json`` (``names``: the label names by index, with counts and the rules) into
    ``out``. Returns what ``labels.json`` holds.

    ``out`` must be new or empty (``overwrite``: or hold only a prepared set); it appears only
    when every file is written (:mod:`labelemb.data.publish`)."""
    check_out(out, overwrite)
    kept, dropped = _clean(read_fortunes(source), min_texts)
    if len(kept) < 2:
        raise ValueError(f"{source}: only {len(kept)} categories have >= {min_texts} texts")
    splits = _split(kept, seed)
    names = list(kept)
    info = {
        "dataset": "fortunes", "source": str(Path(source).resolve()), "seed": seed,
        "names": names,
        "counts": {s: dict(sorted(Counter(names[y] for _, y in p).items()))
                   for s, p in splits.items()},
        "dropped": dropped,
        "rules": (f"texts in more than one category dropped; categories with < {min_texts} "
                  "texts dropped; per category 10% dev, 10% test, rest train"),
    }

    def write(folder: Path) -> None:
        for split, pairs in splits.items():
            lines = (json.dumps({"text": t, "label": y}, ensure_ascii=False) for t, y in pairs)
            (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (folder / "labels.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n",
                                            encoding="utf-8")

    publish_folder(out, write, overwrite)
    return info
