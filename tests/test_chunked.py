"""The chunked head + loss equals LabelEmbeddingHead + label_embedding_loss, gradients included."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from labelemb import (
    CompressedLabelEmbedding,
    FixedLabelEmbedding,
    LabelEmbedding,
    LabelEmbeddingHead,
    LabelEmbeddingLoss,
    label_embedding_loss,
)
from labelemb.chunked import (ChunkedLabelEmbeddingLoss, HeadLayers, block_size,
                              chunked_cross_entropy, chunked_label_embedding_loss,
                              default_chunk_size)

# 8 features: a block is the fewest chunks that make 16 rows, so the 24 targets of most tests
# run as two blocks of several chunks (chunk sizes 5 and 8) or as one chunk (100)
F_DIM, C = 8, 7
KINDS = ["full", "compressed", "fixed", "fixed-no-aux"]


def _setup(kind, n=24, seed=0, dtype=torch.float64, ignored=True, c=C, f=F_DIM):
    """Features, targets (some ignored, about half predicted right by the aux head), head, emb."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = LabelEmbeddingHead(f, c, aux=kind != "fixed-no-aux").to(dtype)
    if kind == "full":
        emb = LabelEmbedding(c).to(dtype)
        with torch.no_grad():
            emb.weight.add_(torch.randn(c, c, generator=g, dtype=dtype))
    elif kind == "compressed":
        emb = CompressedLabelEmbedding(c, 4).to(dtype)  # ReLU leaves some entries at 0
    else:
        emb = FixedLabelEmbedding(torch.randn(c, c, generator=g)).to(dtype)
    h = torch.randn(n, f, generator=g, dtype=dtype)
    y = torch.randint(0, c, (n,), generator=g)
    if head.aux:
        with torch.no_grad():
            head.aux_fc.weight.mul_(4.0)
            right = head(h)[1].argmax(1)
        y[: n // 2] = right[: n // 2]
    if ignored:
        y[::5] = -100
    return h.requires_grad_(True), y, head, emb


def _grads(loss, tensors):
    return torch.autograd.grad(loss, tensors, allow_unused=True)


def _trainable(h, head, emb):
    return [h, *head.parameters(), *(p for p in emb.parameters() if p.requires_grad)]


def _assert_same(ref, got, tensors, ref_grads, got_grads, rtol=1e-9, atol=1e-9):
    assert list(ref.terms) == list(got.terms)
    torch.testing.assert_close(got.loss, ref.loss, rtol=rtol, atol=atol)
    for k in ref.terms:
        torch.testing.assert_close(got.terms[k], ref.terms[k], rtol=rtol, atol=atol, msg=k)
    for t, a, b in zip(tensors, ref_grads, got_grads):
        a = torch.zeros_like(t) if a is None else a
        assert b is not None, f"no gradient for a tensor of shape {tuple(t.shape)}"
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol)


def _assert_chunked_is_plain(h, y, head, emb, chunk_sizes, **options):
    """The chunked loss at each of ``chunk_sizes`` equals the plain one: loss, terms and the
    gradient of every tensor that requires one. Returns the plain loss's output."""
    tensors = [t for t in _trainable(h, head, emb) if t.requires_grad]
    ref = label_embedding_loss(*head(h), y, emb, **options)
    ref_grads = _grads(ref.loss, tensors)
    for chunk_size in chunk_sizes:
        got = chunked_label_embedding_loss(h, y, head, emb, chunk_size=chunk_size, **options)
        _assert_same(ref, got, tensors, ref_grads, _grads(got.loss, tensors))
    return ref


# kind x hinge x reduction x mask_wrong, with the other options (warm-up included) cycling
# through their values, so every value of every option meets every embedding kind.
CASES = [(*c, (i + i // 2) % 2 == 1) for i, c in enumerate(itertools.product(
    KINDS, ["l1", "l2", "abs"], ["mean", "sum"], [True, False]))]
