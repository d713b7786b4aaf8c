"""Reader for the CIFAR-10 / CIFAR-100 "python version" batches.

The batches are pickles by format (dicts of bytes keys, lists and a uint8 numpy array). They
are read with a restricted unpickler that resolves only the three numpy names an array needs
(``_reconstruct``, ``ndarray``, ``dtype``), plus ``_codecs.encode`` limited to rebuilding
``bytes`` from latin-1 text (how Python 3 writes bytes at protocol 2); any other global, hence
any code, is refused.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["safe_load_pickle", "read_cifar_batch", "load_cifar10", "load_cifar100", "CifarSplit"]

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """What Python 3 pickles (protocol 2) call to rebuild ``bytes``; nothing else allowed."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("refused _codecs.encode call outside bytes reconstruction")
    return text.encode("latin1")


_ALLOWED = {
    # Python 3 re-saves of the batches (protocol 2) rebuild bytes this way.
    ("_codecs", "encode"): _latin1_bytes,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _Refused(pickle.UnpicklingError):
    """A construct outside the CIFAR format."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(
                f"refused global {module}.{name}: a CIFAR batch holds only dicts, bytes, "
                "lists and numpy arrays"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("refused persistent id: not part of the CIFAR format")


def safe_load_pickle(path: str | os.PathLike) -> Any:
    """Unpickle ``path`` allowing only plain containers, bytes/str, numbers and numpy arrays.

    Raises ``ValueError`` naming the file for anything else (or a corrupt file). Object
    arrays are refused too.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no CIFAR batch at {path}")
    raw = path.read_bytes()
    try:
        obj = _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _Refused as err:
        raise ValueError(f"{path}: not loaded: {err}") from err
    except Exception as err:  # truncated or corrupt: EOFError, ValueError, ...
        raise ValueError(
            f"{path}: truncated or corrupt pickle ({type(err).__name__}: {err}); delete it and "
            "download the data again (labelemb data download cifar10 / cifar100)"
        ) from err
    _refuse_object_arrays(obj, path)
    return obj


def _refuse_object_arrays(obj: Any, path: Path) -> None:
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        raise ValueError(f"{path}: refused an object array (not part of the CIFAR format)")
    if isinstance(obj, dict):
        for v in obj.values():
            _refuse_object_arrays(v, path)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _refuse_object_arrays(v, path)


def _key(d: dict, name: str) -> Any:
    # Batches written by Python 2 have bytes keys; accept str keys as well.
    for k in (name.encode(), name):
        if k in d:
            return d[k]
    raise KeyError(name)


def _decode(names: Any) -> list[str]:
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def read_cifar_batch(path: str | os.PathLike) -> dict[str, Any]:
    """One batch file -> ``{"images": (N, 3, 32, 32) uint8, "labels"|"fine_labels"|
    "coarse_labels": (N,) int64}`` (the label keys present in the file)."""
    path = Path(path)
    d = safe_load_pickle(path)
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a dict, found {type(d).__name__}")
    try:
        data = _key(d, "data")
    except KeyError:
        raise ValueError(f"{path}: no 'data' entry; not a CIFAR batch") from None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"{path}: 'data' must be a uint8 array of shape (N, 3072), found "
            f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}"
        )
    out: dict[str, Any] = {"images": data.reshape(-1, 3, 32, 32).copy()}
    for name in ("labels", "fine_labels", "coarse_labels"):
        try:
            labels = np.asarray(_key(d, name), dtype=np.int64)
        except KeyError:
            continue
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: '{name}' is not a list of ints: {err}") from None
        if labels.shape != (len(data),):
            raise ValueError(
                f"{path}: '{name}' has {labels.size} entries for {len(data)} images"
            )
        out[name] = labels
    if len(out) == 1:
        raise ValueError(f"{path}: no 'labels', 'fine_labels' or 'coarse_labels' entry")
    return out


class CifarSplit(dict):
    """``{"train": (images, labels), "test": (images, labels), "class_names": [...]}``."""


def _batch_dir(root: Path, sub: str, marker: str) -> Path:
    for d in (root, root / sub):
        if (d / marker).is_file():
            return d
    raise FileNotFoundError(
        f"no CIFAR files in {root} (looked for {marker} there and in {root / sub})"
    )


def load_cifar10(root: str | os.PathLike) -> CifarSplit:
    """CIFAR-10 from ``root`` or ``root/cifar-10-batches-py``: 50,000 train, 10,000 test."""
    d = _batch_dir(Path(root), "cifar-10-batches-py", "batches.meta")
    meta = safe_load_pickle(d / "batches.meta")
    names = _decode(_key(meta, "label_names"))
    parts = [read_cifar_batch(d / f"data_batch_{i}") for i in range(1, 6)]
    test = read_cifar_batch(d / "test_batch")
    train_x = np.concatenate([p["images"] for p in parts])
    train_y = np.concatenate([_labels(p, "labels", d) for p in parts])
    split = CifarSplit(train=(train_x, train_y), test=(test["images"], _labels(test, "labels", d)),
                       class_names=names)
    _check_range(split, d)
    return split


def load_cifar100(root: str | os.PathLike, label: str = "fine") -> CifarSplit:
    """CIFAR-100 from ``root`` or ``root/cifar-100-python``; ``label`` is "fine" (100
    classes) or "coarse" (20 superclasses)."""
    if label not in ("fine", "coarse"):
        raise ValueError(f"label must be 'fine' or 'coarse', got {label!r}")
    d = _batch_dir(Path(root), "cifar-100-python", "meta")
    meta = safe_load_pickle(d / "meta")
    names = _decode(_key(meta, f"{label}_label_names"))
    train = read_cifar_batch(d / "train")
    test = read_cifar_batch(d / "test")
    key = f"{label}_labels"
    split = CifarSplit(train=(train["images"], _labels(train, key, d)),
                       test=(test["images"], _labels(test, key, d)), class_names=names)
    _check_range(split, d)
    return split


def _labels(batch: dict, key: str, d: Path) -> np.ndarray:
    if key not in batch:
        raise ValueError(f"{d}: a batch has no '{key}' entry")
    return batch[key]


def _check_range(split: CifarSplit, d: Path) -> None:
    c = len(split["class_names"])
    for part in ("train", "test"):
        y = split[part][1]
        if y.size and (y.min() < 0 or y.max() >= c):
            raise ValueError(
                f"{d}: {part} labels must be in [0, {c}) for the {c} class names, found "
                f"[{y.min()}, {y.max()}]"
            )
