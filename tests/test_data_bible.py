"""bible-en-es: the SWORD zText reader and `labelemb data prepare`, on small modules written
here in the module format (block index, verse index, zlib blocks, OSIS markup)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from cli_process import assert_user_error, labelemb
from labelemb.data.bible import (prepare_bible, prepare_bible_lm, read_bible_pairs,
                                 read_kjv_verses, tokenize_verse)
from labelemb.data.parallel_text import load_parallel_dir
from labelemb.data.sword import find_module, plain_text, read_testament

BOOK = '<div osisID="Gen" sID="g1" type="book"/> <title type="main">Genesis</title>'
CHAPTER = '<chapter n="1" osisID="Gen.1" sID="Gen.1"/>'


def write_module(root: Path, name: str, testaments: dict[str, list[str]],
                 versification: str = "KJV") -> None:
    """A zText module: slots 0-1 (module and testament headings) in block 0, the rest in
    block 1, as Debian's packages lay out one book per block."""
    data = f"modules/texts/ztext/{name.lower()}/"
    (root / "mods.d").mkdir(parents=True, exist_ok=True)
    (root / "mods.d" / f"{name}.conf").write_text(
        f"[{name}]\nDataPath=./{data}\nModDrv=zText\nCompressType=ZIP\nBlockType=BOOK\n"
        f"Versification={versification}\n")
    folder = root / data
    folder.mkdir(parents=True, exist_ok=True)
    for testament, slots in testaments.items():
        blocks, index, bzz = [], b"", b""
        for block_slots in (slots[:2], slots[2:]):
            raw, offsets = b"", []
            for s in block_slots:
                offsets.append((len(raw), len(s.encode())))
                raw += s.encode()
            packed = zlib.compress(raw)
            blocks.append(struct.pack("<III", len(bzz), len(packed), len(raw)))
            bzz += packed
            index += b"".join(struct.pack("<IIH", len(blocks) - 1, o, n) for o, n in offsets)
        (folder / f"{testament}.bzs").write_bytes(b"".join(blocks))
        (folder / f"{testament}.bzv").write_bytes(index)
        (folder / f"{testament}.bzz").write_bytes(bzz)


def english(n: int) -> list[str]:
    verses = [f'And <w lemma="strong:H0430">God</w> said, Let there be light number {i}.'
              f'<note placement="foot">Heb. a note {i}</note> ' for i in range(n)]
    return ["", "<milestone/>", BOOK, CHAPTER, *verses]


def spanish(n: int) -> list[str]:
    verses = [f'<w lemma="strong:H0559">Y dijo</w> Dios: ¶ Sea la luz número {i}. '
              for i in range(n)]
    return ["", "<milestone/>", BOOK, CHAPTER, *verses]


@pytest.fixture
def library(tmp_path):
    root = tmp_path / "sword"
    en, es = english(6), spanish(6)
    es[6] = ""  # a verse the Spanish module leaves empty: no pair
    write_module(root, "engKJV2006eb", {"ot": en, "nt": english(3)})
    write_module(root, "spaRV1909eb", {"ot": es, "nt": spanish(3)})
    return root


