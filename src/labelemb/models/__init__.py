"""Backbones from the paper (features only; pair with LabelEmbeddingHead) and seq2seq models."""
