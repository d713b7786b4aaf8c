"""A reader for SWORD Bible modules in the zText format (Debian's ``sword-text-*`` packages).

A module is a ``mods.d/<name>.conf`` file (``DataPath=``, ``ModDrv=zText``,
``Versification=``) and, per testament (``ot``, ``nt``), three files:

* ``.bzs``: one 12-byte record per compressed block: offset, size, uncompressed size
  (little-endian uint32);
* ``.bzv``: one 10-byte record per verse slot: block, offset in the uncompressed block
  (uint32) and length (uint16); slot order is the versification's (module and testament
  headings, then per book its heading, per chapter its heading, then the verses);
* ``.bzz``: the zlib-compressed blocks, one per book for ``BlockType=BOOK``.

Two modules of the same versification therefore align slot by slot: slot ``i`` of one is the
same verse as slot ``i`` of the other. Verse text is OSIS markup; :func:`plain_text` keeps the
words and drops notes, titles and tags.
"""

from __future__ import annotations

import html
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SwordModule", "find_module", "read_testament", "plain_text", "search_roots"]

TESTAMENTS = ("ot", "nt")
_BLOCK = struct.Struct("<III")  # offset, compressed size, uncompressed size
_SLOT = struct.Struct("<IIH")  # block, offset in the block, length


@dataclass(frozen=True)
class SwordModule:
    """A located module: its name, folder of data files and versification."""

    name: str
    data_dir: Path
    versification: str


def search_roots() -> list[Path]:
    """Where SWORD libraries are looked for: ``$SWORD_PATH``, ``~/.sword``, ``/usr/share/sword``
    (where the Debian packages install)."""
    roots = [Path(p) for p in os.environ.get("SWORD_PATH", "").split(os.pathsep) if p]
    return roots + [Path.home() / ".sword", Path("/usr/share/sword")]


def _conf(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            out.setdefault(key.strip(), value.strip())
    return out


def find_module(name: str, roots: list[Path] | None = None) -> SwordModule | None:
    """The module ``name`` in the first root whose ``mods.d`` has its conf; ``None`` if none."""
    for root in roots if roots is not None else search_roots():
        confs = [root / "mods.d" / f"{n}.conf" for n in (name, name.lower())]
        conf = next((c for c in confs if c.is_file()), None)
        if conf is None:
            continue
        c = _conf(conf)
        if c.get("ModDrv", "").lower() != "ztext":
            raise ValueError(f"{conf}: ModDrv={c.get('ModDrv')!r}; only zText modules are read")
        return SwordModule(name, root / c.get("DataPath", ""), c.get("Versification", "KJV"))
    return None


def read_testament(module: SwordModule, testament: str) -> list[tuple[int, str]]:
    """Every verse slot of one testament as ``(block, raw OSIS text)``; empty slots give ``""``.

    The block number is the book's for ``BlockType=BOOK`` modules (block 0: module heading).
    """
    base = module.data_dir / testament
    blocks_raw = base.with_suffix(".bzs").read_bytes()
    slots_raw = base.with_suffix(".bzv").read_bytes()
    text = base.with_suffix(".bzz").read_bytes()
    blocks = [_BLOCK.unpack_from(blocks_raw, i) for i in range(0, len(blocks_raw), _BLOCK.size)]
    cache: dict[int, bytes] = {}
    out = []
    for i in range(0, len(slots_raw) - _SLOT.size + 1, _SLOT.size):
        block, offset, size = _SLOT.unpack_from(slots_raw, i)
        if size == 0 or block >= len(blocks):
            out.append((block, ""))
            continue
        if block not in cache:  # slots run through a book in order: one block at a time
            cache.clear()
            start, length, _ = blocks[block]
            cache[block] = zlib.decompress(text[start : start + length])
        out.append((block, cache[block][offset : offset + size].decode("utf-8", "replace")))
    return out


# Footnotes and headings are not part of the verse's translation; every other tag only marks
# up words that are (Strong's numbers, words the translators added, red letters).
_DROP = re.compile(r"<(note|title)\b[^>]*?(?<!/)>.*?</\1>", re.S)
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def plain_text(osis: str, tags_split_words: bool = True) -> str:
    """The words of one verse's OSIS markup: notes and titles dropped, tags removed, entities
    decoded, the pilcrow (paragraph sign) dropped, spaces collapsed.

    ``tags_split_words``: a tag becomes a space. The Reina-Valera 1909 module needs that (its
    tags stand between words: ``<w>allí</w><w>también</w>``) and it puts a space before
    punctuation, which tokenising removes again. The KJV module marks words up in place, a few
    times across a word's end (``<w ...>shall more be give</w>n.``), and its spacing is right
    as it is: ``False`` removes tags without a trace (``"the earth."``, ``"given"``)."""
    text = _TAG.sub(" " if tags_split_words else "", _DROP.sub(" ", osis))
    text = html.unescape(text).replace("\u00b6", " ")
    return _SPACE.sub(" ", text).strip()
