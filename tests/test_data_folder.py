"""Own data: real PNG folders and .npz files; bad labels and missing classes are named."""

import numpy as np
import pytest
import torch
from PIL import Image

from labelemb.data.folder import load_image_folder, load_npz
from labelemb.data.registry import load_dataset
from labelemb.data.transforms import random_crop_flip, to_float


def _png(path, value, size=(6, 6), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0], 3) if mode == "RGB" else size[::-1], value, np.uint8)
    Image.fromarray(arr, mode).save(path)


def test_image_folder_with_train_and_test(tmp_path):
    for split, n in (("train", 3), ("test", 1)):
        for ci, cls in enumerate(["cat", "dog"]):
            for j in range(n):
                _png(tmp_path / split / cls / f"{j}.png", 10 * ci + j)
    ds = load_dataset(tmp_path)
    assert ds.class_names == ["cat", "dog"] and ds.train_x.shape == (6, 3, 6, 6)
    assert sorted(ds.train_y.tolist()) == [0, 0, 0, 1, 1, 1]
    assert sorted(ds.test_y.tolist()) == [0, 1]
    # Read in a seeded random order, each image with its own label: pixel 10 * class + file.
    assert sorted(ds.train_x[:, 0, 0, 0].tolist()) == [0, 1, 2, 10, 11, 12]
    assert (ds.train_x[:, 0, 0, 0] // 10).tolist() == ds.train_y.tolist()
    assert (ds.test_x[:, 0, 0, 0] // 10).tolist() == ds.test_y.tolist()


def test_image_folder_without_split_holds_out_every_tenth(tmp_path):
    for ci, cls in enumerate(["a", "b"]):
        for j in range(10):
            _png(tmp_path / cls / f"{j:02d}.png", j, mode="L")
    data = load_image_folder(tmp_path)
    assert data["train"][0].shape == (18, 1, 6, 6) and len(data["test"][1]) == 2


def test_image_folder_errors(tmp_path):
    _png(tmp_path / "a" / "0.png", 1)
    (tmp_path / "b").mkdir()
    with pytest.raises(ValueError, match=r"b: class folder has no images"):
        load_image_folder(tmp_path)
    _png(tmp_path / "b" / "0.png", 1, size=(5, 5))
    with pytest.raises(ValueError, match=r"0\.png: image is 5x5"):
        load_image_folder(tmp_path)
    (tmp_path / "b" / "0.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"0\.png: not a readable image"):
        load_image_folder(tmp_path)


def test_npz_channels_last_and_explicit_test(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 4, 4, 3), dtype=np.uint8)
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x[:2], y_test=y[:2],
             class_names=np.array(["r", "g", "b"]))
    ds = load_dataset(tmp_path / "d.npz")
    assert ds.train_x.shape == (8, 3, 4, 4) and ds.class_names == ["r", "g", "b"]
    np.testing.assert_array_equal(ds.train_x[1].numpy(), x[1].transpose(2, 0, 1))
    assert ds.test_y.tolist() == [0, 1] and ds.dev_x is None


def test_npz_label_errors(tmp_path):
    x = np.zeros((4, 5, 5), np.uint8)
    np.savez(tmp_path / "range.npz", x=x, y=np.array([0, 1, 3, 1]), class_names=np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match=r"range\.npz\[y\].*\[0, 3\).*\[3\]"):
        load_npz(tmp_path / "range.npz")
    np.savez(tmp_path / "missing.npz", x=x, y=np.array([0, 2, 0, 2]))
    with pytest.raises(ValueError, match=r"missing\.npz.*class\(es\) 1 \('1'\) have no training"):
        load_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "neg.npz", x=x, y=np.array([0, -1, 0, 1]))
    with pytest.raises(ValueError, match=r"neg\.npz.*labels must be in"):
        load_npz(tmp_path / "neg.npz")
    np.savez(tmp_path / "float.npz", x=x, y=np.array([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"float\.npz\[y\].*integer"):
        load_npz(tmp_path / "float.npz")
    np.savez(tmp_path / "nox.npz", y=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"nox\.npz: missing array 'x'"):
        load_npz(tmp_path / "nox.npz")


def test_random_crop_flip_is_seeded_and_moves_pixels():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).reshape(2, 3, 8, 8)
    a = random_crop_flip(x, torch.Generator().manual_seed(0), padding=2)
    b = random_crop_flip(x, torch.Generator().manual_seed(0), padding=2)
    assert torch.equal(a, b) and a.shape == x.shape and a.dtype == torch.uint8
    # Compare with an independent per-image crop from the same random draws.
    g = torch.Generator().manual_seed(0)
    offsets = torch.randint(0, 5, (2, 2), generator=g)
    flips = torch.rand(2, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        oy, ox = offsets[i].tolist()
        crop = padded[i, :, oy:oy + 8, ox:ox + 8]
        assert torch.equal(a[i], crop.flip(2) if flips[i] else crop)
    many = random_crop_flip(x.repeat(50, 1, 1, 1), torch.Generator().manual_seed(1), padding=2)
    assert not all(torch.equal(m, x[0]) for m in many[::2])  # it does change images


def test_to_float_normalises_per_channel():
    x = torch.full((1, 2, 2, 2), 255, dtype=torch.uint8)
    out = to_float(x, mean=(0.5, 1.0), std=(0.5, 2.0))
    assert out[0, 0].eq(1.0).all() and out[0, 1].eq(0.0).all()
