"""Reader for the IDX format of MNIST and Fashion-MNIST (``.gz`` or raw).

An IDX file is a 4-byte magic ``00 00 <dtype> <ndim>``, ``ndim`` big-endian int32 sizes, then
the values in C order, big-endian. Files are recognised as gzip by their first two bytes, not
by their name.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["read_idx"]

# IDX type code -> big-endian numpy dtype.
_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise ValueError(
            f"{path}: the gzip stream is truncated or corrupt ({err}); delete the file and "
            "download it again (labelemb data download NAME)"
        ) from err


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file into a native-endian array.

    Args:
        path: the ``.gz`` or raw IDX file.
        ndim: the expected number of dimensions (3 for images, 1 for labels), checked.

    Raises:
        FileNotFoundError: no such file.
        ValueError: bad magic, unexpected ``ndim``, or a size that does not match the header;
            the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no IDX file at {path}")
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (magic bytes {data[:4].hex() or 'missing'})")
    code, dims = data[2], data[3]
    if code not in _DTYPES:
        raise ValueError(f"{path}: unknown IDX data type 0x{code:02x}")
    if ndim is not None and dims != ndim:
        raise ValueError(f"{path}: expected an IDX file with {ndim} dimension(s), found {dims}")
    header = 4 + 4 * dims
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{dims}i", data[4:header]) if dims else ()
    if any(s < 0 for s in shape):
        raise ValueError(f"{path}: negative size in IDX header {shape}")
    dtype = _DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: {what}: header says shape {tuple(shape)} ({expected} bytes of data), "
            f"found {got} bytes; delete the file and download it again"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)