OTHER = list(itertools.product(["correct", "valid"], ["sum", "mean"], [0.5, None, 0.0, 1.0]))


@pytest.mark.parametrize("case", range(len(CASES)))
def test_loss_and_every_gradient_equal_unchunked(case):
    kind, hinge, reduction, mask_wrong, warming_up = CASES[case]
    normalizer, hinge_reduction, beta = OTHER[case % len(OTHER)]
    options = dict(hinge=hinge, reduction=reduction, mask_wrong=mask_wrong,
                   embedding_normalizer=normalizer, hinge_reduction=hinge_reduction, beta=beta,
                   alpha=0.3, tau=1.5, warmup_steps=3, step=1 if warming_up else 3)
    h, y, head, emb = _setup(kind, seed=case)
    # 5 does not divide the 24 targets, 8 does, 100 > N
    ref = _assert_chunked_is_plain(h, y, head, emb, (5, 8, 100), **options)
    assert ref.terms["ce"] > 0  # a comparison of real losses, not of zeros


@pytest.mark.parametrize("kind", ["full", "fixed-no-aux"])
def test_head_without_bias(kind):
    """The head's gradient blocks are rows of one weight; without a bias there is no bias
    block to fill (and with no aux layer, W1 is the whole weight)."""
    h, y, head, emb = _setup(kind, seed=7)
    for layer in (head.fc, head.aux_fc):
        if layer is not None:
            layer.bias = None
    assert not any(name.endswith("bias") for name, _ in head.named_parameters())
    tensors = _trainable(h, head, emb)
    ref = label_embedding_loss(*head(h), y, emb, alpha=0.3)
    ref_grads = _grads(ref.loss, tensors)
    got = chunked_label_embedding_loss(h, y, head, emb, chunk_size=5, alpha=0.3)
    _assert_same(ref, got, tensors, ref_grads, _grads(got.loss, tensors))


def test_embedding_ce_is_active_in_the_cases():
    # The equality above would be vacuous if the aux head never got a target right.
    h, y, head, emb = _setup("compressed")
    out = chunked_label_embedding_loss(h, y, head, emb, chunk_size=5)
    assert out.terms["embedding_ce"] > 0
    assert any(p.grad is None for p in emb.parameters())
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in emb.parameters())


@pytest.mark.parametrize("kind", ["full", "compressed"])
def test_float32_matches_to_float32_tolerance(kind):
    h, y, head, emb = _setup(kind, n=300, dtype=torch.float32)
    tensors = _trainable(h, head, emb)
    ref = label_embedding_loss(*head(h), y, emb)
    got = chunked_label_embedding_loss(h, y, head, emb, chunk_size=64)
    _assert_same(ref, got, tensors, _grads(ref.loss, tensors), _grads(got.loss, tensors),
                 rtol=1e-4, atol=1e-6)


def test_scaled_loss_scales_every_gradient():
    h, y, head, emb = _setup("compressed")
    tensors = _trainable(h, head, emb)
    ref = label_embedding_loss(*head(h), y, emb)
    got = chunked_label_embedding_loss(h, y, head, emb, chunk_size=5)
    _assert_same(ref, got, tensors, _grads(2.5 * ref.loss, tensors),
                 _grads(2.5 * got.loss, tensors))


def test_sequence_features_with_padding():
    # (B, T, F) decoder states and (B, T) targets with padding, as a seq2seq model has them.
    h, y, head, emb = _setup("compressed", n=24)
    h3, y3 = h.detach().reshape(4, 6, F_DIM).requires_grad_(True), y.reshape(4, 6)
    tensors = _trainable(h3, head, emb)
    logits, aux = head(h3)
    ref = label_embedding_loss(logits.transpose(1, 2), aux.transpose(1, 2), y3, emb)
    got = chunked_label_embedding_loss(h3, y3, head, emb, chunk_size=7)
    _assert_same(ref, got, tensors, _grads(ref.loss, tensors), _grads(got.loss, tensors))


