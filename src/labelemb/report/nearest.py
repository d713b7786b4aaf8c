"""Most similar labels (the paper's Table 5), read off a learned label embedding.

**Similarity, as the paper reads it.** Row ``e_i`` of the embedding is label ``i``'s soft
target; its ``j``-th value "represents the similarity of label i to label j" (Section 2.1).
So the labels most similar to ``i`` are the other labels with the largest values of
``softmax(e_i)``, ``i`` itself excluded. The measure is directional (row ``i``, not column
``i``): ``j`` may be ``i``'s nearest label without ``i`` being ``j``'s. Ties go to the lower
index.

Only the requested rows are computed, in batches: for a :class:`CompressedLabelEmbedding`
over a vocabulary of ``V`` words, ``k`` words cost ``k x V`` values, never ``V x V``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from ..embedding import FixedLabelEmbedding

__all__ = [
    "Neighbour", "embedding_rows", "softmax_rows", "nearest_labels", "resolve_classes",
    "class_names_of", "special_labels", "nearest_to_markdown", "nearest_to_json", "TOP_K",
]


@dataclass(frozen=True)
class Neighbour:
    index: int
    name: str
    #: ``softmax(e_i)[index]``: the weight the soft target of ``i`` gives this label
    probability: float


#: neighbours listed per label unless asked otherwise (``inspect --top-k``, ``neighbours -k``)
TOP_K = 5

def _unwrap(embedding: nn.Module) -> nn.Module:
    return embedding.inner if isinstance(embedding, FixedLabelEmbedding) else embedding


def class_names_of(embedding: nn.Module) -> list[str]:
    """The embedding's class names, or ``"0", "1", ...`` when it has none."""
    names = getattr(embedding, "class_names", None) or getattr(_unwrap(embedding),
                                                                "class_names", None)
    return list(names) if names else [str(i) for i in range(embedding.num_classes)]


def special_labels(names: Sequence[str]) -> list[int]:
    """Indices of the labels written ``<...>``: a vocabulary's special symbols (``<pad>``,
    ``<unk>``, ``<s>``, ``</s>``), never anyone's similar word. Empty when every label is
    written so (then they are the classes themselves)."""
    special = [i for i, n in enumerate(names) if len(n) > 2 and n[0] == "<" and n[-1] == ">"]
    return special if len(special) < len(names) else []


@torch.no_grad()
def embedding_rows(embedding: nn.Module, indices: Sequence[int], batch_size: int = 1024,
                   progress=None) -> Tensor:
    """The label-embedding logits ``e_i`` for each ``i`` in ``indices``: ``(len(indices), C)``.

    Rows are built ``batch_size`` at a time through the embedding's forward, so a compressed
    embedding never materialises ``C x C``. ``progress`` optionally wraps the batch iterator.
    """
    idx = torch.as_tensor(list(indices), dtype=torch.long)
    device = next((p.device for p in embedding.parameters()), torch.device("cpu"))
    starts = range(0, len(idx), batch_size)
    if progress is not None:
        starts = progress(starts)
    out = [embedding(idx[s:s + batch_size].to(device)).float().cpu() for s in starts]
    if not out:
        return torch.empty(0, embedding.num_classes)
    return torch.cat(out)


def softmax_rows(embedding: nn.Module, indices: Sequence[int], batch_size: int = 1024,
                 progress=None) -> Tensor:
    """``softmax(e_i)`` for each ``i`` in ``indices``: ``(len(indices), C)``, float32."""
    return torch.softmax(embedding_rows(embedding, indices, batch_size, progress), dim=1)


def resolve_classes(names: Sequence[str], requested: Iterable[str | int]) -> list[int]:
    """Indices of ``requested`` items: a class name (exact match, first occurrence) or, if
    no class has that name, an integer index. Raises ``ValueError`` naming unknown items."""
    first: dict[str, int] = {}
    for i, n in enumerate(names):
        first.setdefault(n, i)
    out, unknown = [], []
    for item in requested:
        if isinstance(item, int) and not isinstance(item, bool):
            ok = 0 <= item < len(names)
            (out if ok else unknown).append(item)
            continue
        item = str(item)
        if item in first:
            out.append(first[item])
        elif item.lstrip("-").isdigit() and 0 <= int(item) < len(names):
            out.append(int(item))
        else:
            unknown.append(item)
    if unknown:
        preview = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        raise ValueError(
            f"--classes: unknown class(es) {unknown}: give names ({preview}) or indices "
            f"0..{len(names) - 1}"
        )
    return out


def nearest_labels(embedding: nn.Module, indices: Sequence[int] | None = None, k: int = TOP_K,
                   names: Sequence[str] | None = None, batch_size: int = 1024, progress=None,
                   exclude: Sequence[int] = ()) -> dict[int, list[Neighbour]]:
    """The ``k`` labels most similar to each label in ``indices`` (default: all).

    Returns ``{i: [Neighbour, ...]}`` in the order of ``indices``, most similar first, ``i``
    and the labels in ``exclude`` (e.g. a vocabulary's special symbols) never among the
    neighbours; ``k`` is capped at the number of labels left.
    """
    if k < 1:
        raise ValueError(f"k (--top-k) must be >= 1, got {k}")
    C = embedding.num_classes
    names = list(names) if names is not None else class_names_of(embedding)
    indices = list(range(C)) if indices is None else list(indices)
    exclude = sorted(set(int(j) for j in exclude))
    k = min(k, C - 1 - len([j for j in exclude if 0 <= j < C]))
    logits = embedding_rows(embedding, indices, batch_size=batch_size, progress=progress)
    logits_ranked = logits.clone()
    if exclude:
        logits_ranked[:, exclude] = -math.inf
    probs = torch.softmax(logits, dim=1)
    result: dict[int, list[Neighbour]] = {}
    for row, i in enumerate(indices):
        # Rank by the logits e_i: the same order as softmax(e_i) (monotone), without the
        # rounding of the float32 softmax that can swap near-equal labels.
        e = logits_ranked[row]
        e[i] = -math.inf  # exclude the label itself
        order = torch.sort(e, descending=True, stable=True).indices[:k].tolist()
        result[i] = [Neighbour(j, names[j], float(probs[row, j])) for j in order]
    return result


def nearest_to_markdown(near: dict[int, list[Neighbour]], names: Sequence[str], k: int) -> str:
    lines = [f"| label | top {k} most similar labels (softmax weight in the label's soft target) |",
             "|---|---|"]
    for i, ns in near.items():
        cells = ", ".join(f"{_md(n.name)} ({n.probability:.3g})" for n in ns)
        lines.append(f"| {_md(names[i])} | {cells} |")
    return "\n".join(lines) + "\n"


def nearest_to_json(near: dict[int, list[Neighbour]], names: Sequence[str]) -> str:
    obj = [{"index": i, "label": names[i],
            "nearest": [{"index": n.index, "label": n.name, "probability": n.probability}
                        for n in ns]}
           for i, ns in near.items()]
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")
