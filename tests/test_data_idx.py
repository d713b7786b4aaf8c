"""IDX reader on files written byte by byte in the real format, and on the real Fashion-MNIST."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from labelemb.data.idx import read_idx
from labelemb.data.registry import load_dataset

FASHION = Path("/usr/share/datasets/fashion-mnist")


def _write_idx(path: Path, arr: np.ndarray, code: int = 0x08, gz: bool = False) -> Path:
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_reads_images_and_labels_raw_and_gz(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 5, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, 7, dtype=np.uint8)
    # The name does not decide: a gzip file without .gz is still recognised.
    got_x = read_idx(_write_idx(tmp_path / "imgs", images, gz=gz), ndim=3)
    got_y = read_idx(_write_idx(tmp_path / "labels", labels, gz=gz), ndim=1)
    np.testing.assert_array_equal(got_x, images)
    np.testing.assert_array_equal(got_y, labels)


def test_reads_big_endian_int32_and_float32(tmp_path):
    a = np.arange(-3, 3, dtype=np.int32).reshape(2, 3)
    np.testing.assert_array_equal(read_idx(_write_idx(tmp_path / "a", a, code=0x0C)), a)
    f = np.linspace(-1, 1, 5, dtype=np.float32)
    np.testing.assert_array_equal(read_idx(_write_idx(tmp_path / "f", f, code=0x0D)), f)


def test_bad_files_name_the_file(tmp_path):
    x = np.zeros((4, 3, 3), np.uint8)
    p = _write_idx(tmp_path / "x.idx", x)
    with pytest.raises(ValueError, match=r"x\.idx.*3 dimension|x\.idx.*1 dimension"):
        read_idx(p, ndim=1)
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"x\.idx: truncated"):
        read_idx(p)
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match=r"bad\.idx: not an IDX file"):
        read_idx(bad)
    gz = _write_idx(tmp_path / "cut.gz", x, gz=True)
    gz.write_bytes(gz.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"cut\.gz.*gzip"):
        read_idx(gz)
    with pytest.raises(FileNotFoundError, match="nothing"):
        read_idx(tmp_path / "nothing")


def test_mnist_like_folder_gets_the_papers_split(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "mnist"
    d.mkdir()
    n_train = 5003  # 5,000 dev images first, then 3 training images
    tr = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    tr_y = rng.integers(0, 10, n_train, dtype=np.uint8)
    _write_idx(d / "train-images-idx3-ubyte.gz", tr, gz=True)
    _write_idx(d / "train-labels-idx1-ubyte.gz", tr_y, gz=True)
    _write_idx(d / "t10k-images-idx3-ubyte", tr[:4])  # raw files work too
    _write_idx(d / "t10k-labels-idx1-ubyte", tr_y[:4])
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert ds.dev_x.shape == (5000, 1, 28, 28) and ds.train_x.shape == (3, 1, 28, 28)
    np.testing.assert_array_equal(ds.dev_x[:, 0].numpy(), tr[:5000])
    np.testing.assert_array_equal(ds.train_y.numpy(), tr_y[5000:])
    assert ds.test_x.shape[0] == 4 and ds.class_names == [str(i) for i in range(10)]


def _fake_fashion_mnist(d: Path, n_train: int = 5001) -> Path:
    """A tiny Fashion-MNIST (all zeros) in the folder ``d``."""
    d.mkdir(parents=True)
    for stem, arr in (("train-images-idx3-ubyte", np.zeros((n_train, 2, 2), np.uint8)),
                      ("train-labels-idx1-ubyte", np.zeros(n_train, np.uint8)),
                      ("t10k-images-idx3-ubyte", np.zeros((1, 2, 2), np.uint8)),
                      ("t10k-labels-idx1-ubyte", np.zeros(1, np.uint8))):
        _write_idx(d / stem, arr)
    return d


def test_search_order_prefers_data_dir_then_env(tmp_path, monkeypatch):
    for where in ("a", "b"):
        _fake_fashion_mnist(tmp_path / where / "fashion-mnist")
    monkeypatch.setenv("LABELEMB_DATA", str(tmp_path / "b"))
    assert load_dataset("fashion-mnist").source == str(tmp_path / "b" / "fashion-mnist")
    assert load_dataset("fashion-mnist", tmp_path / "a").source == str(tmp_path / "a" / "fashion-mnist")
    monkeypatch.setenv("LABELEMB_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(FileNotFoundError, match="labelemb data download mnist"):
        load_dataset("mnist")


def test_a_data_dir_without_the_dataset_is_refused_not_passed_over(tmp_path, monkeypatch):
    d = _fake_fashion_mnist(tmp_path / "b" / "fashion-mnist", n_train=3)
    monkeypatch.setenv("LABELEMB_DATA", str(tmp_path / "b"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"--data-dir .*empty: no fashion-mnist files "
                       r"there .*a copy is in .*b/fashion-mnist: drop --data-dir"):
        load_dataset("fashion-mnist", tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"--data-dir .*nowhere: no such folder"):
        load_dataset("fashion-mnist", tmp_path / "nowhere")
    assert load_dataset("fashion-mnist").source == str(d)  # without --data-dir: found


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_real_fashion_mnist_has_55k_5k_10k():
    ds = load_dataset("fashion-mnist", data_dir=FASHION)
    assert (len(ds.train_y), len(ds.dev_y), len(ds.test_y)) == (55000, 5000, 10000)
    assert ds.train_x.dtype.is_floating_point is False and ds.train_x.shape[1:] == (1, 28, 28)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert sorted(ds.test_y.unique().tolist()) == list(range(10))
    # Fashion-MNIST's test set is balanced: 1,000 per class.
    assert ds.test_y.bincount().tolist() == [1000] * 10


def test_cli_data_info_names_the_folder_and_splits(tmp_path, capsys):
    from labelemb.cli import main

    d = tmp_path / "fashion-mnist"
    d.mkdir()
    rng = np.random.default_rng(2)
    _write_idx(d / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (5002, 28, 28), np.uint8), gz=True)
    _write_idx(d / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 5002, np.uint8), gz=True)
    _write_idx(d / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (3, 28, 28), np.uint8), gz=True)
    _write_idx(d / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 3, np.uint8), gz=True)
    assert main(["data", "info", "fashion-mnist", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"from {d}" in out and "train 2, dev 5000, test 3" in out and "Ankle boot" in out
    labels = d / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", 3) + bytes([0, 1, 10])))
    assert main(["data", "info", "fashion-mnist", "--data-dir", str(tmp_path)]) == 2
    assert "t10k labels out of range" in capsys.readouterr().err
