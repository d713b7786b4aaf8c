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

__all__ = [
    "LabelEmbedding",
    "CompressedLabelEmbedding",
    "FixedLabelEmbedding",
    "save_embedding",
    "load_embedding",
]

_FORMAT = "labelemb.embedding"
_FORMAT_VERSION = "1"


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
                raise ValueError(
                    f"class_names has {len(class_names)} names but the embedding has "
                    f"{self.num_classes} classes"
                )
        self.class_names = class_names

    def to_dense(self) -> Tensor:
        """The full ``(C, C)`` matrix of label-embedding logits, row ``y`` = label ``y``."""
        idx = torch.arange(self.num_classes, device=_device_of(self))
        return self(idx)


def _device_of(module: nn.Module) -> torch.device:
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


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

    def __init__(
        self,
        num_classes: int,
        dim: int = 100,
        bias: bool = True,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        _check_positive("num_classes", num_classes)
        _check_positive("dim", dim)
        self.num_classes = int(num_classes)
        self.dim = int(dim)
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

    def __init__(
        self, source: Tensor | _Embedding, class_names: Sequence[str] | None = None
    ) -> None:
        super().__init__()
        if isinstance(source, FixedLabelEmbedding):
            source = source.inner
        if isinstance(source, Tensor):
            if source.dim() != 2 or source.shape[0] != source.shape[1]:
                raise ValueError(
                    f"source must be a square (C, C) tensor, got shape {tuple(source.shape)}"
                )
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
            raise TypeError(
                "source must be a (C, C) tensor or a LabelEmbedding/CompressedLabelEmbedding, "
                f"got {type(source).__name__}"
            )
        inner.requires_grad_(False)
        self.inner = inner
        self.num_classes = inner.num_classes
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


def save_embedding(
    embedding: _Embedding,
    path: str | os.PathLike,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Write ``embedding`` to ``path`` as safetensors; class names go in the metadata.

    The file is written to a temporary name and renamed, so a killed process never leaves a
    half-written embedding behind. Returns the path.
    """
    from safetensors.torch import save_file

    frozen = isinstance(embedding, FixedLabelEmbedding)
    inner = embedding.inner if frozen else embedding
    if isinstance(inner, LabelEmbedding):
        kind = "full"
        tensors = {"weight": inner.weight.detach()}
        meta = {}
    elif isinstance(inner, CompressedLabelEmbedding):
        kind = "compressed"
        tensors = {"A": inner.A.weight.detach(), "B": inner.B.weight.detach()}
        if inner.B.bias is not None:
            tensors["bias"] = inner.B.bias.detach()
        meta = {"dim": str(inner.dim)}
    else:
        raise TypeError(f"cannot save a {type(embedding).__name__}; expected a labelemb embedding")
    names = class_names if class_names is not None else embedding.class_names
    if names is not None and len(names) != embedding.num_classes:
        raise ValueError(
            f"class_names has {len(names)} names but the embedding has "
            f"{embedding.num_classes} classes"
        )
    metadata = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "kind": kind,
        "num_classes": str(embedding.num_classes),
        "frozen": str(frozen).lower(),
        **meta,
    }
    if names is not None:
        metadata["class_names"] = json.dumps([str(n) for n in names], ensure_ascii=False)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


#: safetensors' own cap on the JSON header; also keeps a hostile length from being read.
_HEADER_MAX = 100_000_000
#: bytes per element of the floating dtypes an embedding may be stored in (safetensors' names)
_FLOAT_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
#: the advice for a file that save_embedding did write but that is damaged now
_COPY_AGAIN = "copy it again or train the run again"
_DAMAGED = "the file is damaged: " + _COPY_AGAIN


def _refuse_foreign(path: Path, head: bytes) -> None:
    """Raise the ``ValueError`` for a file that is not safetensors, saying what it looks like."""
    if head[:1] == b"\x80" or head[:2] == b"PK":
        raise ValueError(
            f"{path} is a pickle / torch.save file; labelemb loads safetensors only and never "
            "unpickles (a pickle can run arbitrary code). Re-save it with labelemb.save_embedding."
        )
    raise ValueError(f"{path} is not a safetensors file written by labelemb.save_embedding")


def _read_header(path: Path) -> tuple[dict[str, str], dict[str, dict], int]:
    """The safetensors header of ``path``: (metadata, per-tensor entries, size of the data part).

    Reads only the header (8-byte little-endian length, then JSON), bounding the length by the
    file size first, so a hostile or truncated file costs at most its own size to refuse.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(9)
        n = int.from_bytes(prefix[:8], "little")
        if len(prefix) < 9 or prefix[8:9] != b"{" or n < 2 or n > _HEADER_MAX:
            _refuse_foreign(path, prefix)
        if n > size - 8:
            raise ValueError(
                f"{path} is truncated: its header needs {n} bytes, the file has {size - 8}; "
                + _COPY_AGAIN
            )
        raw = prefix[8:] + f.read(n - 1)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        # RecursionError: JSON nested deeper than Python's stack, as only a hostile file is.
        raise ValueError(f"{path}: the safetensors header is not valid JSON ({err}); "
                         f"{_DAMAGED}") from None
    meta = header.pop("__metadata__", None) if isinstance(header, dict) else None
    if not isinstance(header, dict) or not isinstance(meta, dict) or not all(
        isinstance(v, str) for v in meta.values()
    ):
        raise ValueError(f"{path} was not written by labelemb.save_embedding "
                         "(no string metadata in its header)")
    return meta, header, size - 8 - n


def _meta_int(path: Path, meta: dict[str, str], field: str) -> int:
    """Metadata ``field`` as a positive int (save_embedding writes plain decimal digits)."""
    text = meta.get(field)
    if text is None or not text.isascii() or not text.isdecimal() or int(text) < 1:
        raise ValueError(f"{path}: metadata {field} must be a positive int, got {text!r}; "
                         f"{_DAMAGED}")
    return int(text)


def _meta_class_names(path: Path, meta: dict[str, str], num_classes: int) -> list[str] | None:
    """Metadata ``class_names``: absent, or a JSON list of ``num_classes`` strings."""
    if "class_names" not in meta:
        return None
    try:
        names = json.loads(meta["class_names"])
    except (json.JSONDecodeError, RecursionError):
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: metadata class_names must be a JSON list of strings; "
                         f"{_DAMAGED}")
    if len(names) != num_classes:
        raise ValueError(f"{path}: metadata class_names has {len(names)} names but "
                         f"num_classes is {num_classes}; {_DAMAGED}")
    return names


def _expected_shapes(path: Path, meta: dict[str, str], num_classes: int,
                     present: set[str]) -> dict[str, tuple[int, ...]]:
    """Tensor name -> the shape the metadata implies, by embedding kind."""
    kind = meta.get("kind")
    if kind == "full":
        return {"weight": (num_classes, num_classes)}
    if kind == "compressed":
        dim = _meta_int(path, meta, "dim")
        # B is stored as nn.Linear(dim, C).weight, hence (C, dim) like A.
        shapes = {"A": (num_classes, dim), "B": (num_classes, dim)}
        if "bias" in present:
            shapes["bias"] = (num_classes,)
        return shapes
    raise ValueError(f"{path}: unknown embedding kind {kind!r} in its metadata "
                     "(expected 'full' or 'compressed')")


def _check_entries(path: Path, entries: dict[str, dict], shapes: dict[str, tuple[int, ...]],
                   data_size: int, source: str) -> None:
    """Each tensor entry: expected name, floating dtype, the metadata's shape, inside the file.

    ``source`` names the metadata the shapes come from (``num_classes=10``), for the message.
    """
    if set(entries) != set(shapes):
        raise ValueError(f"{path}: holds tensors {sorted(entries)}, its metadata implies "
                         f"{sorted(shapes)}; {_DAMAGED}")
    for name, want in shapes.items():
        entry = entries[name]
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: tensor {name!r} has no header entry; {_DAMAGED}")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in _FLOAT_BYTES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {dtype!r}; an embedding is "
                             f"floating point ({', '.join(_FLOAT_BYTES)})")
        if not isinstance(shape, list) or tuple(shape) != want:
            raise ValueError(f"{path}: tensor {name!r} has shape {shape}, but the metadata "
                             f"({source}) implies {list(want)}; {_DAMAGED}")
        nbytes = _FLOAT_BYTES[dtype] * torch.Size(want).numel()
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) for o in offsets)
                or offsets[0] < 0 or offsets[1] - offsets[0] != nbytes):
            raise ValueError(f"{path}: tensor {name!r} has data offsets {offsets}, which do "
                             f"not span its {nbytes} bytes; {_DAMAGED}")
        if offsets[1] > data_size:
            raise ValueError(f"{path} is truncated: tensor {name!r} ends at byte "
                             f"{offsets[1]} of the data, the file holds {data_size}; "
                             + _COPY_AGAIN)


