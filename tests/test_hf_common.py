"""Transformers' own common model tests (``ModelTesterMixin``, ``ConfigTester`` of the installed
version's source package, see tests/transformers_suite.py) on
LabelEmbeddingForSequenceClassification with a tiny BERT encoder.

No test is skipped here: every skip is the mixin's own, naming what this model or machine does
not have (an accelerator, Flash Attention, a language-modeling head, ...); docs/TRANSFORMERS.md
lists them. The whole module is skipped only when the suite is not fetched."""

import unittest

import pytest

pytest.importorskip("transformers")  # the [hf] extra

import torch  # noqa: E402
from transformers import BertConfig  # noqa: E402

from labelemb.hf import (LabelEmbeddingConfig,  # noqa: E402
                         LabelEmbeddingForSequenceClassification)
from transformers_suite import load  # noqa: E402

suite = load()  # skips this module when the suite is not fetched (scripts/setup.sh --dev)


class TinyBertTester:
    """The sizes of transformers' own ``BertModelTester``, as a label-embedding classifier."""

    def __init__(self, parent, batch_size=13, seq_length=7, vocab_size=99, hidden_size=32,
                 num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                 max_position_embeddings=64, num_labels=3, loss="emb", pooling="pooled"):
        self.parent = parent
        self.batch_size, self.seq_length, self.vocab_size = batch_size, seq_length, vocab_size
        self.hidden_size, self.num_hidden_layers = hidden_size, num_hidden_layers
        self.num_attention_heads, self.intermediate_size = num_attention_heads, intermediate_size
        self.max_position_embeddings, self.num_labels, self.loss = (
            max_position_embeddings, num_labels, loss)
        self.pooling = pooling  # "pooled": every encoder parameter gets a gradient
        self.is_training = True

    def get_config(self) -> LabelEmbeddingConfig:
        encoder = BertConfig(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings, hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.1, type_vocab_size=2)
        return LabelEmbeddingConfig(encoder=encoder, num_labels=self.num_labels, loss=self.loss,
                                    pooling=self.pooling)

    def prepare_config_and_inputs_for_common(self):
        input_ids = suite.ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        mask = suite.random_attention_mask([self.batch_size, self.seq_length])
        token_type_ids = suite.ids_tensor([self.batch_size, self.seq_length], 2)
        return self.get_config(), {"input_ids": input_ids, "attention_mask": mask,
                                   "token_type_ids": token_type_ids}


class LabelEmbeddingModelTest(suite.ModelTesterMixin, unittest.TestCase):
    all_model_classes = (LabelEmbeddingForSequenceClassification,)
    # The mixin skips models older than 2023 here unless told their _init_weights is right.
    test_can_init_all_missing_weights_before_2023 = True
    # The encoder is a sub-model with its own sub-config: the composite-model attention tests.
    _is_composite = True

    def setUp(self):
        self.model_tester = TinyBertTester(self)
        self.config_tester = suite.ConfigTester(self, config_class=LabelEmbeddingConfig,
                                                has_text_modality=False, loss="ce", smoothing=0.2)

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        """The mixin gives labels to the classes of Transformers' own mappings; ours is a
        sequence classifier too: one class index per sequence."""
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels)
        if return_labels:
            inputs_dict["labels"] = torch.zeros(self.model_tester.batch_size, dtype=torch.long)
        return inputs_dict

    def test_config(self):
        self.config_tester.run_common_tests()
