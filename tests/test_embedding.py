"""Embeddings: initialisation, the compressed form's memory, safetensors round trips."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from labelemb import (
    CompressedLabelEmbedding,
    FixedLabelEmbedding,
    LabelEmbedding,
    LabelEmbeddingLoss,
    load_embedding,
    save_embedding,
)

MiB = 2**20


def test_full_embedding_starts_at_identity():
    emb = LabelEmbedding(4)
    torch.testing.assert_close(emb(torch.tensor([2, 0])), torch.eye(4)[[2, 0]])
    assert emb.to_dense() is emb.weight


def test_compressed_is_relu_of_a_times_b():
    torch.manual_seed(0)
    emb = CompressedLabelEmbedding(30, dim=7)
    y = torch.tensor([3, 3, 29])
    expected = torch.relu(emb.A.weight[y] @ emb.B.weight.T + emb.B.bias)
    torch.testing.assert_close(emb(y), expected)
    assert (emb(y) >= 0).all()
    dense = emb.to_dense()
    assert dense.shape == (30, 30)
    torch.testing.assert_close(dense[y], expected)


class _LargestOutput(TorchDispatchMode):
    """Records the shape of every tensor any aten op produces."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
        return out


def test_compressed_at_50k_labels_fits_the_papers_memory_and_never_builds_c_by_c():
    C, dim, n = 50_000, 100, 4096
    emb = CompressedLabelEmbedding(C, dim)
    bytes_without_bias = sum(
        p.numel() * p.element_size() for name, p in emb.named_parameters() if name != "B.bias"
    )
    assert bytes_without_bias / MiB <= 38.5  # the paper: 38.15 MB
    y = torch.randint(0, C, (n,))
    with _LargestOutput() as mode:
        out = emb(y)
        out.float().sum().backward()
    assert out.shape == (n, C)
    # No op, forward or backward, produced anything with C rows and C columns.
    assert not any(len(s) >= 2 and s[-1] >= C and s[-2] >= C for s in mode.shapes)
    assert max(torch.Size(s).numel() for s in mode.shapes) <= n * C


@pytest.mark.parametrize(
    "make",
    [
        lambda: LabelEmbedding(6),
        lambda: CompressedLabelEmbedding(6, 3),
        lambda: CompressedLabelEmbedding(6, 3, bias=False),
    ],
    ids=["full", "compressed", "compressed-nobias"],
)
def test_save_load_round_trip_is_bit_exact(tmp_path, make):
    torch.manual_seed(0)
    emb = make()
    with torch.no_grad():
        for p in emb.parameters():
            p.add_(torch.randn_like(p))
    names = [f"class-{i}" for i in range(6)]
    path = save_embedding(emb, tmp_path / "e.safetensors", class_names=names)
    back = load_embedding(path)
    assert type(back) is type(emb)
    assert back.class_names == names
    for (k, a), (k2, b) in zip(emb.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    y = torch.arange(6)
    assert torch.equal(emb(y), back(y))
    frozen = load_embedding(path, frozen=True)
    assert isinstance(frozen, FixedLabelEmbedding) and torch.equal(frozen(y), emb(y))
    assert not list(tmp_path.glob("*.tmp"))


def test_class_names_with_unicode_and_from_module(tmp_path):
    emb = LabelEmbedding(3, class_names=["chó", "mèo", "đỏ"])
    save_embedding(emb, tmp_path / "e.safetensors")
    assert load_embedding(tmp_path / "e.safetensors").class_names == ["chó", "mèo", "đỏ"]
    with pytest.raises(ValueError, match="class_names has 2 names"):
        LabelEmbedding(3, class_names=["a", "b"])


def test_fixed_embedding_is_frozen_and_round_trips(tmp_path):
    torch.manual_seed(0)
    trained = CompressedLabelEmbedding(5, 2)
    fixed = FixedLabelEmbedding(trained)
    assert not any(p.requires_grad for p in fixed.parameters())
    assert fixed.trainable is False and trained.trainable is True
    with torch.no_grad():
        trained.A.weight.add_(1.0)  # a copy: later training of the source does not leak in
    assert not torch.equal(fixed(torch.arange(5)), trained(torch.arange(5)))
    save_embedding(fixed, tmp_path / "f.safetensors")
    again = FixedLabelEmbedding.from_file(tmp_path / "f.safetensors")
    assert torch.equal(again(torch.arange(5)), fixed(torch.arange(5)))
    from_tensor = FixedLabelEmbedding(torch.eye(3) * 2)
    torch.testing.assert_close(from_tensor(torch.tensor([1])), torch.tensor([[0.0, 2.0, 0.0]]))
    # A fixed embedding inside the loss stays frozen through train().
    crit = LabelEmbeddingLoss(from_tensor).train()
    assert not any(p.requires_grad for p in crit.parameters())


def test_fixed_embedding_rejects_bad_sources():
    with pytest.raises(ValueError, match="square"):
        FixedLabelEmbedding(torch.zeros(3, 4))
    with pytest.raises(TypeError, match="floating"):
        FixedLabelEmbedding(torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="source"):
        FixedLabelEmbedding([[1.0]])


def test_pickle_files_are_refused(tmp_path):
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"weight": [1, 2, 3]}))
    with pytest.raises(ValueError, match="never unpickles"):
        load_embedding(evil)
    torch_file = tmp_path / "torch.safetensors"
    torch.save({"weight": torch.eye(3)}, torch_file)
    with pytest.raises(ValueError, match="pickle"):
        load_embedding(torch_file)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"hello world, not a tensor file")
    with pytest.raises(ValueError, match="not a safetensors"):
        load_embedding(junk)
    with pytest.raises(FileNotFoundError):
        load_embedding(tmp_path / "missing.safetensors")


def test_foreign_safetensors_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.eye(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not written by labelemb"):
        load_embedding(tmp_path / "other.safetensors")


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_sizes_are_named(bad):
    with pytest.raises(ValueError, match="num_classes"):
        LabelEmbedding(bad)
    with pytest.raises(ValueError, match="dim"):
        CompressedLabelEmbedding(4, dim=bad)
