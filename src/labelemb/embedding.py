"""Label embeddings: modules that map class indices to soft-target logits.

Every embedding maps targets of shape ``(M,)`` to label-embedding logits ``(M, C)``; the soft
target of label ``y`` is ``softmax(embedding(y))`` (paper, Section 2.1).

* :class:`LabelEmbedding`: the full ``C x C`` matrix ``E``, identity initialised (Appendix A).
* :class:`CompressedLabelEmbedding`: ``ReLU(A[y] B)`` (Section 2.2, eq. 16), ``2*C*dim``
  parameters instead of ``C*C``; it never builds a ``C x C`` matrix.
* :class:`FixedLabelEmbedding`: a frozen, pre-trained embedding (Appendix C, eq. 17).

Embeddings are saved to and loaded from safetensors (:func:`save_embedding`,
:func:`load_embedding`); class names travel in the file's metadata. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .atomic import atomic_write
from .embedding_file import FORMAT, FORMAT_VERSION, loading_device, read_embedding_file

__all__ = ["LabelEmbedding", "CompressedLabelEmbedding", "FixedLabelEmbedding",
           "save_embedding", "load_embedding"]


class _Embedding(nn.Module):
    """Shared parts: ``num_classes``, optional ``class_names``, ``trainable``."""

    num_classes: int
    #: Names of the classes, index-aligned; travels with :func:`save_embedding`.
    class_names: list[str] | None

    trainable: bool = True

    def _set_class_names(self, class_names: Sequence[str] | None) -> None:
        if class_names is not None:
            class_names = [str(n) for n in class_names]
            if len(class_names) != self.num_classes:
                raise ValueError(f"class_names has {len(class_names)} names but the embedding "
                                 f"has {self.num_classes} classes")
        self.class_names = class_names

    def to_dense(self) -> Tensor:
        """The full ``(C, C)`` matrix of label-embedding logits, row ``y`` = label ``y``."""
        idx = torch.arange(self.num_classes, device=_device_of(self))
        return self(idx)


def _device_of(module: nn.Module) -> torch.device:
    first = next(iter([*module.parameters(), *module.buffers()]), None)
    return torch.device("cpu") if first is None else first.device


class LabelEmbedding(_Embedding):
    """The full label embedding ``E`` (``C x C``), row ``E[y]`` is the embedding of label ``y``.

    Initialised to the identity so each label starts most similar to itself (Appendix A).

    Args:
        num_classes: ``C``.
        class_names: optional names of the ``C`` classes.

    Shape:
        target ``(M,)`` integer -> ``(M, C)``.
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None) -> None:
        super().__init__()
        _check_positive("num_classes", num_classes)
        self.num_classes = int(num_classes)
        self.weight = nn.Parameter(torch.eye(self.num_classes))
        self._set_class_names(class_names)

    def forward(self, target: Tensor) -> Tensor:
        return F.embedding(target, self.weight)

    def to_dense(self) -> Tensor:
        return self.weight

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"


class CompressedLabelEmbedding(_Embedding):
    """Compressed label embedding ``e_y = ReLU(A[y] B + b)`` (Section 2.2, eq. 16).

    ``A`` is ``(C, dim)`` (the compressed label embeddings, ``N(0, 1)`` init as in the
    authors' code), ``B`` is ``(dim, C)`` stored as an ``nn.Linear(dim, C)``. For ``C = 50,000``
    and ``dim = 100`` that is 10M parameters (38.15 MiB) instead of 2.5G (9,536 MiB).

    Args:
        num_classes: ``C``.
        dim: the compressed size ``h``.
        bias: whether ``B`` has a bias (the authors' code has one).
        class_names: optional names of the ``C`` classes.

    Shape:
        target ``(M,)`` integer -> ``(M, C)``; only ``M`` rows are ever built.
    """

    def __init__(self, num_classes: int, dim: int = 100, bias: bool = True,
                 class_names: Sequence[str] | None = None) -> None:
        super().__init__()
        _check_positive("num_classes", num_classes)
        _check_positive("dim", dim)
        self.num_classes, self.dim = int(num_classes), int(dim)
        self.A = nn.Embedding(self.num_classes, self.dim)  # N(0, 1) init
        self.B = nn.Linear(self.dim, self.num_classes, bias=bias)
        self._set_class_names(class_names)

    def forward(self, target: Tensor) -> Tensor:
        return F.relu(self.B(self.A(target)))

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, dim={self.dim}, bias={self.B.bias is not None}"


