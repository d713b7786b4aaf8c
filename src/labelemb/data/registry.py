"""Named image datasets: where their files are, how to fetch them, the paper's splits.

Data is looked for, in order, in ``--data-dir``, ``$LABELEMB_DATA``,
``~/.cache/labelemb/<name>`` and ``/usr/share/datasets/<name>`` (where Debian's
``dataset-fashion-mnist`` puts Fashion-MNIST); ``--data-dir`` and ``$LABELEMB_DATA`` may hold
the files themselves or a ``<name>/`` folder. Splits follow the paper: MNIST and Fashion-MNIST
use the first 5,000 training images as the dev set (55k / 5k / 10k), CIFAR has no dev set
(50k / 10k).

Your own data works too: pass a folder of class folders or an ``.npz`` (see
:mod:`labelemb.data.folder`) wherever a dataset name is accepted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .cifar import load_cifar10, load_cifar100
from .download import download_file, extract_tar, file_digest
from .folder import load_image_folder, load_npz
from .idx import read_idx
from .publish import created_folders
from .splits import SPLIT_SEED, stratified_pick

__all__ = [
    "DatasetSpec", "DATASETS", "ImageDataset", "search_dirs", "find_data_dir", "check_data_dir",
    "load_dataset", "download_dataset",
]

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: its files with checksums, mirrors, and how to train on it.

    ``recipe`` names the paper's recipe (``"mnist"``, ``"cifar10"``, ``"cifar100"``).
    """

    name: str
    files: tuple[tuple[str, str], ...]  # (file name, "md5:..." / "sha256:...")
    base_urls: tuple[str, ...]
    kind: str  # "idx" or "cifar10" / "cifar100"
    recipe: str
    default_model: str
    class_names: tuple[str, ...] = ()
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    dev_size: int = 0
    homepage: str = ""


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        files=(("train-images-idx3-ubyte.gz", "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873"),
               ("train-labels-idx1-ubyte.gz", "md5:d53e105ee54ea40749a09fcbcd1e9432"),
               ("t10k-images-idx3-ubyte.gz", "md5:9fb629c4189551a2d022fa330f9573f3"),
               ("t10k-labels-idx1-ubyte.gz", "md5:ec29112dd5afa0611ce80d1b7f02629c")),
        base_urls=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                   "http://yann.lecun.com/exdb/mnist/"),
        kind="idx", recipe="mnist", default_model="cnn",
        class_names=tuple(str(i) for i in range(10)), dev_size=5000,
        homepage="http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        files=(("train-images-idx3-ubyte.gz", "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
               ("train-labels-idx1-ubyte.gz", "md5:25c81989df183df01b3e8a0aad5dffbe"),
               ("t10k-images-idx3-ubyte.gz", "md5:bef4ecab320f06d8554ea6380940ec79"),
               ("t10k-labels-idx1-ubyte.gz", "md5:bb300cfdad3c16e7a12a480ee83cd310")),
        base_urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        kind="idx", recipe="mnist", default_model="cnn",
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                     "Sneaker", "Bag", "Ankle boot"),
        dev_size=5000, homepage="https://github.com/zalandoresearch/fashion-mnist",
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        files=(("cifar-10-python.tar.gz", "md5:c58f30108f718f92721af3b95e74349a"),),
        base_urls=("https://www.cs.toronto.edu/~kriz/",),
        kind="cifar10", recipe="cifar10", default_model="resnet8",
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "cifar100": DatasetSpec(
        name="cifar100",
        files=(("cifar-100-python.tar.gz", "md5:eb9058c3a382ffc7106e4002c42a8d85"),),
        base_urls=("https://www.cs.toronto.edu/~kriz/",),
        kind="cifar100", recipe="cifar100", default_model="resnet18",
        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
}