def test_all_targets_ignored_gives_zero_loss_and_zero_gradients():
    h, y, head, emb = _setup("full")
    y = torch.full_like(y, -100)
    out = chunked_label_embedding_loss(h, y, head, emb, chunk_size=5)
    assert out.loss.item() == 0.0
    grads = _grads(out.loss, _trainable(h, head, emb))
    assert all(g is not None and g.abs().sum() == 0 for g in grads)


def test_never_builds_an_n_by_c_tensor():
    """The largest C-wide tensor holds one block's rows (the head's products), never N."""
    n, c, chunk, width = 1100, 50, 16, 40
    block = block_size(chunk, width)
    assert chunk < block < n

    class Sizes(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor) and t.dim() == 2:
                    # only the C-wide tensors matter; parameter-shaped ones are (C, F)/(C, dim)
                    if t.shape[1] == c:
                        Sizes.largest = max(Sizes.largest, t.shape[0])
            return out

    torch.manual_seed(0)
    head = LabelEmbeddingHead(width, c)
    emb = CompressedLabelEmbedding(c, 8)
    h = torch.randn(n, width, requires_grad=True)
    y = torch.randint(0, c, (n,))
    with Sizes():
        out = chunked_label_embedding_loss(h, y, head, emb, chunk_size=chunk, mask_wrong=False)
        out.loss.backward()
    assert Sizes.largest == block
    with Sizes():  # the unchunked path does build (N, C) tensors: the probe sees them
        label_embedding_loss(*head(h), y, emb)[0].backward()
    assert Sizes.largest == n


@pytest.mark.parametrize("kind", KINDS)
def test_several_blocks_equal_unchunked(kind):
    """Batches longer than a block: labels run across chunk and block boundaries (7 classes,
    1,100 targets), and every block reuses the buffers of the one before."""
    h, y, head, emb = _setup(kind, n=1100, f=64)
    # blocks of 133 rows (19 chunks) and of 300 (one chunk)
    assert [block_size(chunk_size, 64) for chunk_size in (7, 300)] == [133, 300]
    _assert_chunked_is_plain(h, y, head, emb, (7, 300), alpha=0.3, tau=1.5, warmup_steps=0)


@pytest.mark.parametrize("kind", KINDS)
def test_chunks_of_distinct_labels_equal_unchunked(kind):
    """With 200 classes most chunks' targets each have a label of their own, while the ignored
    targets share one row: label rows fitted by one target and rows shared by several."""
    h, y, head, emb = _setup(kind, n=40, c=200)
    chunks = y.clamp(min=0).sort().values.split(5)
    assert any(len(c.unique()) == len(c) for c in chunks)
    assert any(len(c.unique()) < len(c) for c in chunks)
    _assert_chunked_is_plain(h, y, head, emb, (5,), alpha=0.3, tau=1.5, warmup_steps=0)


@pytest.mark.parametrize("kind", ["full", "compressed"])
def test_chunks_whose_targets_do_not_train_the_embedding_equal_unchunked(kind):
    """With mask_wrong, a chunk none of whose targets the second head gets right skips e's
    gradient, and a block with none never zeroes it: labels 0-2 are predicted right and 3-6
    never, so in label order some chunks (and blocks) train e and others do not."""
    h, y, head, emb = _setup(kind, n=90)
    with torch.no_grad():
        right = head(h)[1].argmax(1)
    y = torch.where(right < 3, right, 3 + (right - 3 + 1) % 4)  # 3-6: another of 3-6
    y[::9] = -100
    for chunk in (4, 30):
        trains = (y == right)[y.clamp(min=0).sort(stable=True).indices].split(chunk)
        assert any(t.any() for t in trains) and not all(t.any() for t in trains)
    assert not (y == right)[y >= 3].any() and (y == right).sum() > 10
    _assert_chunked_is_plain(h, y, head, emb, (4, 30), alpha=0.3, tau=1.5, warmup_steps=0,
                             mask_wrong=True)