def test_reader_aligns_verse_slots_and_keeps_only_the_words(library):
    module = find_module("engKJV2006eb", [library])
    slots = read_testament(module, "ot")
    assert [block for block, _ in slots] == [0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
    assert plain_text(slots[4][1]) == "And God said, Let there be light number 0."
    assert plain_text(slots[2][1]) == ""  # a book heading: its title is dropped
    pairs = read_bible_pairs(roots=[library])
    assert len(pairs["en"]) == len(pairs["es"]) == 5 + 3  # slot 6 is empty in Spanish
    assert pairs["en"][0] == "and god said , let there be light number 0 ."
    assert pairs["es"][0] == "y dijo dios : sea la luz número 0 ."
    assert pairs["en"][2].endswith("number 3 .") and pairs["es"][2].endswith("número 3 .")


def test_tokenize_splits_punctuation_and_keeps_inner_apostrophes():
    assert tokenize_verse("¿Quién? My father’s house, (said he).") == \
        "¿ quién ? my father’s house , ( said he ) ."


def test_prepare_writes_splits_that_the_parallel_task_reads(library, tmp_path):
    counts = prepare_bible(tmp_path / "out", dev_size=2, test_size=1, roots=[library])
    assert counts == {"dev": 2, "test": 1, "train": 5}
    data = load_parallel_dir(tmp_path / "out", "en", "es",
                             {"train": "train", "dev": "dev", "test": "test"})
    seen = sorted(line for c in data.values() for line in c.src)
    assert seen == sorted(read_bible_pairs(roots=[library])["en"])  # each verse in one split
    for c in data.values():
        for en, es in zip(c.src, c.tgt):
            assert en.split()[-2] == es.split()[-2]  # the verse's number: still aligned


def test_missing_modules_name_the_debian_packages(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install sword-text-kjv sword-text-sparv"):
        read_bible_pairs(roots=[tmp_path])


def test_modules_of_different_versifications_are_refused(library):
    write_module(library, "spaRV1909eb", {"ot": spanish(6), "nt": spanish(3)}, "NRSVA")
    with pytest.raises(ValueError, match="versifications"):
        read_bible_pairs(roots=[library])


def test_cli_prepare_finds_modules_on_sword_path(library, tmp_path, monkeypatch):
    monkeypatch.setenv("SWORD_PATH", str(library))
    done = labelemb("data", "prepare", "bible-en-es", "--out", tmp_path / "d",
                    "--dev-size", "1", "--test-size", "1")
    assert done.returncode == 0, done.stderr
    assert "dev 1, test 1, train 6" in done.stdout
    assert (tmp_path / "d" / "train.es").read_text().count("\n") == 6


def test_bible_lm_writes_plain_verses_one_a_line(library, tmp_path):
    counts = prepare_bible_lm(tmp_path / "lm", dev_size=2, test_size=1, roots=[library])
    assert counts == {"dev": 2, "test": 1, "train": 6}
    lines = {s: (tmp_path / "lm" / f"{s}.txt").read_text().splitlines() for s in counts}
    # As printed: markup and notes gone, case and punctuation kept, no space before it.
    verses = [f"And God said, Let there be light number {i}." for i in (*range(6), *range(3))]
    assert sorted(line for part in lines.values() for line in part) == sorted(verses)
    rest = iter(verses)  # each split in the Bible's order: a subsequence of the verses
    assert all(any(v == line for v in rest) for line in lines["train"])
    assert sorted(p.name for p in (tmp_path / "lm").iterdir()) == ["dev.txt", "test.txt",
                                                                   "train.txt"]


def test_sizes_that_leave_no_training_verse_are_refused(library, tmp_path):
    with pytest.raises(ValueError, match=r"--dev-size 5 \+ --test-size 4 leave no training "
                                         r"verses of the 9"):
        prepare_bible_lm(tmp_path / "lm", dev_size=5, test_size=4, roots=[library])
    done = labelemb("data", "prepare", "bible-en-es", "--out", tmp_path / "d", "--source",
                    library, "--dev-size", "5", "--test-size", "3")
    assert_user_error(done, "--dev-size 5 + --test-size 3", "of the 8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sword"]


@pytest.mark.skipif(find_module("engKJV2006eb") is None,
                    reason="needs Debian's sword-text-kjv (scripts/setup.sh --dev)")
def test_bible_lm_from_the_installed_kjv(tmp_path):
    done = labelemb("data", "prepare", "bible-lm", "--out", tmp_path / "kjv")
    assert done.returncode == 0, done.stderr
    assert "dev 1000, test 1000, train 29102" in done.stdout  # the KJV's 31,102 verses
    lines = {s: (tmp_path / "kjv" / f"{s}.txt").read_text(encoding="utf-8").splitlines()
             for s in ("train", "dev", "test")}
    verses = read_kjv_verses()
    assert sorted(v for part in lines.values() for v in part) == sorted(verses)
    assert verses[0] == "In the beginning God created the heaven and the earth."
    assert verses[-1] == "The grace of our Lord Jesus Christ be with you all. Amen."
    text = "\n".join(verses)
    assert not any(c in text for c in "<>&\u00b6") and " ," not in text and " ." not in text
    assert "shall more be given." in text  # a word split by the module's markup, joined
    # The seed decides the split; the same seed, the same split.
    again = prepare_bible_lm(tmp_path / "again", seed=1)
    other = prepare_bible_lm(tmp_path / "other", seed=2)
    assert again == other == {"dev": 1000, "test": 1000, "train": 29102}
    dev = [(tmp_path / d / "dev.txt").read_text() for d in ("kjv", "again", "other")]
    assert dev[0] == dev[1] and dev[0] != dev[2]
