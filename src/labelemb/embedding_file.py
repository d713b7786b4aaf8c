"""The safetensors file of a label embedding: its format tag, and the checks made on a file's
header before a byte of tensor data is read (:func:`labelemb.load_embedding` uses them).

A hostile or damaged file must cost at most its own size to refuse, and every refusal is a
``ValueError`` that names the file and the field. Nothing here unpickles anything.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["FORMAT", "FORMAT_VERSION", "read_embedding_file", "loading_device"]

FORMAT = "labelemb.embedding"
FORMAT_VERSION = "1"

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
        # Python ints: a hostile num_classes cannot overflow the size (torch.Size wraps to 0).
        nbytes = _FLOAT_BYTES[dtype] * math.prod(want)
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


def read_embedding_file(path: Path) -> tuple[dict[str, str], int, list[str] | None,
                                             dict[str, Tensor]]:
    """``(metadata, num_classes, class_names, tensors)`` of a file written by save_embedding.

    Everything in the header (format tag, ``num_classes``, ``dim``, ``class_names``, tensor
    names, dtypes and shapes against the metadata, that the data fits in the file) is checked
    before any tensor is read; then the values must be finite.
    """
    meta, entries, data_size = _read_header(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} was not written by labelemb.save_embedding (no format tag)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has embedding format version {meta.get('format_version')!r}; this "
            f"labelemb reads version {FORMAT_VERSION}"
        )
    num_classes = _meta_int(path, meta, "num_classes")
    names = _meta_class_names(path, meta, num_classes)
    shapes = _expected_shapes(path, meta, num_classes, set(entries))
    source = ", ".join(f"{k}={meta[k]}" for k in ("num_classes", "dim") if k in meta)
    _check_entries(path, entries, shapes, data_size, source)
    return meta, num_classes, names, _read_tensors(path, list(shapes))


def loading_device(device: str | torch.device | int) -> torch.device:
    """``device`` (``load_embedding(..., device=)``) as a ``torch.device`` this machine has.

    A name torch does not know (``"foo"``: its RuntimeError), a backend this build or machine
    lacks (``"cuda"`` on a CPU build: torch's AssertionError) or a missing CUDA index is a
    ``ValueError`` naming ``device``; ``"meta"`` too, since it would keep no values. Checked
    before the file is read.
    """
    try:
        dev = torch.device(device)
    except TypeError:
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}"
                        ) from None
    except RuntimeError:
        raise ValueError(f"device {device!r} is not a device name; use 'cpu', 'cuda' or "
                         "'cuda:N'") from None
    if dev.type == "meta":
        raise ValueError("device 'meta' would keep no values of the embedding; load it on a "
                         "real device ('cpu', 'cuda')")
    try:
        torch.empty(0, device=dev)  # the backend, the build and the index, all at once
    except (RuntimeError, AssertionError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"device {device!r} is not available here ({reason}); load on a "
                         "device this machine has, e.g. device='cpu'") from None
    return dev