def test_default_sizes():
    """A chunk: as many rows as make one chunk x C float32 tensor 2 MiB, 16 to 64. A block: the
    fewest whole chunks that make twice the features' width, at most 512 rows."""
    sizes = {c: default_chunk_size(c) for c in (1, 7, 6_698, 8_192, 20_000, 32_000, 32_768,
                                                 50_000, 128_000, 10**6)}
    assert sizes == {1: 64, 7: 64, 6_698: 64, 8_192: 64, 20_000: 26, 32_000: 16, 32_768: 16,
                     50_000: 16, 128_000: 16, 10**6: 16}
    # (chunk, features): a 64-wide LM's head; the seq2seq models' 256 and 512; wider (capped);
    # a chunk larger than the rule's rows; one-row chunks; narrow features
    shapes = [(16, 64), (64, 256), (41, 512), (16, 512), (16, 4_096), (600, 512), (1, 1),
              (64, 8), (7, 64)]
    assert [block_size(c, f) for c, f in shapes] == [128, 512, 533, 512, 512, 600, 2, 64, 133]
    assert all(block_size(c, f) % c == 0 for c, f in shapes)  # whole chunks


@pytest.mark.parametrize("n, c", [(1, 7), (0, 7), (5, 300), (30, 2)])
def test_default_sizes_at_the_edges_equal_unchunked(n, c):
    """Default sizes (``chunk_size=None``) where they meet the batch's edges: one target, an
    empty batch, fewer targets than a chunk, a vocabulary smaller than a chunk."""
    h, y, head, emb = _setup("compressed", n=n, c=c, ignored=False)
    assert len(y) < default_chunk_size(c) <= block_size(default_chunk_size(c), F_DIM)
    ref = label_embedding_loss(*head(h), y, emb, warmup_steps=0)
    got = chunked_label_embedding_loss(h, y, head, emb, warmup_steps=0)
    tensors = _trainable(h, head, emb)
    if n == 0:  # nothing to average: both give the same (zero or nan) loss and zero gradients
        torch.testing.assert_close(got.loss, ref.loss, equal_nan=True)
        assert all(g is None or not g.any() for g in _grads(got.loss, tensors))
        return
    _assert_same(ref, got, tensors, _grads(ref.loss, tensors), _grads(got.loss, tensors))


def test_the_embedding_runs_once_per_distinct_label_of_a_block():
    """e_y depends on the label alone: the rows of one label share one embedding row, in the
    forward and in the embedding's backward."""
    torch.manual_seed(0)
    head, emb = LabelEmbeddingHead(F_DIM, C), CompressedLabelEmbedding(C, 4)
    h = torch.randn(40, F_DIM, requires_grad=True)
    y = torch.randint(0, C, (40,))
    seen: list[torch.Tensor] = []
    emb.register_forward_hook(lambda module, args, out: seen.append(args[0].clone()))
    chunked_label_embedding_loss(h, y, head, emb, chunk_size=40, mask_wrong=False).loss.backward()
    assert torch.equal(seen[0], torch.unique(y))  # 7 rows for 40 targets
    assert all(len(torch.unique(labels)) == len(labels) for labels in seen)


def test_module_matches_label_embedding_loss_through_warmup():
    h, y, head, emb = _setup("compressed")
    emb_copy = CompressedLabelEmbedding(C, 4).to(torch.float64)
    emb_copy.load_state_dict(emb.state_dict())
    chunked = ChunkedLabelEmbeddingLoss.from_preset("seq2seq", emb, warmup_steps=2,
                                                     chunk_size=5)
    plain = LabelEmbeddingLoss.from_preset("seq2seq", emb_copy, warmup_steps=2)
    assert chunked.state_dict().keys() == plain.state_dict().keys()
    for step in range(3):
        a = chunked(h, y, head)
        b = plain(*head(h), y)
        torch.testing.assert_close(a.loss, b.loss)
        torch.testing.assert_close(a.terms, b.terms)
        soft = a.loss - a.terms["ce"] - a.terms["aux_ce"] - a.terms["aux_hinge"] - a.terms[
            "embedding_ce"]  # the seq2seq preset weighs every term 1 once warm
        torch.testing.assert_close(soft, a.terms["soft_ce"] * (step >= 2))
    assert int(chunked.num_updates) == 3
    # a checkpoint of one loads into the other
    plain.load_state_dict(chunked.state_dict())


