"""Downloads that verify a checksum and never leave a partial file behind.

Each file is streamed into a temporary file beside its destination, checked against its
length and checksum, and only then renamed into place. Any failure (truncated transfer, wrong
checksum, network error) deletes the temporary file and raises an error that names the file
and how to fix it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["DownloadError", "download_file", "file_digest", "extract_tar"]

_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download failed or its content did not match; the message says what to do."""


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _split_checksum(checksum: str) -> tuple[str, str]:
    """``"md5:abc..."`` / ``"sha256:..."`` -> (algorithm, hex)."""
    algo, _, value = checksum.partition(":")
    if algo not in ("md5", "sha256") or not value:
        raise ValueError(f"checksum must be 'md5:<hex>' or 'sha256:<hex>', got {checksum!r}")
    return algo, value.lower()


def download_file(
    url: str, dest: str | os.PathLike, checksum: str | None = None, timeout: float = 60.0,
    quiet: bool = False,
) -> Path:
    """Fetch ``url`` into ``dest`` atomically and verify ``checksum`` (``"md5:..."`` or
    ``"sha256:..."``). Returns ``dest``.

    Raises:
        DownloadError: network error, truncated transfer or checksum mismatch; nothing is left
            at ``dest`` or beside it.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    algo, expected = _split_checksum(checksum) if checksum else (None, None)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.new(algo) if algo else None
        received = 0
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                length = resp.headers.get("Content-Length")
                total = int(length) if length is not None and length.isdigit() else None
                while True:
                    try:
                        chunk = resp.read(_CHUNK)
                    except http.client.IncompleteRead as err:
                        received += len(err.partial)
                        raise DownloadError(
                            f"{url}: transfer to {dest} was truncated after {received} of "
                            f"{total} bytes; nothing was kept, run the download again"
                        ) from None
                    if not chunk:
                        break
                    out.write(chunk)
                    received += len(chunk)
                    if h is not None:
                        h.update(chunk)
                out.flush()
                os.fsync(out.fileno())
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            raise DownloadError(
                f"could not download {url} to {dest}: {err}; check the network (or pass "
                "--url / --base-url for a mirror) and run the download again"
            ) from err
        if total is not None and received != total:
            raise DownloadError(
                f"{url}: transfer to {dest} was truncated after {received} of {total} bytes; "
                "nothing was kept, run the download again"
            )
        if h is not None and h.hexdigest() != expected:
            raise DownloadError(
                f"{dest.name} from {url} is corrupt: {algo} {h.hexdigest()} != expected "
                f"{expected}; nothing was kept. Run the download again; if it persists, the "
                "mirror serves a different file (try another with --base-url)"
            )
        os.replace(tmp, dest)
        if not quiet:
            print(f"downloaded {url} -> {dest} ({received} bytes)", flush=True)
        return dest
    finally:
        tmp.unlink(missing_ok=True)


def extract_tar(archive: str | os.PathLike, dest_dir: str | os.PathLike) -> None:
    """Extract a tar archive into ``dest_dir`` safely (no absolute paths, links out, devices).

    Extracts into a temporary folder and moves each top-level entry into place, so a
    half-extracted archive is never mistaken for the data.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract.", dir=dest_dir))
    try:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, EOFError, OSError) as err:
            raise DownloadError(
                f"{archive}: archive is truncated or corrupt ({err}); delete it and run the "
                "download again"
            ) from err
        for entry in tmp.iterdir():
            target = dest_dir / entry.name
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            os.replace(entry, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
