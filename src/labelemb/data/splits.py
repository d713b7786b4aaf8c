"""Splits labelemb draws itself: stratified by class and seeded, or sized verse counts.

One rule for every split of your own labelled data (the test split of a folder without
``test/``, the dev split held out of a dataset without one, ``--train-subset``): each class gets
its share in proportion to its count (largest remainders, so the total is exact), at least one
image, and, where the rest is trained on, at least one image stays behind. A class too small for
that is refused by name rather than left out of a split without a word. Which images of a class
are taken is drawn by a seeded shuffle, so a split depends on the seed only.

Data shipped in shuffled files (MNIST and Fashion-MNIST's IDX, the CIFAR batches) keeps the
split by position the published results used; :class:`labelemb.data.registry.ImageDataset`
says which rule applies (``stratify``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

__all__ = ["SPLIT_SEED", "class_quotas", "stratified_pick", "sized_split", "check_sizes"]

#: the seed of every split labelemb draws from own data, unless one is passed
SPLIT_SEED = 0


def class_quotas(counts: np.ndarray, n: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How many of each class a part of ``n`` takes: ``n * counts / counts.sum()`` rounded by
    largest remainders, within ``[lo, hi]`` per class. ``counts``, ``lo``, ``hi``: ``(C,)``
    ints with ``lo.sum() <= n <= hi.sum()``. Returns ``(C,)`` ints summing to ``n``."""
    target = n * counts / counts.sum()
    q = np.clip(np.floor(target).astype(np.int64), lo, hi)
    while q.sum() < n:  # give one more to the class furthest below its share
        room = np.where(q < hi, target - q, -np.inf)
        q[int(np.argmax(room))] += 1
    while q.sum() > n:  # take one from the class furthest above its share
        excess = np.where(q > lo, q - target, -np.inf)
        q[int(np.argmax(excess))] -= 1
    return q


def _names(classes: np.ndarray, names: Sequence[str]) -> str:
    shown = ", ".join(repr(names[c]) for c in classes[:5])
    return shown + (f" and {len(classes) - 5} more" if len(classes) > 5 else "")


def stratified_pick(y: np.ndarray, n: int, names: Sequence[str], *, seed: int, purpose: str,
                    keep_rest: bool, what: str, hint: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(picked, rest)`` of labels ``y (N,)``: ``picked`` holds ``n`` of them, every
    class of ``names`` in proportion (:func:`class_quotas`), at least one of each; with
    ``keep_rest`` at least one of each class stays in ``rest``. ``picked`` comes in a seeded
    random order (its first images are a mix of classes), ``rest`` in the order of ``y``.

    ``purpose`` tells draws with the same seed apart (a dev split drawn from a training subset
    is not the subset's own draw). Raises ``ValueError`` saying ``what`` cannot be drawn, naming
    the classes that are too small, and ``hint``.
    """
    counts = np.bincount(y, minlength=len(names)).astype(np.int64)
    present = np.flatnonzero(counts)
    lo = (counts > 0).astype(np.int64)
    hi = counts - lo if keep_rest else counts
    if keep_rest and (counts == 1).any():
        raise ValueError(f"cannot draw {what}: class {_names(np.flatnonzero(counts == 1), names)} "
                         f"has a single image, and each class needs one on each side; {hint}")
    if n < len(present):
        raise ValueError(f"cannot draw {what}: it needs at least one image of each of the "
                         f"{len(present)} classes; {hint}")
    if n > hi.sum():
        raise ValueError(f"cannot draw {what}: at least one image of each of the "
                         f"{len(present)} classes must stay; {hint}")
    quotas = class_quotas(counts, n, lo, hi)
    rng = random.Random(f"{purpose}:{seed}")
    picked: list[int] = []
    for c in present:
        members = np.flatnonzero(y == c).tolist()
        rng.shuffle(members)
        picked += members[: quotas[c]]
    rng.shuffle(picked)
    mask = np.zeros(len(y), dtype=bool)
    mask[picked] = True
    return np.asarray(picked, dtype=np.int64), np.flatnonzero(~mask)


def sized_split(n: int, dev_size: int, test_size: int, seed: int, unit: str
                ) -> dict[str, list[int]]:
    """``{"dev", "test", "train"}`` -> sorted indices of ``n`` items: ``dev_size`` and
    ``test_size`` drawn by a shuffle seeded with ``seed``, the rest train. Sizes below 1 (an
    empty split training refuses later) and sizes leaving no training item are refused,
    naming the flag and counting in ``unit`` ("verses")."""
    check_sizes(dev_size, test_size)
    if dev_size + test_size >= n:
        raise ValueError(f"--dev-size {dev_size} + --test-size {test_size} leave no training "
                         f"{unit} of the {n}; choose sizes that sum to less than {n}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return {"dev": sorted(order[:dev_size]),
            "test": sorted(order[dev_size:dev_size + test_size]),
            "train": sorted(order[dev_size + test_size:])}


def check_sizes(dev_size: int, test_size: int) -> None:
    """``--dev-size`` and ``--test-size`` are at least 1 (checked before any data is read)."""
    for flag, size in (("--dev-size", dev_size), ("--test-size", test_size)):
        if size < 1:
            raise ValueError(f"{flag} must be at least 1, got {size}: an empty split cannot be "
                             "trained or evaluated on")