def test_no_grad_evaluation_computes_the_same_loss_without_gradients():
    h, y, head, emb = _setup("compressed")
    ref = label_embedding_loss(*head(h), y, emb)
    with torch.no_grad():
        got = chunked_label_embedding_loss(h, y, head, emb, chunk_size=5)
    assert got.loss.grad_fn is None
    torch.testing.assert_close(got.loss, ref.loss.detach())


def test_autocast_computes_in_float32():
    h, y, head, emb = _setup("compressed", dtype=torch.float32)
    ref = chunked_label_embedding_loss(h, y, head, emb)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = chunked_label_embedding_loss(h.bfloat16(), y, head, emb)
        got.loss.backward()
    assert got.loss.dtype == torch.float32
    assert h.grad.dtype == torch.float32 and head.fc.weight.grad.dtype == torch.float32
    torch.testing.assert_close(got.loss, ref.loss.detach(), rtol=2e-2, atol=2e-2)
    plain = label_embedding_loss(*head(h), y, emb).loss  # float32, the same default options
    ref_grads = _grads(plain, [h, *head.parameters()])
    for got_grad, ref_grad in zip([h.grad, *(p.grad for p in head.parameters())], ref_grads):
        torch.testing.assert_close(got_grad, ref_grad, rtol=5e-2, atol=2e-2)


def test_second_backward_is_refused():
    h, y, head, emb = _setup("full")
    out = chunked_label_embedding_loss(h, y, head, emb)
    out.loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="already backpropagated"):
        out.loss.backward()


@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(reduction="none"), ValueError, "reduction"),
        (dict(chunk_size=0), ValueError, "chunk_size"),
        (dict(hinge="l3"), ValueError, "hinge"),
        (dict(target=torch.tensor([0, 1, 99])), ValueError, "outside"),
        (dict(target=torch.tensor([0, 1])), ValueError, "target shape"),
        (dict(target=torch.tensor([0.0, 1.0, 2.0])), TypeError, "target"),
        (dict(features=torch.randn(3, F_DIM + 1)), ValueError, "features"),
        (dict(features=torch.tensor([[float("nan")] * F_DIM] * 3)), ValueError, "NaN"),
        (dict(head=LabelEmbeddingHead(F_DIM, C + 1)), ValueError, "classes"),
        (dict(head=LabelEmbeddingHead(F_DIM, C, aux=False)), ValueError, "aux"),
        (dict(head=torch.nn.Linear(F_DIM, C)), TypeError, "LabelEmbeddingHead"),
        (dict(embedding=torch.nn.Embedding(C, C)), TypeError, "embedding"),
        (dict(warmup_steps=5), ValueError, "step"),
    ],
)
def test_bad_input_is_named(change, error, match):
    kwargs = dict(features=torch.randn(3, F_DIM), target=torch.tensor([0, 1, 2]),
                  head=LabelEmbeddingHead(F_DIM, C), embedding=LabelEmbedding(C))
    options = {k: change.pop(k) for k in list(change) if k not in kwargs}
    kwargs.update(change)
    with pytest.raises(error, match=match):
        chunked_label_embedding_loss(kwargs["features"], kwargs["target"], kwargs["head"],
                                     kwargs["embedding"], **options)