class FixedLabelEmbedding(_Embedding):
    """A frozen, pre-trained label embedding (Appendix C, eq. 17).

    With it, :class:`~labelemb.LabelEmbeddingLoss` reduces to ``H(y, z1') + H(e', z1')`` and
    needs no auxiliary head.

    Args:
        source: a ``(C, C)`` tensor of label-embedding logits, or a trained
            :class:`LabelEmbedding` / :class:`CompressedLabelEmbedding` (copied, then frozen).
        class_names: optional names; by default taken from ``source``.

    Build from a saved file with :meth:`from_file`.
    """

    trainable = False

    def __init__(self, source: Tensor | _Embedding,
                 class_names: Sequence[str] | None = None) -> None:
        super().__init__()
        if isinstance(source, FixedLabelEmbedding):
            source = source.inner
        if isinstance(source, Tensor):
            if source.dim() != 2 or source.shape[0] != source.shape[1]:
                raise ValueError(f"source must be a square (C, C) tensor, got shape "
                                 f"{tuple(source.shape)}")
            if not source.is_floating_point():
                raise TypeError(f"source must be a floating tensor, got {source.dtype}")
            inner: _Embedding = LabelEmbedding(source.shape[0])
            with torch.no_grad():
                inner.weight.copy_(source.detach())
        elif isinstance(source, (LabelEmbedding, CompressedLabelEmbedding)):
            inner = _copy_embedding(source)
            if class_names is None:
                class_names = source.class_names
        else:
            raise TypeError("source must be a (C, C) tensor or a LabelEmbedding/"
                            f"CompressedLabelEmbedding, got {type(source).__name__}")
        inner.requires_grad_(False)
        self.inner, self.num_classes = inner, inner.num_classes
        self._set_class_names(class_names)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "FixedLabelEmbedding":
        """Load an embedding saved by :func:`save_embedding` and freeze it."""
        emb = load_embedding(path)
        return emb if isinstance(emb, cls) else cls(emb)

    def forward(self, target: Tensor) -> Tensor:
        return self.inner(target)


def _copy_embedding(emb: _Embedding) -> _Embedding:
    if isinstance(emb, LabelEmbedding):
        new: _Embedding = LabelEmbedding(emb.num_classes)
    else:
        assert isinstance(emb, CompressedLabelEmbedding)
        new = CompressedLabelEmbedding(emb.num_classes, emb.dim, bias=emb.B.bias is not None)
    new.load_state_dict(emb.state_dict())
    return new.to(_device_of(emb))


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


# --------------------------------------------------------------------------- save / load


def save_embedding(embedding: _Embedding, path: str | os.PathLike,
                   class_names: Sequence[str] | None = None) -> Path:
    """Write ``embedding`` to ``path`` as safetensors; class names go in the metadata.

    The file is written through :func:`labelemb.atomic.atomic_write` (temp file, fsync,
    rename, folder fsync), so a killed process never leaves a half-written embedding behind
    and a failed write leaves no temp file. Returns the path.
    """
    from safetensors.torch import save_file

    frozen = isinstance(embedding, FixedLabelEmbedding)
    inner = embedding.inner if frozen else embedding
    if isinstance(inner, LabelEmbedding):
        kind, tensors, meta = "full", {"weight": inner.weight.detach()}, {}
    elif isinstance(inner, CompressedLabelEmbedding):
        kind, tensors = "compressed", {"A": inner.A.weight.detach(), "B": inner.B.weight.detach()}
        if inner.B.bias is not None:
            tensors["bias"] = inner.B.bias.detach()
        meta = {"dim": str(inner.dim)}
    else:
        raise TypeError(f"cannot save a {type(embedding).__name__}; expected a labelemb embedding")
    names = class_names if class_names is not None else embedding.class_names
    if names is not None and len(names) != embedding.num_classes:
        raise ValueError(f"class_names has {len(names)} names but the embedding has "
                         f"{embedding.num_classes} classes")
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
                "num_classes": str(embedding.num_classes), "frozen": str(frozen).lower(), **meta}
    if names is not None:
        metadata["class_names"] = json.dumps([str(n) for n in names], ensure_ascii=False)
    contiguous = {k: v.contiguous().cpu() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(contiguous, str(tmp), metadata=metadata))


def load_embedding(path: str | os.PathLike, *, frozen: bool | None = None,
                   device: str | torch.device = "cpu") -> _Embedding:
    """Load an embedding written by :func:`save_embedding`.

    Args:
        path: the ``.safetensors`` file.
        frozen: return a :class:`FixedLabelEmbedding` (True), a trainable one (False), or
            whatever was saved (None).
        device: where to put the tensors; a device this machine lacks or a name torch does
            not know is a ``ValueError`` naming it, before the file is read.

    The returned module has ``class_names`` set when the file had them. Everything in the
    header (format tag, ``num_classes``, ``dim``, ``class_names``, tensor names, dtypes and
    shapes against the metadata, that the data fits in the file) is checked before any tensor
    is read, so a hostile header cannot make it allocate more than the file holds; then the
    values must be finite. Any failure, a pickle file included, is a ``ValueError`` naming the
    file and the field.
    """
    device = loading_device(device)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no embedding file at {path}")
    meta, num_classes, names, tensors = read_embedding_file(path)
    if "weight" in tensors:
        emb: _Embedding = LabelEmbedding(num_classes)
        state = {"weight": tensors["weight"]}
    else:
        dim = tensors["A"].shape[1]
        emb = CompressedLabelEmbedding(num_classes, dim, bias="bias" in tensors)
        state = {"A.weight": tensors["A"], "B.weight": tensors["B"]}
        if "bias" in tensors:
            state["B.bias"] = tensors["bias"]
    emb.load_state_dict(state)
    emb = emb.to(device)
    emb._set_class_names(names)
    frozen = meta.get("frozen") == "true" if frozen is None else frozen
    return FixedLabelEmbedding(emb) if frozen else emb
