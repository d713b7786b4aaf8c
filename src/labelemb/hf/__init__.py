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

from transformers import (AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM,
                          AutoModelForSequenceClassification)

from .callbacks import OnlineLabelSmoothingCallback
from .causal_lm import LabelEmbeddingForCausalLM
from .config import LOSSES, POOLINGS, PROBLEM_TYPES, LabelEmbeddingConfig
from .criterion import TrainerLoss, build_criterion
from .lm_config import LabelEmbeddingCausalLMConfig, LabelEmbeddingSeq2SeqLMConfig
from .model import LabelEmbeddingForSequenceClassification, max_tokens, pool
from .seq2seq_lm import LabelEmbeddingForSeq2SeqLM

# A saved model's config.json says model_type "labelemb": once this package is imported the
# Auto classes load it (without the import: trust_remote_code=True, see .autoload).
AutoConfig.register(LabelEmbeddingConfig.model_type, LabelEmbeddingConfig, exist_ok=True)
for _auto in (AutoModel, AutoModelForSequenceClassification):
    _auto.register(LabelEmbeddingConfig, LabelEmbeddingForSequenceClassification, exist_ok=True)
AutoConfig.register(LabelEmbeddingCausalLMConfig.model_type, LabelEmbeddingCausalLMConfig,
                    exist_ok=True)
AutoModelForCausalLM.register(LabelEmbeddingCausalLMConfig, LabelEmbeddingForCausalLM,
                              exist_ok=True)
AutoConfig.register(LabelEmbeddingSeq2SeqLMConfig.model_type, LabelEmbeddingSeq2SeqLMConfig,
                    exist_ok=True)
AutoModelForSeq2SeqLM.register(LabelEmbeddingSeq2SeqLMConfig, LabelEmbeddingForSeq2SeqLM,
                               exist_ok=True)

__all__ = [
    "LabelEmbeddingConfig", "LabelEmbeddingForSequenceClassification",
    "OnlineLabelSmoothingCallback", "TrainerLoss", "build_criterion", "pool", "max_tokens",
    "LOSSES", "POOLINGS", "PROBLEM_TYPES", "LabelEmbeddingCausalLMConfig",
    "LabelEmbeddingForCausalLM", "LabelEmbeddingSeq2SeqLMConfig", "LabelEmbeddingForSeq2SeqLM",
]