def test_module_refuses_reduction_none_and_bad_chunk_size():
    with pytest.raises(ValueError, match="reduction"):
        ChunkedLabelEmbeddingLoss(LabelEmbedding(C), reduction="none")
    with pytest.raises(ValueError, match="chunk_size"):
        ChunkedLabelEmbeddingLoss(LabelEmbedding(C), chunk_size=-1)


@pytest.mark.parametrize("where", ["logits", "aux_logits"])
@pytest.mark.parametrize("value", [float("-inf"), float("inf"), float("nan")])
def test_validation_refuses_any_non_finite_logit(where, value):
    # label_embedding_loss checks finiteness with one aminmax per tensor: -inf anywhere too.
    h, y, head, emb = _setup("full", ignored=False)
    logits, aux = (z.detach().clone() for z in head(h))
    (logits if where == "logits" else aux)[3, 2] = value
    with pytest.raises(ValueError, match=f"^{where} contain NaN or inf"):
        label_embedding_loss(logits, aux, y, emb)


def test_transposed_features_and_int32_targets():
    """A (T, B, F) decoder output transposed to (B, T, F) is a view with other strides."""
    h, y, head, emb = _setup("full", n=24)
    seq = h.detach().reshape(4, 6, F_DIM).transpose(0, 1).requires_grad_()  # (6, 4, F), a view
    target = y.reshape(4, 6).t()
    ref = label_embedding_loss(*(z.reshape(-1, C) for z in head(seq.reshape(-1, F_DIM))),
                               target.reshape(-1), emb)
    got = chunked_label_embedding_loss(seq, target.int(), head, emb, chunk_size=5)
    torch.testing.assert_close(got.loss, ref.loss)
    ref_grad, = torch.autograd.grad(ref.loss, seq)
    got_grad, = torch.autograd.grad(got.loss, seq)
    torch.testing.assert_close(got_grad, ref_grad)


def test_a_head_the_chunked_loss_cannot_differentiate_is_refused():
    h, y, head, emb = _setup("full")
    torch.nn.utils.parametrizations.weight_norm(head.fc)
    with pytest.raises(TypeError, match="plain nn.Linear.*parametrizations"):
        chunked_label_embedding_loss(h, y, head, emb)


@pytest.mark.parametrize("change", ["old weight_norm", "forward hook", "backward hook",
                                    "forward override"])
def test_a_head_whose_outputs_are_not_plain_linear_is_refused(change):
    """The chunked loss makes the head's outputs itself: a hook or a new forward it would
    skip is refused, not silently ignored."""
    h, y, head, emb = _setup("full")
    if change == "old weight_norm":  # a pre-hook recomputes weight from weight_g, weight_v
        with pytest.warns(FutureWarning):
            torch.nn.utils.weight_norm(head.aux_fc)
    elif change == "forward hook":
        head.fc.register_forward_hook(lambda module, args, out: out * 2)
    elif change == "backward hook":
        head.fc.register_full_backward_hook(lambda module, grad_in, grad_out: None)
    else:
        head = type("Scaled", (LabelEmbeddingHead,), {
            "forward": lambda self, x: tuple(2 * o for o in LabelEmbeddingHead.forward(self, x))
        })(F_DIM, C).to(torch.float64)
    with pytest.raises(TypeError, match="plain nn.Linear|overrides forward"):
        chunked_label_embedding_loss(h, y, head, emb)


@pytest.mark.parametrize("frozen", ["fc", "aux_fc", "features"])
def test_frozen_parts_get_no_gradient_and_the_rest_the_plain_ones(frozen):
    h, y, head, emb = _setup("compressed", n=600)  # two blocks at chunk_size 5
    if frozen == "features":
        h = h.detach()
    else:
        getattr(head, frozen).requires_grad_(False)
    _assert_chunked_is_plain(h, y, head, emb, (5,), alpha=0.3)


def test_a_head_on_another_dtype_is_named():
    h, y, head, emb = _setup("full")
    with pytest.raises(ValueError, match="head parameter fc.weight is torch.float32"):
        chunked_label_embedding_loss(h, y, head.float(), emb)


