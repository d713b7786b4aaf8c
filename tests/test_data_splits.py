"""Splits of own data are stratified and seeded; data shipped shuffled keeps its split by
position (the published Fashion-MNIST results stand). Real PNG folders, the real
Fashion-MNIST files, CIFAR batches written here in their format."""

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli_process import assert_user_error, labelemb
from labelemb.data.registry import load_dataset
from labelemb.data.splits import class_quotas

#: an unbalanced set, in the order a folder lists it: class by class
CLASSES = {"bag": 15, "trouser": 25, "tshirt": 40}


def _folder(root: Path, counts: dict[str, int]) -> Path:
    """``root/<class>/<i>.png``: 4x4 grey PNGs whose pixel is the class's index * 50 + i % 50,
    so an image's class can be read back from it."""
    for ci, (cls, n) in enumerate(counts.items()):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((4, 4), ci * 50 + i % 50, np.uint8), "L").save(
                root / cls / f"{i:03d}.png")
    return root


def _per_class(y: torch.Tensor, num_classes: int) -> list[int]:
    return torch.bincount(y, minlength=num_classes).tolist()


def _assert_in_proportion(part: torch.Tensor, whole: torch.Tensor, num_classes: int) -> None:
    """Every class in ``part``, each within one image of its share of ``whole``."""
    got = _per_class(part, num_classes)
    share = [len(part) * c / len(whole) for c in _per_class(whole, num_classes)]
    assert min(got) >= 1, got
    assert all(abs(g - s) < 1 for g, s in zip(got, share)), (got, share)


def test_a_folder_without_test_gives_stratified_seeded_splits(tmp_path):
    ds = load_dataset(_folder(tmp_path / "d", CLASSES))
    c = ds.num_classes
    assert ds.class_names == ["bag", "trouser", "tshirt"] and ds.stratify
    everything = torch.cat([ds.train_y, ds.test_y])
    assert len(ds.test_y) == 8 and len(ds.train_y) == 72  # 10 % of 80
    _assert_in_proportion(ds.test_y, everything, c)
    # Each image keeps its label (the pixel says which class it came from).
    for x, y in ((ds.train_x, ds.train_y), (ds.test_x, ds.test_y)):
        assert torch.equal(x[:, 0, 0, 0].long() // 50, y)
    # The dev split held out of train: every class, not the last 10 % in folder order.
    with_dev = ds.hold_out_dev()
    assert len(with_dev.dev_y) == 7 and len(with_dev.train_y) == 65
    _assert_in_proportion(with_dev.dev_y, ds.train_y, c)
    subset = ds.subset_train(30)
    _assert_in_proportion(subset.train_y, ds.train_y, c)
    # Seeded: the same draw again, another with another seed.
    again = load_dataset(tmp_path / "d").hold_out_dev()
    assert torch.equal(again.dev_x, with_dev.dev_x) and torch.equal(again.train_y, with_dev.train_y)
    other = ds.hold_out_dev(seed=1)
    assert not torch.equal(other.dev_x, with_dev.dev_x)
    _assert_in_proportion(other.dev_y, ds.train_y, c)


def test_the_held_out_dev_split_and_train_share_no_image(tmp_path):
    root = tmp_path / "d"
    for ci, (cls, n) in enumerate(CLASSES.items()):  # every image distinct: pixel = its number
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((4, 4), sum(list(CLASSES.values())[:ci]) + i, np.uint8),
                            "L").save(root / cls / f"{i:03d}.png")
    ds = load_dataset(root)
    split = ds.subset_train(50).hold_out_dev(10)
    ids = [set(t[:, 0, 0, 0].tolist()) for t in (split.train_x, split.dev_x, ds.test_x)]
    assert len(ids[0]) == 40 and len(ids[1]) == 10
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert ids[0] | ids[1] <= set(ds.train_x[:, 0, 0, 0].tolist())