@dataclass
class ImageDataset:
    """Images as uint8 ``(N, C, H, W)`` tensors and int64 labels, split train/dev/test.

    ``dev_x``/``dev_y`` are ``None`` where the paper has no dev set. ``mean``/``std`` are the
    per-channel normalisation applied after scaling to [0, 1] (``None``: [0, 1] only).
    ``stratify``: the dev split and training subsets labelemb draws are stratified by class and
    seeded (own data); ``False`` for data shipped in shuffled files (IDX, CIFAR batches), whose
    splits are taken by position so that the published results stand.
    """

    name: str
    class_names: list[str]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    dev_x: torch.Tensor | None = None
    dev_y: torch.Tensor | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    recipe: str = "mnist"
    default_model: str = "cnn"
    source: str = ""
    extra: dict = field(default_factory=dict)
    stratify: bool = True

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[2])

    def hold_out_dev(self, n: int | None = None, seed: int = SPLIT_SEED) -> "ImageDataset":
        """A dataset without a dev split with ``n`` training images moved into one (default
        :func:`default_held_out`); itself when it has a dev split or ``n`` is 0.

        Own data (``stratify``) gets a stratified dev split drawn with ``seed``
        (:func:`labelemb.data.splits.stratified_pick`): every class in proportion, at least one
        image of each in dev and in train, or a ``ValueError`` naming the class too small for
        that. Data shipped shuffled (CIFAR) gives its last ``n`` training images, as before."""
        if self.dev_y is not None or n == 0:
            return self
        n_train = len(self.train_y)
        if n is None:  # own data: one image of each class at least
            n = max(default_held_out(n_train), self.num_classes if self.stratify else 0)
        if not self.stratify:
            if not 0 < n < n_train:
                raise ValueError(f"cannot hold out {n} of {n_train} training images (--held-out)")
            return self._with(train_x=self.train_x[:-n], train_y=self.train_y[:-n],
                              dev_x=self.train_x[-n:], dev_y=self.train_y[-n:])
        if n < 1:
            raise ValueError(f"cannot hold out {n} training images (--held-out)")
        dev, train = (torch.from_numpy(i) for i in stratified_pick(
            self.train_y.cpu().numpy(), n, self.class_names, seed=seed, purpose="dev",
            keep_rest=True, what=f"a dev split of {n} of the {n_train} training images",
            hint="add images, choose another --held-out, or pass --held-out 0 to train on all "
            "and skip calibration"))
        return self._with(train_x=self.train_x[train], train_y=self.train_y[train],
                          dev_x=self.train_x[dev], dev_y=self.train_y[dev])

    def subset_train(self, n: int | None, seed: int = SPLIT_SEED) -> "ImageDataset":
        """``n`` of the training images, for quick runs: for own data (``stratify``) a
        stratified sample drawn with ``seed`` holding every class in proportion and at least
        once (a ``ValueError`` if ``n`` is below the number of classes); for data shipped
        shuffled (MNIST, Fashion-MNIST, CIFAR) the first ``n``, as before."""
        if n is None or n >= len(self.train_y):
            return self
        if n < 1:
            raise ValueError(f"train subset must be >= 1, got {n}")
        if not self.stratify:
            return self._with(train_x=self.train_x[:n], train_y=self.train_y[:n])
        keep = torch.from_numpy(stratified_pick(
            self.train_y.cpu().numpy(), n, self.class_names, seed=seed, purpose="subset",
            keep_rest=False, what=f"a training subset of {n} of {len(self.train_y)} images",
            hint="choose a larger --train-subset")[0])
        return self._with(train_x=self.train_x[keep], train_y=self.train_y[keep])

    def _with(self, **tensors: torch.Tensor) -> "ImageDataset":
        return ImageDataset(**{**self.__dict__, **tensors})


