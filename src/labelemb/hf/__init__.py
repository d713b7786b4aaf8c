"""Label embedding in Hugging Face Transformers (optional: ``pip install labelemb[hf]``).

Importing :mod:`labelemb` never imports this package, nor ``transformers``.

Example::

    from transformers import BertConfig, Trainer, TrainingArguments
    from labelemb.hf import LabelEmbeddingConfig, LabelEmbeddingForSequenceClassification

    config = LabelEmbeddingConfig(encoder=BertConfig(...), num_labels=40, loss="emb")
    model = LabelEmbeddingForSequenceClassification(config)
    Trainer(model=model, args=TrainingArguments(...), train_dataset=...).train()
    model.save_pretrained("out")   # the learned label embedding is in the weights
"""

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from .callbacks import OnlineLabelSmoothingCallback
from .config import LOSSES, POOLINGS, PROBLEM_TYPES, LabelEmbeddingConfig
from .criterion import TrainerLoss, build_criterion
from .model import LabelEmbeddingForSequenceClassification, max_tokens, pool

# A saved model's config.json says model_type "labelemb": once this package is imported the
# Auto classes load it (without the import: trust_remote_code=True, see .autoload).
AutoConfig.register(LabelEmbeddingConfig.model_type, LabelEmbeddingConfig, exist_ok=True)
for _auto in (AutoModel, AutoModelForSequenceClassification):
    _auto.register(LabelEmbeddingConfig, LabelEmbeddingForSequenceClassification, exist_ok=True)

__all__ = [
    "LabelEmbeddingConfig", "LabelEmbeddingForSequenceClassification",
    "OnlineLabelSmoothingCallback", "TrainerLoss", "build_criterion", "pool", "max_tokens",
    "LOSSES", "POOLINGS", "PROBLEM_TYPES",
]
