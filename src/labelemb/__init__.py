"""labelemb: the Label Embedding Network (Sun et al.) for any PyTorch model.

The method lives in :mod:`labelemb.head` (two output layers), :mod:`labelemb.embedding` (the
label embeddings) and :mod:`labelemb.loss` / :mod:`labelemb.functional` (the five-term loss).

The names below are imported on first use (PEP 562), not with the package, so that the
command line's Ctrl-C boundary is in place before torch is imported: an interrupt in the first
second of ``labelemb ...`` is one line and exit 130, not a traceback (:mod:`labelemb.interrupt`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .interrupt import guard_program_start

guard_program_start(__name__)  # only under `python -m labelemb`

__version__ = "0.1.0"

#: public name -> the submodule that defines it
_EXPORTS: dict[str, str] = {
    "LabelEmbeddingHead": "head",
    "LabelEmbedding": "embedding",
    "CompressedLabelEmbedding": "embedding",
    "FixedLabelEmbedding": "embedding",
    "save_embedding": "embedding",
    "load_embedding": "embedding",
    "LabelEmbeddingLoss": "loss",
    "PRESETS": "loss",
    "LossOutput": "functional",
    "LossOptions": "functional",
    "label_embedding_loss": "functional",
    "ChunkedLabelEmbeddingLoss": "chunked",
    "chunked_label_embedding_loss": "chunked",
    "LabelSmoothingLoss": "baselines",
    "OnlineLabelSmoothingLoss": "baselines",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:  # what type checkers and IDEs read; at run time __getattr__ imports
    from .baselines import LabelSmoothingLoss, OnlineLabelSmoothingLoss
    from .chunked import ChunkedLabelEmbeddingLoss, chunked_label_embedding_loss
    from .embedding import (CompressedLabelEmbedding, FixedLabelEmbedding, LabelEmbedding,
                            load_embedding, save_embedding)
    from .functional import LossOptions, LossOutput, label_embedding_loss
    from .head import LabelEmbeddingHead
    from .loss import PRESETS, LabelEmbeddingLoss


def __getattr__(name: str) -> Any:
    """``labelemb.X``: a public name from its submodule, or one of those submodules
    (``labelemb.loss``), as when the package imported them itself."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _EXPORTS.values():
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
