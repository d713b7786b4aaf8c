"""Your own data: a folder of images per class, or an ``.npz`` with ``x`` and ``y`` arrays.

Folder layout (PNG, JPEG, ... anything pillow opens)::

    root/train/<class>/*.png   root/test/<class>/*.png     (a split given by you), or
    root/<class>/*.png                                      (10 % of each class is test)

Images read from folders come in a seeded random order (a folder has no order of its own, and
"the first N test images" should not be one class).

``.npz`` keys: ``x`` (N, H, W) / (N, H, W, C) / (N, C, H, W) uint8 (or float in [0, 1]), ``y``
(N,) ints; optional ``x_test``/``y_test``, ``x_dev``/``y_dev`` and ``class_names``; arrays keep
their order. Without a test split, 10 % of the images (at least one of each class) are drawn
as one, stratified and seeded (:func:`labelemb.data.splits.stratified_pick`); a class with a
single image cannot be split and is named. Labels out of range, classes with no training
example or images of different sizes give a ``ValueError`` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .splits import SPLIT_SEED, stratified_pick

__all__ = ["load_image_folder", "load_npz", "OwnData", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

#: ``{"train": (x, y), "dev": (x, y) or None, "test": (x, y), "class_names": [...]}``,
#: images uint8 ``(N, C, H, W)``, labels int64.
OwnData = dict


#: the share of images a dataset without a test split holds out as one
TEST_SHARE = 0.1


def _holdout(x: np.ndarray, y: np.ndarray, names: list[str], where: str, seed: int
             ) -> tuple[tuple, tuple]:
    """A stratified, seeded test split of :data:`TEST_SHARE` (at least one image per class)."""
    n = max(len(names), round(TEST_SHARE * len(y)))
    test, train = stratified_pick(
        y, n, names, seed=seed, purpose="test", keep_rest=True,
        what=f"a test split of {n} of the {len(y)} images in {where}",
        hint="add images of it, or give a test split of your own")
    return (x[train], y[train]), (x[test], y[test])


def _shuffled(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images read class by class, in a seeded random order."""
    order = np.random.default_rng(seed).permutation(len(y))
    return x[order], y[order]


def _check_labels(y: np.ndarray, num_classes: int, where: str, names: list[str]) -> None:
    if y.size == 0:
        raise ValueError(f"{where}: no samples")
    if y.min() < 0 or y.max() >= num_classes:
        bad = y[(y < 0) | (y >= num_classes)]
        raise ValueError(
            f"{where}: labels must be in [0, {num_classes}) for {num_classes} classes, found "
            f"{bad[:5].tolist()}"
        )


def _check_all_classes(y: np.ndarray, names: list[str], where: str) -> None:
    missing = sorted(set(range(len(names))) - set(np.unique(y).tolist()))
    if missing:
        shown = ", ".join(f"{i} ({names[i]!r})" for i in missing[:10])
        raise ValueError(
            f"{where}: class(es) {shown} have no training example; remove them from "
            "class_names or add data"
        )


# --------------------------------------------------------------------------- image folders