def default_held_out(n_train: int) -> int:
    """How many training images a dataset without a dev split holds out as one: 10 %, at most
    5,000 (the size of the paper's MNIST dev split)."""
    return min(n_train // 10, 5000)


# --------------------------------------------------------------------------- locating


def search_dirs(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for dataset ``name``, in order."""
    dirs: list[Path] = []
    for base in (data_dir, os.environ.get("LABELEMB_DATA")):
        if base:
            dirs += [Path(base) / name, Path(base)]
    dirs.append(Path.home() / ".cache" / "labelemb" / name)
    dirs.append(Path("/usr/share/datasets") / name)
    return dirs


def _has_files(spec: DatasetSpec, d: Path) -> bool:
    if spec.kind == "idx":
        return all((d / f).is_file() or (d / f"{f}.gz").is_file() for f in _IDX_FILES)
    if spec.kind == "cifar10":
        return (d / "batches.meta").is_file() or (d / "cifar-10-batches-py/batches.meta").is_file()
    return (d / "meta").is_file() or (d / "cifar-100-python/meta").is_file()


def find_data_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The first folder of :func:`search_dirs` that holds ``name``'s files."""
    spec = _spec(name)
    dirs = search_dirs(name, data_dir)
    for d in dirs:
        if d.is_dir() and _has_files(spec, d):
            return d
    raise FileNotFoundError(
        f"{name} not found; looked in: {', '.join(str(d) for d in dirs)}. Download it with "
        f"`labelemb data download {name}` (or pass --data-dir)"
    )


def check_data_dir(name: str, data_dir: str | os.PathLike) -> None:
    """A ``--data-dir`` that does not hold dataset ``name`` is an error, never a silent
    fall-back to another copy found elsewhere."""
    given = Path(data_dir)
    if not given.is_dir():
        raise FileNotFoundError(f"--data-dir {given}: no such folder")
    if name in DATASETS:
        found = find_data_dir(name, given)
        if found not in search_dirs(name, given)[:2]:
            raise FileNotFoundError(
                f"--data-dir {given}: no {name} files there or in {given / name} (a copy is in "
                f"{found}: drop --data-dir to use it)")


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)} or give a "
                         "folder of class folders / an .npz file")
    return DATASETS[name]


# --------------------------------------------------------------------------- loading


def _idx_path(d: Path, stem: str) -> Path:
    return d / stem if (d / stem).is_file() else d / f"{stem}.gz"


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


def load_dataset(
    name_or_path: str | os.PathLike, data_dir: str | os.PathLike | None = None,
    cifar100_labels: str = "fine",
) -> ImageDataset:
    """Load a named dataset (``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``) with the
    paper's split, or your own data from a folder of class folders or an ``.npz``. A
    ``data_dir`` given must hold a named dataset's files (:func:`check_data_dir`)."""
    key = str(name_or_path)
    if data_dir is not None:
        check_data_dir(key, data_dir)
    if key not in DATASETS:
        p = Path(key)
        if p.suffix == ".npz" or p.is_file():
            return _own(load_npz(p), p)
        if p.is_dir():
            return _own(load_image_folder(p), p)
        _spec(key)  # raises the "unknown dataset" error
    spec = DATASETS[key]
    d = find_data_dir(spec.name, data_dir)
    if spec.kind == "idx":
        train_x = read_idx(_idx_path(d, _IDX_FILES[0]), ndim=3)
        train_y = read_idx(_idx_path(d, _IDX_FILES[1]), ndim=1)
        test_x = read_idx(_idx_path(d, _IDX_FILES[2]), ndim=3)
        test_y = read_idx(_idx_path(d, _IDX_FILES[3]), ndim=1)
        for x, y, what in ((train_x, train_y, "train"), (test_x, test_y, "t10k")):
            if len(x) != len(y):
                raise ValueError(f"{d}: {what} has {len(x)} images but {len(y)} labels")
            if y.size and (y.min() < 0 or y.max() >= len(spec.class_names)):
                raise ValueError(f"{d}: {what} labels out of range [0, {len(spec.class_names)})")
        train_x, test_x = train_x[:, None], test_x[:, None]
        names = list(spec.class_names)
    else:
        split = load_cifar10(d) if spec.kind == "cifar10" else load_cifar100(d, cifar100_labels)
        (train_x, train_y), (test_x, test_y) = split["train"], split["test"]
        names = split["class_names"]
    train_y, test_y = train_y.astype(np.int64), test_y.astype(np.int64)
    n_dev = spec.dev_size
    ds = ImageDataset(
        name=spec.name if spec.name != "cifar100" or cifar100_labels == "fine"
        else "cifar100-coarse",
        class_names=names,
        train_x=_t(train_x[n_dev:]), train_y=_t(train_y[n_dev:]),
        test_x=_t(test_x), test_y=_t(test_y),
        dev_x=_t(train_x[:n_dev]) if n_dev else None, dev_y=_t(train_y[:n_dev]) if n_dev else None,
        mean=spec.mean, std=spec.std, recipe=spec.recipe, default_model=spec.default_model,
        source=str(d), stratify=False,
    )
    return ds