def test_npz_without_test_split_is_stratified(tmp_path):
    y = np.repeat(np.arange(4), [5, 10, 20, 45])  # sorted by class, as a user may save it
    x = (y[:, None, None] * np.ones((1, 3, 3), np.int64)).astype(np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ds = load_dataset(tmp_path / "d.npz")
    assert len(ds.test_y) == 8
    _assert_in_proportion(ds.test_y, torch.from_numpy(y), 4)
    assert torch.equal(ds.test_x[:, 0, 0, 0].long(), ds.test_y)
    # The test images come in a mixed order: "the first N test images" are not one class.
    assert len(set(ds.test_y[:4].tolist())) > 1


def test_a_class_too_small_to_split_is_named(tmp_path):
    _folder(tmp_path / "d", {"bag": 1, "coat": 12, "dress": 12})
    done = labelemb("data", "info", tmp_path / "d")
    assert_user_error(done, "'bag'", "single image", "test split")
    # With a test split of its own, the dev split held out for training refuses the same way.
    _folder(tmp_path / "e" / "train", {"bag": 1, "coat": 12, "dress": 12})
    _folder(tmp_path / "e" / "test", {"bag": 2, "coat": 2, "dress": 2})
    ds = load_dataset(tmp_path / "e")
    with pytest.raises(ValueError, match=r"dev split .*'bag' has a single image.*--held-out 0"):
        ds.hold_out_dev()
    assert len(ds.hold_out_dev(0).train_y) == 25  # --held-out 0: nothing to draw
    with pytest.raises(ValueError, match=r"training subset of 2 .*each of the 3 classes"):
        ds.subset_train(2)


def test_train_refuses_a_subset_with_fewer_images_than_classes(tmp_path):
    _folder(tmp_path / "d", CLASSES)
    info = labelemb("data", "info", tmp_path / "d")  # says what training will hold out
    assert "train 65, dev 7 (held out of the 72 training images, stratified by class" \
        in info.stdout, info.stderr
    done = labelemb("train", "--dataset", tmp_path / "d", "--model", "mlp", "--epochs", "1",
                    "--train-subset", "2", "--out", tmp_path / "runs")
    assert_user_error(done, "--train-subset", "3 classes")
    assert not (tmp_path / "runs").exists()


def test_class_quotas_add_up_within_bounds_and_in_proportion():
    rng = np.random.default_rng(0)
    for _ in range(200):
        counts = rng.integers(2, 300, rng.integers(2, 40))
        n = int(rng.integers(len(counts), counts.sum() - len(counts) + 1))
        lo, hi = np.ones_like(counts), counts - 1
        q = class_quotas(counts, n, lo, hi)
        assert q.sum() == n and (q >= lo).all() and (q <= hi).all()
        target = n * counts / counts.sum()
        unbound = (target >= 1) & (target <= hi)  # where neither bound forces a quota
        assert (np.abs(q - target)[unbound] < 1 + 1e-9).all(), (counts, n, q)


# --------------------------------------------------------------------------- shipped shuffled

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
                    reason="needs Debian's dataset-fashion-mnist (scripts/setup.sh --dev)")
def test_fashion_mnist_keeps_the_published_split_and_subset():
    # docs/RESULTS.md section 1: dev = the file's first 5,000 training images, train the other
    # 55,000 in file order, --train-subset 10000 their first 10,000. Read here from the files.
    raw = gzip.decompress((FASHION / "train-images-idx3-ubyte.gz").read_bytes())
    images = torch.from_numpy(np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 1, 28, 28).copy())
    labels = torch.from_numpy(np.frombuffer(
        gzip.decompress((FASHION / "train-labels-idx1-ubyte.gz").read_bytes()), np.uint8,
        offset=8).astype(np.int64))
    ds = load_dataset("fashion-mnist", FASHION)
    assert not ds.stratify
    assert torch.equal(ds.dev_x, images[:5000]) and torch.equal(ds.dev_y, labels[:5000])
    assert torch.equal(ds.train_x, images[5000:]) and torch.equal(ds.train_y, labels[5000:])
    sub = ds.subset_train(10000).hold_out_dev()  # the engine's order of calls
    assert torch.equal(sub.train_x, images[5000:15000]) and torch.equal(sub.train_y,
                                                                       labels[5000:15000])
    assert sub.dev_x is ds.dev_x  # it has a dev split: nothing held out


def test_cifar_keeps_its_split_by_position(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "cifar10"
    d.mkdir()
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f, protocol=2)
    batches = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, 4).tolist()}
        batches.append(batch)
        with open(d / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    images = torch.from_numpy(np.concatenate([b[b"data"] for b in batches[:5]])).view(-1, 3, 32, 32)
    ds = load_dataset("cifar10", tmp_path)
    assert not ds.stratify and ds.dev_y is None
    held = ds.hold_out_dev(3)  # the last 3 training images, as before
    assert torch.equal(held.dev_x, images[-3:]) and torch.equal(held.train_x, images[:-3])
    assert torch.equal(ds.subset_train(5).train_x, images[:5])