def _read_image(path: Path, mode: str | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if mode is None:
                mode = "L" if im.mode in ("1", "L", "I;16", "I", "F") else "RGB"
            arr = np.asarray(im.convert(mode))
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from err
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _read_class_dirs(root: Path, names: list[str] | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not dirs:
        raise ValueError(f"{root}: no class sub-folders (expected {root}/<class>/<image>)")
    if names is None:
        names = [d.name for d in dirs]
    else:
        extra = [d.name for d in dirs if d.name not in names]
        if extra:
            raise ValueError(f"{root}: class folder(s) {extra} are not among the training classes")
    images: list[np.ndarray] = []
    labels: list[int] = []
    mode = None
    for d in dirs:
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{d}: class folder has no images ({', '.join(IMAGE_SUFFIXES)})")
        for f in files:
            img = _read_image(f, mode)
            if mode is None:
                mode = "L" if img.shape[0] == 1 else "RGB"
            if images and img.shape != images[0].shape:
                raise ValueError(
                    f"{f}: image is {img.shape[2]}x{img.shape[1]}x{img.shape[0]}, the first one "
                    f"was {images[0].shape[2]}x{images[0].shape[1]}x{images[0].shape[0]}; "
                    "resize all images to one size"
                )
            images.append(img)
            labels.append(names.index(d.name))
    return np.stack(images), np.asarray(labels, dtype=np.int64), names


def load_image_folder(root: str | os.PathLike, seed: int = SPLIT_SEED) -> OwnData:
    """Images in one sub-folder per class (sorted folder names are the class names), in an
    order shuffled with ``seed``; without ``test/`` a stratified test split drawn with it."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no image folder at {root}")
    train_dir = root / "train" if (root / "train").is_dir() else root
    x, y, names = _read_class_dirs(train_dir, None)
    _check_all_classes(y, names, str(train_dir))
    x, y = _shuffled(x, y, seed)
    if train_dir != root and (root / "test").is_dir():
        tx, ty, _ = _read_class_dirs(root / "test", names)
        if tx.shape[1:] != x.shape[1:]:
            raise ValueError(f"{root / 'test'}: images differ in size from the training ones")
        train, test = (x, y), _shuffled(tx, ty, seed)
    else:
        train, test = _holdout(x, y, names, str(train_dir), seed)
    return {"train": train, "dev": None, "test": test, "class_names": names}


# --------------------------------------------------------------------------- npz


def _as_nchw(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype.kind == "f":
        if x.size and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"{where}: float images must be in [0, 1]")
        x = np.round(x * 255).astype(np.uint8)
    elif x.dtype != np.uint8:
        raise ValueError(f"{where}: images must be uint8 or float in [0, 1], got {x.dtype}")
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x
    raise ValueError(f"{where}: images must be (N, H, W), (N, H, W, C) or (N, C, H, W), got {x.shape}")


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(f"{where}: labels must be a 1-d integer array, got {y.dtype} {y.shape}")
    return y.astype(np.int64)


def load_npz(path: str | os.PathLike, seed: int = SPLIT_SEED) -> OwnData:
    """An ``.npz`` with ``x``, ``y`` (and optional test/dev arrays and ``class_names``);
    without a test split, a stratified one drawn with ``seed``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no .npz file at {path}")
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"{path}: not a readable .npz without pickles ({err})") from err
    with z:
        for k in ("x", "y"):
            if k not in z.files:
                raise ValueError(f"{path}: missing array {k!r} (found {z.files})")
        arrays = {k: z[k] for k in z.files}
    parts: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    for part, (kx, ky) in {"train": ("x", "y"), "test": ("x_test", "y_test"),
                           "dev": ("x_dev", "y_dev")}.items():
        if kx in arrays or ky in arrays:
            if kx not in arrays or ky not in arrays:
                raise ValueError(f"{path}: {kx!r} and {ky!r} must come together")
            x = _as_nchw(arrays[kx], f"{path}[{kx}]")
            y = _labels(arrays[ky], f"{path}[{ky}]")
            if len(x) != len(y):
                raise ValueError(f"{path}: {kx!r} has {len(x)} images but {ky!r} {len(y)} labels")
            parts[part] = (x, y)
        else:
            parts[part] = None
    train = parts["train"]
    assert train is not None
    if "class_names" in arrays:
        names = [str(n) for n in arrays["class_names"].tolist()]
    else:
        names = [str(i) for i in range(int(train[1].max()) + 1 if train[1].size else 0)]
    for part, xy in parts.items():
        if xy is None:
            continue
        _check_labels(xy[1], len(names), f"{path}[{'y' if part == 'train' else 'y_' + part}]", names)
        if xy[0].shape[1:] != train[0].shape[1:]:
            raise ValueError(f"{path}: {part} images are {xy[0].shape[1:]}, train {train[0].shape[1:]}")
    _check_all_classes(train[1], names, f"{path}[y]")
    if parts["test"] is None:
        train, test = _holdout(*train, names, str(path), seed)
    else:
        test = parts["test"]
    return {"train": train, "dev": parts["dev"], "test": test, "class_names": names}
