"""`labelemb data prepare fortunes` on the real Debian `fortunes` package, as a user runs it."""

import json
from pathlib import Path

import pytest

from cli_process import assert_user_error, labelemb
from labelemb.data.fortunes import FORTUNES_DIR, MIN_TEXTS, prepare_fortunes, read_fortunes
from labelemb.data.text_classification import load_text_classification

needs_fortunes = pytest.mark.skipif(not (FORTUNES_DIR / "computers").is_file(),
                                    reason="needs Debian's fortunes (scripts/setup.sh --dev)")


@needs_fortunes
def test_prepare_writes_a_stratified_split_with_names(tmp_path):
    done = labelemb("data", "prepare", "fortunes", "--out", tmp_path / "f")
    assert done.returncode == 0, done.stderr
    assert "dropped pratchett" in done.stdout
    data = load_text_classification(tmp_path / "f")
    info = json.loads((tmp_path / "f" / "labels.json").read_text())
    assert data.names == info["names"] and len(data.names) >= 35
    assert {"computers", "linux", "love", "startrek"} <= set(data.names)
    raw = read_fortunes()
    for split in ("train", "dev", "test"):
        assert set(data.labels[split]) == set(range(data.num_classes))  # every class in each
        for text, y in zip(data.texts[split][:200], data.labels[split][:200]):
            assert text in raw[data.names[y]]  # the label is the file the text came from
    splits = [set(data.texts[s]) for s in ("train", "dev", "test")]
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])
    total = sum(len(data.labels[s]) for s in ("train", "dev", "test"))
    n_dev = len(data.labels["dev"])
    assert 0.08 * total < n_dev < 0.12 * total
    for name in data.names:
        assert sum(c.get(name, 0) for c in info["counts"].values()) >= MIN_TEXTS


@needs_fortunes
def test_split_depends_on_the_seed_only(tmp_path):
    a = prepare_fortunes(tmp_path / "a", seed=0)
    b = prepare_fortunes(tmp_path / "b", seed=0)
    c = prepare_fortunes(tmp_path / "c", seed=1)
    assert a == {**b, "source": a["source"]}
    test = [(tmp_path / d / "test.jsonl").read_text() for d in "abc"]
    assert test[0] == test[1] and test[0] != test[2]


def test_rules_on_small_files(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shared = "A text in two files."
    (src / "big").write_text("\n%\n".join([f"big {i}" for i in range(40)] + [shared]) + "\n%\n")
    (src / "other").write_text("\n%\n".join([f"o {i}" for i in range(30)] + [shared, "o 1"]))
    (src / "small").write_text("one\n%\ntwo\n")
    (src / "big.dat").write_bytes(b"\x00\x01")  # the package's index files are not categories
    info = prepare_fortunes(tmp_path / "out", src, seed=3)
    assert info["names"] == ["big", "other"]
    assert info["dropped"] == {"small": "2 texts < 30"}
    data = load_text_classification(tmp_path / "out")
    texts = [t for s in ("train", "dev", "test") for t in data.texts[s]]
    assert shared not in texts  # in two categories: no single label
    assert sorted(texts) == sorted({*(f"big {i}" for i in range(40)), *(f"o {i}" for i in range(30))})
    assert len(data.texts["test"]) == 4 + 3 and len(data.texts["dev"]) == 4 + 3


def test_missing_package_is_one_line_naming_it(tmp_path):
    done = labelemb("data", "prepare", "fortunes", "--out", tmp_path / "o",
                    "--source", tmp_path / "empty")
    assert_user_error(done, "fortunes", "apt-get install fortunes")
    assert not (tmp_path / "o").exists()