def _read_tensors(path: Path, names: list[str]) -> dict[str, Tensor]:
    """Load the (already validated) tensors on the CPU and refuse non-finite values."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in names}
    except SafetensorError as err:  # what the header checks above did not foresee
        raise ValueError(f"{path}: cannot read the tensors ({err}); {_DAMAGED}") from None
    for name, t in tensors.items():
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise ValueError(
                f"{path}: tensor {name!r} holds {bad} non-finite value(s) (NaN or inf); the run "
                "that saved it diverged: train it again (e.g. with a lower learning rate)"
            )
    return tensors


def load_embedding(
    path: str | os.PathLike, *, frozen: bool | None = None, device: str | torch.device = "cpu"
) -> _Embedding:
    """Load an embedding written by :func:`save_embedding`.

    Args:
        path: the ``.safetensors`` file.
        frozen: return a :class:`FixedLabelEmbedding` (True), a trainable one (False), or
            whatever was saved (None).
        device: where to put the tensors.

    The returned module has ``class_names`` set when the file had them. Everything in the
    header (format tag, ``num_classes``, ``dim``, ``class_names``, tensor names, dtypes and
    shapes against the metadata, that the data fits in the file) is checked before any tensor
    is read, so a hostile header cannot make it allocate more than the file holds; then the
    values must be finite. Any failure, a pickle file included, is a ``ValueError`` naming the
    file and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no embedding file at {path}")
    meta, entries, data_size = _read_header(path)
    if meta.get("format") != _FORMAT:
        raise ValueError(f"{path} was not written by labelemb.save_embedding (no format tag)")
    if meta.get("format_version") != _FORMAT_VERSION:
        raise ValueError(
            f"{path} has embedding format version {meta.get('format_version')!r}; this "
            f"labelemb reads version {_FORMAT_VERSION}"
        )
    num_classes = _meta_int(path, meta, "num_classes")
    names = _meta_class_names(path, meta, num_classes)
    shapes = _expected_shapes(path, meta, num_classes, set(entries))
    source = ", ".join(f"{k}={meta[k]}" for k in ("num_classes", "dim") if k in meta)
    _check_entries(path, entries, shapes, data_size, source)
    tensors = _read_tensors(path, list(shapes))
    if "weight" in tensors:
        emb: _Embedding = LabelEmbedding(num_classes)
        state = {"weight": tensors["weight"]}
    else:
        dim = shapes["A"][1]
        emb = CompressedLabelEmbedding(num_classes, dim, bias="bias" in tensors)
        state = {"A.weight": tensors["A"], "B.weight": tensors["B"]}
        if "bias" in tensors:
            state["B.bias"] = tensors["bias"]
    emb.load_state_dict(state)
    emb = emb.to(device)
    emb._set_class_names(names)
    if frozen is None:
        frozen = meta.get("frozen") == "true"
    return FixedLabelEmbedding(emb) if frozen else emb
