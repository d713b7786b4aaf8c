"""Parallel text: strict line readers, tokenisation, and padded batches for seq2seq.

Input files are UTF-8 text, one sentence per line, line ``i`` of the source aligned with line
``i`` of the target. Bad input (a missing or empty file, bytes that are not UTF-8, files of
different line counts) raises one ``ValueError`` naming the file and, where there is one, the
line, before anything is written.
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np
import torch
from torch import Tensor

from .vocab import BOS, EOS, PAD, Vocab

__all__ = [
    "Tokenize", "read_lines", "tokenize", "ParallelCorpus", "read_parallel", "EncodedSide",
    "encode_corpus", "Batch", "collate", "batch_indices", "iter_batches",
]

Tokenize = Literal["words", "chars"]


def read_lines(path: str | os.PathLike) -> list[str]:
    """All lines of a UTF-8 text file (without line ends); refuses empty and non-UTF-8 files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    data = path.read_bytes()
    if not data.strip():
        raise ValueError(f"{path} is empty")
    raw_lines = data.split(b"\n")
    if raw_lines[-1] == b"":  # the usual trailing newline ends the last line
        raw_lines.pop()
    lines = []
    for i, raw in enumerate(raw_lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{path}:{i}: not valid UTF-8 (byte {raw[err.start]:#04x} at column {err.start + 1})"
            ) from None
        if i == 1:
            text = text.lstrip("\ufeff")  # a byte-order mark is not part of the sentence
        lines.append(text.rstrip("\r"))
    return lines


def tokenize(line: str, how: Tokenize = "words") -> list[str]:
    """``"words"``: split on whitespace (pre-tokenised text); ``"chars"``: every non-space
    character is a token (Chinese, LCSTS)."""
    if how == "words":
        return line.split()
    if how == "chars":
        return [c for c in line if not c.isspace()]
    raise ValueError(f"tokenize must be 'words' or 'chars', got {how!r}")


@dataclass
class ParallelCorpus:
    """Aligned sentences kept as strings (lean for LCSTS's 2.4M pairs); tokens on demand.

    ``src[i]`` translates/summarises to ``tgt[i]``; ``lines[i]`` is where pair ``i`` starts in
    the source file ``path`` (for messages and for mapping outputs back).
    """

    src: list[str]
    tgt: list[str]
    tokenize_as: Tokenize = "words"
    name: str = ""
    path: str = ""
    lines: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.src) != len(self.tgt):
            raise ValueError(f"{self.name}: {len(self.src)} sources but {len(self.tgt)} targets")
        if not self.lines:
            self.lines = list(range(1, len(self.src) + 1))

    def __len__(self) -> int:
        return len(self.src)

    def src_tokens(self, i: int) -> list[str]:
        return tokenize(self.src[i], self.tokenize_as)

    def tgt_tokens(self, i: int) -> list[str]:
        return tokenize(self.tgt[i], self.tokenize_as)

    def iter_tokens(self, side: Literal["src", "tgt", "both"]) -> Iterator[list[str]]:
        """Token lists of one side (or both, for a shared vocabulary)."""
        for i in range(len(self)):
            if side in ("src", "both"):
                yield self.src_tokens(i)
            if side in ("tgt", "both"):
                yield self.tgt_tokens(i)

    def subset(self, keep: Sequence[int]) -> "ParallelCorpus":
        return ParallelCorpus(
            [self.src[i] for i in keep], [self.tgt[i] for i in keep], self.tokenize_as,
            self.name, self.path, [self.lines[i] for i in keep],
        )

    def filter(self, max_len: int | None = None) -> "ParallelCorpus":
        """Training pairs only: drop pairs with an empty side or a side longer than ``max_len``
        tokens (evaluation sets are never filtered, so outputs stay aligned)."""
        keep = []
        for i in range(len(self)):
            ns, nt = len(self.src_tokens(i)), len(self.tgt_tokens(i))
            if ns and nt and (max_len is None or (ns <= max_len and nt <= max_len)):
                keep.append(i)
        return self.subset(keep)

    def head(self, n: int | None) -> "ParallelCorpus":
        return self if n is None or n >= len(self) else self.subset(range(n))


def read_parallel(
    src_path: str | os.PathLike, tgt_path: str | os.PathLike, tokenize_as: Tokenize = "words",
    name: str | None = None,
) -> ParallelCorpus:
    """Read two aligned files; their line counts must match."""
    src_lines = read_lines(src_path)
    tgt_lines = read_lines(tgt_path)
    if len(src_lines) != len(tgt_lines):
        raise ValueError(
            f"parallel files differ in length: {src_path} has {len(src_lines)} lines, "
            f"{tgt_path} has {len(tgt_lines)} (line {min(len(src_lines), len(tgt_lines)) + 1} "
            "has no partner)"
        )
    return ParallelCorpus(
        src_lines, tgt_lines, tokenize_as, name or Path(src_path).stem, str(src_path)
    )


class EncodedSide:
    """Id sequences of one side, stored flat (int32) with offsets: 4 bytes a token."""

    def __init__(self, sequences: Iterator[list[int]]) -> None:
        flat: array = array("i")
        offsets: array = array("q", [0])
        for ids in sequences:
            flat.extend(ids)
            offsets.append(len(flat))
        self.flat = np.frombuffer(flat, dtype=np.int32) if len(flat) else np.zeros(0, np.int32)
        self.offsets = np.frombuffer(offsets, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.flat[self.offsets[i] : self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def encode_corpus(
    corpus: ParallelCorpus, src_vocab: Vocab, tgt_vocab: Vocab
) -> tuple[EncodedSide, EncodedSide]:
    """Map both sides to ids (no BOS/EOS; :func:`collate` adds them)."""
    src = EncodedSide(src_vocab.encode(corpus.src_tokens(i)) for i in range(len(corpus)))
    tgt = EncodedSide(tgt_vocab.encode(corpus.tgt_tokens(i)) for i in range(len(corpus)))
    return src, tgt


# --------------------------------------------------------------------------- batches


@dataclass
class Batch:
    """A padded batch.

    Shapes: ``src (B, S)``, ``src_lengths (B,)`` (on CPU, for packing), ``tgt_in (B, T)``
    (BOS + target), ``tgt_out (B, T)`` (target + EOS); padding is :data:`PAD`.
    ``index`` holds the corpus positions of the rows.
    """

    src: Tensor
    src_lengths: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    index: list[int]

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.src.to(device), self.src_lengths, self.tgt_in.to(device),
                     self.tgt_out.to(device), self.index)

    @property
    def num_tokens(self) -> int:
        return int((self.tgt_out != PAD).sum())


def _pad(rows: Sequence[Sequence[int]]) -> Tensor:
    out = torch.full((len(rows), max(1, max(len(r) for r in rows))), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        if len(r):
            out[i, : len(r)] = torch.as_tensor(np.asarray(r, dtype=np.int64))
    return out


def collate(
    src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]], index: Sequence[int] = ()
) -> Batch:
    """Pad id lists (without BOS/EOS) into a :class:`Batch`. An empty source becomes one EOS,
    since an LSTM cannot run over zero steps."""
    src_rows = [[int(x) for x in s] if len(s) else [EOS] for s in src_ids]
    tgt_in = [[BOS, *map(int, t)] for t in tgt_ids]
    tgt_out = [[*map(int, t), EOS] for t in tgt_ids]
    return Batch(
        _pad(src_rows), torch.tensor([len(s) for s in src_rows], dtype=torch.long),
        _pad(tgt_in), _pad(tgt_out), list(index) or list(range(len(src_rows))),
    )


def batch_indices(
    lengths: Sequence[int], batch_size: int, generator: torch.Generator | None = None,
    bucket: int = 50,
) -> list[list[int]]:
    """Split ``range(len(lengths))`` into batches of similar length.

    Without ``generator``: in order (evaluation, outputs stay aligned). With one: shuffle,
    sort within windows of ``bucket`` batches (less padding), then shuffle the batches;
    the order depends only on the generator's seed.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(lengths)
    if generator is None:
        order = list(range(n))
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    order = torch.randperm(n, generator=generator).tolist()
    window = batch_size * bucket
    batches = []
    for w in range(0, n, window):
        chunk = sorted(order[w : w + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    perm = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in perm]


def iter_batches(
    src: EncodedSide, tgt: EncodedSide, batches: list[list[int]]
) -> Iterator[Batch]:
    """Pad the pairs of each index list."""
    for idx in batches:
        yield collate([src[i] for i in idx], [tgt[i] for i in idx], idx)


def load_parallel_dir(
    data_dir: str | os.PathLike, src_ext: str, tgt_ext: str,
    prefixes: dict[str, str | None], tokenize_as: Tokenize = "words",
) -> dict[str, ParallelCorpus | None]:
    """``{split: read_parallel(data_dir/prefix.src_ext, data_dir/prefix.tgt_ext)}``.

    ``prefixes`` maps split names (``train``, ``dev``, ``test``) to file prefixes; a prefix of
    ``None`` skips the split. Every file is checked before any is parsed, so a missing file is
    reported first.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory {data_dir} does not exist")
    paths = {}
    for split, prefix in prefixes.items():
        if prefix is None:
            continue
        pair = (data_dir / f"{prefix}.{src_ext}", data_dir / f"{prefix}.{tgt_ext}")
        for p in pair:
            if not p.is_file():
                raise FileNotFoundError(f"{split} file {p} is missing")
        paths[split] = pair
    out: dict[str, ParallelCorpus | None] = {s: None for s in prefixes}
    for split, (s, t) in paths.items():
        out[split] = read_parallel(s, t, tokenize_as, name=split)
    return out
