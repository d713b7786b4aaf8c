"""labelemb: the Label Embedding Network (Sun et al.) for any PyTorch model.

The method lives in :mod:`labelemb.head` (two output layers), :mod:`labelemb.embedding` (the
label embeddings) and :mod:`labelemb.loss` / :mod:`labelemb.functional` (the five-term loss).
"""

from .baselines import LabelSmoothingLoss, OnlineLabelSmoothingLoss
from .chunked import ChunkedLabelEmbeddingLoss, chunked_label_embedding_loss
from .embedding import (
    CompressedLabelEmbedding,
    FixedLabelEmbedding,
    LabelEmbedding,
    load_embedding,
    save_embedding,
)
from .functional import LossOptions, LossOutput, label_embedding_loss
from .head import LabelEmbeddingHead
from .loss import PRESETS, LabelEmbeddingLoss

__version__ = "0.1.0"

__all__ = [
    "LabelEmbeddingHead",
    "LabelEmbedding",
    "CompressedLabelEmbedding",
    "FixedLabelEmbedding",
    "save_embedding",
    "load_embedding",
    "LabelEmbeddingLoss",
    "PRESETS",
    "LossOutput",
    "LossOptions",
    "label_embedding_loss",
    "ChunkedLabelEmbeddingLoss",
    "chunked_label_embedding_loss",
    "LabelSmoothingLoss",
    "OnlineLabelSmoothingLoss",
    "__version__",
]