def test_a_profiler_sees_the_phases_of_each_block():
    """The phases are named ranges in a torch.profiler trace (benchmarks/large_vocab.py
    --profile reports them), one of each per block."""
    from torch.profiler import profile

    h, y, head, emb = _setup("compressed", n=1100)
    with profile() as prof:
        chunked_label_embedding_loss(h, y, head, emb, chunk_size=300).loss.backward()
    counts = {e.key: e.count for e in prof.key_averages() if e.key.startswith("labelemb.")}
    names = ("forward", "terms", "head_backward", "embedding_backward")
    # 1,100 rows, 300 a block: one chunk, as the 8 features ask for 16 rows
    assert counts == {f"labelemb.chunked.{name}": 4 for name in names}


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_chunked_cross_entropy_equals_f_cross_entropy(smoothing, reduction):
    """The baselines of a large vocabulary: F.cross_entropy of the layer's logits, with label
    smoothing and -100 ignored, loss and gradients, over several blocks."""
    h, y, head, _ = _setup("full", n=1100, c=30)
    layer = head.fc
    tensors = [h, *layer.parameters()]
    ref = torch.nn.functional.cross_entropy(layer(h), y, label_smoothing=smoothing,
                                            reduction=reduction)
    got = chunked_cross_entropy(h, y, layer, smoothing=smoothing, reduction=reduction,
                                chunk_size=7)
    assert list(got.terms) == ["ce"]
    torch.testing.assert_close(got.loss, ref, rtol=1e-10, atol=1e-10)
    for a, b in zip(_grads(ref, tensors), _grads(got.loss, tensors)):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-10)


def test_head_layers_with_a_weight_tied_to_the_input_embedding():
    """A language model's LM head shares its weight with the token embedding that made the
    features: the weight gets both gradients, as through the plain logits."""
    torch.manual_seed(0)
    c, n = 11, 40
    tokens = torch.nn.Embedding(c, F_DIM).double()
    lm_head = torch.nn.Linear(F_DIM, c, bias=False).double()
    lm_head.weight = tokens.weight  # tied
    aux = torch.nn.Linear(F_DIM, c, bias=False).double()
    emb = CompressedLabelEmbedding(c, 4).double()
    ids = torch.randint(0, c, (n,))
    target = torch.roll(ids, -1)
    params = [tokens.weight, aux.weight, *emb.parameters()]

    def features():
        return torch.tanh(tokens(ids))

    h = features()
    ref = label_embedding_loss(lm_head(h), aux(h.detach()), target, emb, mask_wrong=False)
    got = chunked_label_embedding_loss(features(), target, HeadLayers(lm_head, aux), emb,
                                       chunk_size=3, mask_wrong=False)
    torch.testing.assert_close(got.loss, ref.loss, rtol=1e-10, atol=1e-10)
    for a, b in zip(_grads(ref.loss, params), _grads(got.loss, params)):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_feature_is_named_as_the_features(value):
    """Issue 27: a NaN in the features was reported as a NaN in the logits."""
    h, y, head, emb = _setup("full")
    h = h.detach().clone()
    h[2, 1] = value
    with pytest.raises(ValueError, match="^features contain NaN or inf"):
        chunked_label_embedding_loss(h, y, head, emb)
    with pytest.raises(ValueError, match="^features contain NaN or inf"):
        chunked_cross_entropy(h, y, head.fc)


def test_chunked_cross_entropy_refuses_bad_smoothing_and_a_second_layer():
    h, y, head, _ = _setup("full")
    with pytest.raises(ValueError, match="smoothing"):
        chunked_cross_entropy(h, y, head.fc, smoothing=1.0)
    with pytest.raises(ValueError, match="one layer"):
        chunked_cross_entropy(h, y, HeadLayers(head.fc, head.aux_fc))