def _own(data: dict, path: Path) -> ImageDataset:
    (x, y), (tx, ty) = data["train"], data["test"]
    if x.shape[2] != x.shape[3]:
        raise ValueError(f"{path}: images must be square for the built-in models, got "
                         f"{x.shape[2]}x{x.shape[3]}")
    dev = data.get("dev")
    return ImageDataset(
        name=path.stem if path.suffix == ".npz" else path.name,
        class_names=list(data["class_names"]),
        train_x=_t(x), train_y=_t(y), test_x=_t(tx), test_y=_t(ty),
        dev_x=_t(dev[0]) if dev else None, dev_y=_t(dev[1]) if dev else None,
        recipe="mnist", default_model="cnn", source=str(path.resolve()),
    )


# --------------------------------------------------------------------------- download


def download_dataset(
    name: str, dest: str | os.PathLike | None = None, base_url: str | None = None,
    log: Callable[[str], None] = print, spec: DatasetSpec | None = None,
) -> Path:
    """Download ``name`` into ``dest`` (default ``$LABELEMB_DATA/<name>`` or
    ``~/.cache/labelemb/<name>``), verify every file's checksum, unpack archives. Files that are
    already there with the right checksum are kept. Returns the folder. ``spec`` overrides
    the registered file list (mirrors, tests)."""
    spec = spec or _spec(name)
    if dest is None:
        env = os.environ.get("LABELEMB_DATA")
        dest = Path(env) / name if env else Path.home() / ".cache" / "labelemb" / name
    dest = Path(dest)
    with created_folders(dest):  # a download that fails leaves no empty folder behind
        for fname, checksum in spec.files:
            _fetch(spec, dest, fname, checksum, (base_url,) if base_url else spec.base_urls, log)
    return dest


def _fetch(spec: DatasetSpec, dest: Path, fname: str, checksum: str, bases: tuple[str, ...],
           log: Callable[[str], None]) -> None:
    """One file of ``spec`` into ``dest``: kept if its checksum is right, else downloaded from
    the first of ``bases`` that serves it; an archive is unpacked."""
    target = dest / fname
    algo, expected = checksum.split(":", 1)
    fresh = True
    if target.is_file() and file_digest(target, algo) == expected:
        log(f"{target} present, checksum ok")
        fresh = False
    else:
        last: Exception | None = None
        for base in bases:
            url = base.rstrip("/") + "/" + fname
            try:
                download_file(url, target, checksum, quiet=True)
                log(f"downloaded {url} -> {target}")
                last = None
                break
            except Exception as err:  # try the next mirror, report the last error
                last = err
        if last is not None:
            raise last
    if fname.endswith((".tar.gz", ".tgz", ".tar")):
        if not fresh and _has_files(spec, dest):
            return  # unpacked before from this very archive
        extract_tar(target, dest)
        log(f"unpacked {target.name} in {dest}")
