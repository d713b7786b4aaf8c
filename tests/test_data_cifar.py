"""CIFAR "python version" batches written with pickle in the real format; hostile pickles."""

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from labelemb.data.cifar import load_cifar10, load_cifar100, read_cifar_batch, safe_load_pickle
from labelemb.data.registry import load_dataset


def _py2(obj) -> bytes:
    """Opcodes as Python 2's cPickle (protocol 2) wrote the published batches: str as
    BINSTRING, arrays via numpy.core.multiarray._reconstruct and a version-3 dtype state."""
    if isinstance(obj, dict):
        return b"}(" + b"".join(_py2(k) + _py2(v) for k, v in obj.items()) + b"u"
    if isinstance(obj, list):
        return b"](" + b"".join(_py2(v) for v in obj) + b"e"
    if isinstance(obj, bytes):
        if len(obj) < 256:
            return b"U" + bytes([len(obj)]) + obj
        return b"T" + struct.pack("<i", len(obj)) + obj
    if isinstance(obj, bool):
        return b"\x88" if obj else b"\x89"
    if isinstance(obj, int):
        return b"J" + struct.pack("<i", obj)
    if isinstance(obj, tuple):
        return b"(" + b"".join(_py2(v) for v in obj) + b"t"
    if obj is None:
        return b"N"
    if isinstance(obj, np.ndarray):
        assert obj.dtype == np.uint8
        dtype = (b"cnumpy\ndtype\n" + _py2((b"u1", 0, 1)) + b"R"
                 + _py2((3, b"|", None, None, None, -1, -1, 0)) + b"b")
        return (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n"
                + _py2((0,)) + _py2(b"b") + b"\x87R"
                + b"(" + _py2(1) + _py2(obj.shape) + dtype + _py2(False) + _py2(obj.tobytes())
                + b"tb")
    raise TypeError(type(obj))


def _dump(path: Path, obj) -> None:
    # The published batches are Python 2 cPickle files, protocol 2, with str (bytes) keys.
    path.write_bytes(b"\x80\x02" + _py2(obj) + b".")


def _dump_py3(path: Path, obj) -> None:
    # A batch re-saved by Python 3 (protocol 2 rebuilds bytes with _codecs.encode).
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _images(rng, n):
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8)


def _write_cifar10(root: Path, per_batch: int = 3) -> dict:
    rng = np.random.default_rng(0)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
             b"ship", b"truck"]
    _dump(d / "batches.meta", {b"num_cases_per_batch": per_batch, b"label_names": names,
                               b"num_vis": 3072})
    batches = []
    for i in range(1, 6):
        b = {b"batch_label": f"training batch {i} of 5".encode(), b"labels":
             rng.integers(0, 10, per_batch).tolist(), b"data": _images(rng, per_batch),
             b"filenames": [f"img_{i}_{j}.png".encode() for j in range(per_batch)]}
        _dump(d / f"data_batch_{i}", b)
        batches.append(b)
    test = {b"batch_label": b"testing batch 1 of 1", b"labels": [9, 0],
            b"data": _images(rng, 2), b"filenames": [b"t0.png", b"t1.png"]}
    _dump(d / "test_batch", test)
    return {"batches": batches, "test": test}


def test_cifar10_reader(tmp_path):
    written = _write_cifar10(tmp_path)
    split = load_cifar10(tmp_path)
    x, y = split["train"]
    assert x.shape == (15, 3, 32, 32) and x.dtype == np.uint8
    np.testing.assert_array_equal(x.reshape(15, -1), np.concatenate(
        [b[b"data"] for b in written["batches"]]))
    assert y.tolist() == sum((b[b"labels"] for b in written["batches"]), [])
    assert split["test"][1].tolist() == [9, 0]
    assert split["class_names"][0] == "airplane" and len(split["class_names"]) == 10
    # First row of the flat array is the red plane of the first image.
    np.testing.assert_array_equal(x[0, 0].reshape(-1), written["batches"][0][b"data"][0, :1024])


def test_cifar100_fine_and_coarse(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    fine_names = [f"fine{i}".encode() for i in range(100)]
    coarse_names = [f"coarse{i}".encode() for i in range(20)]
    _dump(d / "meta", {b"fine_label_names": fine_names, b"coarse_label_names": coarse_names})
    for part, n in (("train", 6), ("test", 4)):
        _dump(d / part, {b"filenames": [b"x"] * n, b"batch_label": part.encode(),
                         b"fine_labels": rng.integers(0, 100, n).tolist(),
                         b"coarse_labels": rng.integers(0, 20, n).tolist(),
                         b"data": _images(rng, n)})
    fine = load_cifar100(tmp_path, "fine")
    coarse = load_cifar100(d, "coarse")
    raw = pickle.loads((d / "train").read_bytes(), encoding="bytes")
    assert fine["train"][1].tolist() == raw[b"fine_labels"]
    assert coarse["train"][1].tolist() == raw[b"coarse_labels"]
    assert len(fine["class_names"]) == 100 and coarse["class_names"][3] == "coarse3"
    ds = load_dataset("cifar100", data_dir=tmp_path)
    assert ds.dev_x is None and ds.train_x.shape == (6, 3, 32, 32) and ds.num_classes == 100


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_python3_resaved_batch_reads_the_same(tmp_path):
    rng = np.random.default_rng(2)
    batch = {b"labels": [3, 1], b"data": _images(rng, 2), b"batch_label": b"x"}
    _dump(tmp_path / "py2", batch)
    _dump_py3(tmp_path / "py3", batch)
    a, b = read_cifar_batch(tmp_path / "py2"), read_cifar_batch(tmp_path / "py3")
    np.testing.assert_array_equal(a["images"], b["images"])
    assert a["labels"].tolist() == b["labels"].tolist() == [3, 1]


def test_malicious_pickle_is_refused(tmp_path):
    evil = tmp_path / "data_batch_1"
    _dump_py3(evil, {b"data": _images(np.random.default_rng(0), 1), b"labels": [_Evil()]})
    with pytest.raises(ValueError, match=r"data_batch_1.*refused global (posix|os)\.system"):
        read_cifar_batch(evil)
    obj_arr = tmp_path / "objects"
    _dump_py3(obj_arr, {b"data": np.array([1, "a"], dtype=object)})
    with pytest.raises(ValueError, match="objects"):
        safe_load_pickle(obj_arr)


def test_corrupt_and_wrong_batches_name_the_file(tmp_path):
    _write_cifar10(tmp_path)
    p = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"data_batch_3.*truncated or corrupt"):
        load_cifar10(tmp_path)
    _dump(p, {b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]})
    with pytest.raises(ValueError, match=r"data_batch_3.*\(N, 3072\)"):
        load_cifar10(tmp_path)
    _dump(p, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        load_cifar10(tmp_path)
