"""The five-term loss against an independent per-sample computation (tests/reference.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labelemb import (
    FixedLabelEmbedding,
    LabelEmbedding,
    LabelEmbeddingHead,
    LabelEmbeddingLoss,
    PRESETS,
    label_embedding_loss,
)
from reference import reference_loss

C = 5


def _inputs(n=7, c=C, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, c, generator=g, dtype=dtype) * 2
    z2 = torch.randn(n, c, generator=g, dtype=dtype) * 2
    y = torch.randint(0, c, (n,), generator=g)
    # Make some aux predictions right so embedding_ce is not trivially zero.
    z2[: n // 2, :] = z2[: n // 2, :] - 5.0
    z2[torch.arange(n // 2), y[: n // 2]] += 10.0
    emb = LabelEmbedding(c).to(dtype)
    with torch.no_grad():
        emb.weight.add_(0.3 * torch.randn(c, c, generator=g, dtype=dtype))
    return z1, z2, y, emb


OPTION_GRID = [
    dict(),
    dict(hinge="l2"),
    dict(hinge="abs", alpha=0.3),
    dict(hinge_reduction="mean"),
    dict(mask_wrong=False),
    dict(embedding_normalizer="valid"),
    dict(beta=None),
    dict(beta=0.2, tau=4.0),
    dict(alpha=0.05),  # the hinge is active for most samples
    dict(soft_target_temperature=0.5),  # a sharper soft target (our option)
]


@pytest.mark.parametrize("options", OPTION_GRID, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults")
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_each_term_matches_reference(options, reduction):
    z1, z2, y, emb = _inputs()
    out = label_embedding_loss(z1, z2, y, emb, reduction=reduction, **options)
    ref_total, ref_terms = reference_loss(z1, z2, y, emb.weight.detach(), reduction=reduction, **options)
    assert set(out.terms) == set(ref_terms)
    for k, v in ref_terms.items():
        torch.testing.assert_close(out.terms[k], v.to(out.terms[k].dtype), msg=k)
    torch.testing.assert_close(out.loss, ref_total.to(out.loss.dtype))


def test_reduction_none_is_per_target_and_sums_to_sum():
    z1, z2, y, emb = _inputs()
    y[2] = -100
    none = label_embedding_loss(z1, z2, y, emb, reduction="none")
    summed = label_embedding_loss(z1, z2, y, emb, reduction="sum")
    assert none.loss.shape == y.shape
    assert none.loss[2] == 0
    torch.testing.assert_close(none.loss.sum(), summed.loss)
    for k in summed.terms:
        assert none.terms[k].shape == y.shape
        torch.testing.assert_close(none.terms[k].sum(), summed.terms[k])


def test_spatial_logits_equal_flattened():
    """(N, C, d1, d2) logits give the same loss as the flattened (N*d1*d2, C) rows."""
    g = torch.Generator().manual_seed(1)
    z1 = torch.randn(3, C, 4, 2, generator=g, dtype=torch.float64)
    z2 = torch.randn(3, C, 4, 2, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (3, 4, 2), generator=g)
    y[0, 1, 1] = -100
    emb = LabelEmbedding(C).double()
    a = label_embedding_loss(z1, z2, y, emb)
    rows = lambda z: z.permute(0, 2, 3, 1).reshape(-1, C)  # noqa: E731
    b = label_embedding_loss(rows(z1), rows(z2), y.reshape(-1), emb)
    torch.testing.assert_close(a.loss, b.loss)
    none = label_embedding_loss(z1, z2, y, emb, reduction="none")
    assert none.loss.shape == y.shape


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Linear(4, 6), nn.Tanh())
    head = LabelEmbeddingHead(6, 3)
    emb = LabelEmbedding(3)
    with torch.no_grad():
        emb.weight.add_(0.2 * torch.randn(3, 3))
    return backbone, head, emb


def _grads(params):
    return [None if p.grad is None else p.grad.clone() for p in params]


def test_gradient_routing_matches_the_method():
    """Backbone and W1 learn from ce+soft_ce only; W2 from aux_ce+hinge; E from embedding_ce."""
    backbone, head, emb = _tiny_model()
    x = torch.randn(16, 4)
    y = torch.randint(0, 3, (16,))
    opts = dict(alpha=0.3)  # an active hinge, so W2 gets its gradient too

    def reference_part(parts):
        h = backbone(x)
        z1 = F.linear(h, head.fc.weight, head.fc.bias)
        z2 = F.linear(h.detach(), head.aux_fc.weight, head.aux_fc.bias)
        _, terms = reference_loss(z1.double(), z2.double(), y, emb.weight.double(), **opts)
        w = {"ce": 0.5, "soft_ce": 0.5}
        return sum(w.get(k, 1.0) * terms[k] for k in parts)

    params = {
        "backbone": list(backbone.parameters()),
        "W1": list(head.fc.parameters()),
        "W2": list(head.aux_fc.parameters()),
        "E": [emb.weight],
    }
    all_params = [p for group in params.values() for p in group]
    criterion = LabelEmbeddingLoss(emb, **opts)
    loss, _ = criterion(*head(backbone(x)), y)
    loss.backward()
    got = {k: _grads(ps) for k, ps in params.items()}

    expected_sources = {
        "backbone": ["ce", "soft_ce"],
        "W1": ["ce", "soft_ce"],
        "W2": ["aux_ce", "aux_hinge"],
        "E": ["embedding_ce"],
    }
    for group, parts in expected_sources.items():
        for p in all_params:
            p.grad = None
        reference_part(parts).backward()
        for g_got, g_ref in zip(got[group], _grads(params[group])):
            assert g_got is not None and g_got.abs().sum() > 0, group
            torch.testing.assert_close(g_got.double(), g_ref.double(), msg=group)
    # And nothing else leaks in: terms outside a group's sources give it zero gradient.
    for group, parts in expected_sources.items():
        others = [k for k in ["ce", "soft_ce", "aux_ce", "aux_hinge", "embedding_ce"] if k not in parts]
        for p in all_params:
            p.grad = None
        reference_part(others).backward()
        for g in _grads(params[group]):
            assert g is None or torch.count_nonzero(g) == 0, group


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ignore_index", [-100, 0])
def test_padding_changes_neither_loss_nor_any_gradient(reduction, ignore_index):
    backbone, head, emb = _tiny_model(seed=3)
    criterion = LabelEmbeddingLoss(emb, reduction=reduction, ignore_index=ignore_index, alpha=0.3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 4, generator=g)
    y = torch.randint(1, 3, (10,), generator=g)
    params = [*backbone.parameters(), *head.parameters(), *emb.parameters()]

    def run(x, y):
        for p in params:
            p.grad = None
        loss, terms = criterion(*head(backbone(x)), y)
        loss.backward()
        return loss.detach(), terms, _grads(params)

    base = run(x, y)
    pad_x = torch.cat([x, 5 * torch.randn(6, 4, generator=g)])
    pad_y = torch.cat([y, torch.full((6,), ignore_index)])
    padded = run(pad_x, pad_y)
    torch.testing.assert_close(base[0], padded[0])
    for k in base[1]:
        torch.testing.assert_close(base[1][k], padded[1][k], msg=k)
    for a, b in zip(base[2], padded[2]):
        torch.testing.assert_close(a, b)


def test_all_targets_ignored_is_finite_and_zero():
    z1, z2, y, emb = _inputs()
    z1.requires_grad_()
    out = label_embedding_loss(z1, z2, torch.full_like(y, -100), emb)
    assert torch.isfinite(out.loss) and out.loss == 0
    out.loss.backward()
    assert torch.count_nonzero(z1.grad) == 0


def test_no_correct_aux_prediction_is_finite():
    z1, z2, y, emb = _inputs()
    z2 = torch.zeros_like(z2)
    z2[torch.arange(len(y)), (y + 1) % C] = 10.0  # every aux prediction wrong
    emb.requires_grad_(True)
    out = label_embedding_loss(z1, z2, y, emb)
    assert torch.isfinite(out.loss)
    assert out.terms["embedding_ce"] == 0
    out.loss.backward()
    assert torch.isfinite(emb.weight.grad).all()
    assert torch.count_nonzero(emb.weight.grad) == 0


def test_warmup_switches_soft_term_on_after_steps():
    z1, z2, y, emb = _inputs()
    off = label_embedding_loss(z1, z2, y, emb, warmup_steps=3, step=2)
    on = label_embedding_loss(z1, z2, y, emb, warmup_steps=3, step=3)
    # Before the warm-up ends soft_ce is reported but weighs nothing, in value and gradient.
    torch.testing.assert_close(off.terms, on.terms)
    torch.testing.assert_close(on.loss - off.loss, 0.5 * on.terms["soft_ce"])
    z1.requires_grad_()
    grad_off, = torch.autograd.grad(label_embedding_loss(z1, z2, y, emb, warmup_steps=3,
                                                         step=torch.tensor(2)).loss, z1)
    grad_ce, = torch.autograd.grad(0.5 * F.cross_entropy(z1, y), z1)  # all z1 gets then
    torch.testing.assert_close(grad_off, grad_ce)
    with pytest.raises(ValueError, match="step"):
        label_embedding_loss(z1, z2, y, emb, warmup_steps=3)


def test_module_counts_updates_in_training_only_and_saves_them():
    _, _, _, emb = _inputs(dtype=torch.float32)
    crit = LabelEmbeddingLoss(emb, warmup_steps=2)
    z1, z2, y, _ = _inputs(dtype=torch.float32)
    soft = lambda out: out.loss - 0.5 * out.terms["ce"] - out.terms["aux_ce"] - out.terms[
        "aux_hinge"] - out.terms["embedding_ce"]
    torch.testing.assert_close(soft(crit(z1, z2, y)), torch.tensor(0.0))
    crit(z1, z2, y)
    assert int(crit.num_updates) == 2
    out = crit(z1, z2, y)
    torch.testing.assert_close(soft(out), 0.5 * out.terms["soft_ce"])
    crit.eval()
    crit(z1, z2, y)
    assert int(crit.num_updates) == 3
    restored = LabelEmbeddingLoss(LabelEmbedding(C), warmup_steps=2)
    restored.load_state_dict(crit.state_dict())
    assert int(restored.num_updates) == 3
    # The count lives in Python and the buffer mirrors it: a state dict taken without reading
    # the attribute first is current, and a loaded count goes on from where it was.
    crit.train()
    crit(z1, z2, y)
    assert int(crit.state_dict()["num_updates"]) == 4
    restored(z1, z2, y)
    assert int(restored.state_dict()["num_updates"]) == 4


def test_presets_are_the_authors_settings():
    emb = LabelEmbedding(C)
    cls = LabelEmbeddingLoss.from_preset("classification", emb)
    s2s = LabelEmbeddingLoss.from_preset("seq2seq", emb, ignore_index=0, warmup_steps=5)
    assert cls.options.beta == 0.5 and cls.options.hinge == "l1"
    assert cls.options.hinge_reduction == "sum" and cls.options.embedding_normalizer == "correct"
    assert s2s.options.beta is None and s2s.options.hinge == "abs"
    assert s2s.options.embedding_normalizer == "valid" and s2s.options.ignore_index == 0
    assert s2s.options.warmup_steps == 5 and PRESETS["seq2seq"].warmup_steps == 20_000
    with pytest.raises(ValueError, match="preset"):
        LabelEmbeddingLoss.from_preset("nope", emb)


def test_fixed_embedding_reduces_to_eq17_without_aux_head():
    z1, _, y, emb = _inputs()
    fixed = FixedLabelEmbedding(emb.weight.detach())
    z1 = z1.clone().requires_grad_()
    out = label_embedding_loss(z1, None, y, fixed)
    assert set(out.terms) == {"ce", "soft_ce"}
    ref_total, _ = reference_loss(z1, None, y, emb.weight.detach(), trainable=False)
    torch.testing.assert_close(out.loss, ref_total)
    head = LabelEmbeddingHead(4, C, aux=False)
    logits, aux = head(torch.randn(2, 4))
    assert aux is None and logits.shape == (2, C)
    assert not any(p.requires_grad for p in fixed.parameters())
    with pytest.raises(ValueError, match="aux_logits"):
        label_embedding_loss(z1, None, y, LabelEmbedding(C).double())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_computes_in_float32(dtype):
    torch.manual_seed(0)
    model = nn.Linear(8, 16)
    head = LabelEmbeddingHead(16, 10)
    crit = LabelEmbeddingLoss(LabelEmbedding(10))
    x = torch.randn(32, 8) * 30
    y = torch.randint(0, 10, (32,))
    ref, _ = crit(*head(model(x)), y)
    with torch.autocast("cpu", dtype=dtype):
        logits, aux = head(model(x))
        assert logits.dtype == dtype
        loss, terms = crit(logits, aux, y)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(v.dtype == torch.float32 for v in terms.values())
    torch.testing.assert_close(loss, ref, rtol=5e-2, atol=5e-2)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


# ----------------------------------------------------------------------------- bad input


def _good():
    z1, z2, y, emb = _inputs(dtype=torch.float32)
    return z1, z2, y, emb


@pytest.mark.parametrize(
    "mutate, error, match",
    [
        (lambda a: a.update(y=a["y"].float()), TypeError, "target"),
        (lambda a: a.update(y=a["y"].bool()), TypeError, "target"),
        (lambda a: a.update(z1=a["z1"].long()), TypeError, "logits"),
        (lambda a: a["y"].__setitem__(0, C), ValueError, "target has class index 5"),
        (lambda a: a["y"].__setitem__(0, -3), ValueError, "target has class index -3"),
        (lambda a: a.update(z2=a["z2"][:, :-1]), ValueError, "aux_logits shape"),
        (lambda a: a.update(y=a["y"][:-1]), ValueError, "target shape"),
        (lambda a: a.update(z1=a["z1"][0]), ValueError, "logits must be"),
        (lambda a: a.update(emb=LabelEmbedding(C + 1)), ValueError, "embedding has 6"),
        (lambda a: a["z1"].__setitem__((0, 0), float("nan")), ValueError, "logits contain NaN"),
        (lambda a: a["z2"].__setitem__((1, 1), float("inf")), ValueError, "aux_logits contain NaN"),
    ],
)
def test_bad_input_raises_clear_error(mutate, error, match):
    z1, z2, y, emb = _good()
    a = dict(z1=z1, z2=z2, y=y, emb=emb)
    mutate(a)
    with pytest.raises(error, match=match):
        label_embedding_loss(a["z1"], a["z2"], a["y"], a["emb"])


def test_validation_can_be_switched_off():
    z1, z2, y, emb = _good()
    z1[0, 0] = float("nan")
    out = label_embedding_loss(z1, z2, y, emb, validate=False)
    assert torch.isnan(out.loss)


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(beta=1.5), "beta"), (dict(tau=0.0), "tau"),
        (dict(soft_target_temperature=-1.0), "soft_target_temperature"), (dict(alpha=2.0), "alpha"),
        (dict(hinge="l3"), "hinge"), (dict(hinge_reduction="max"), "hinge_reduction"),
        (dict(embedding_normalizer="x"), "embedding_normalizer"),
        (dict(reduction="avg"), "reduction"), (dict(warmup_steps=-1), "warmup_steps"),
        (dict(ignore_index=1.5), "ignore_index"),
    ],
)
def test_bad_options_are_named(options, match):
    with pytest.raises(ValueError, match=match):
        LabelEmbeddingLoss(LabelEmbedding(C), **options)


def test_unknown_option_and_embedding_type():
    with pytest.raises(TypeError, match="unknown option"):
        LabelEmbeddingLoss(LabelEmbedding(C), temperature=2)
    with pytest.raises(TypeError, match="embedding"):
        LabelEmbeddingLoss(nn.Linear(3, 3))


def test_learns_a_toy_task_end_to_end():
    """A few hundred Adam steps: the main head fits, the embedding moves off the identity."""
    torch.manual_seed(0)
    centres = torch.randn(4, 8) * 3
    y = torch.randint(0, 4, (512,))
    x = centres[y] + torch.randn(512, 8)
    backbone = nn.Sequential(nn.Linear(8, 32), nn.ReLU())
    head = LabelEmbeddingHead(32, 4)
    crit = LabelEmbeddingLoss(LabelEmbedding(4))
    opt = torch.optim.Adam([*backbone.parameters(), *head.parameters(), *crit.parameters()], 1e-2)
    for _ in range(150):
        loss, _ = crit(*head(backbone(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    logits, _ = head(backbone(x))
    assert (logits.argmax(1) == y).float().mean() > 0.9
    assert not torch.allclose(crit.embedding.weight, torch.eye(4))
    # Each label's soft target still peaks at the label itself.
    assert torch.equal(crit.soft_target(torch.arange(4)).argmax(1), torch.arange(4))


def test_term_names_are_stable():
    z1, z2, y, emb = _good()
    names = list(label_embedding_loss(z1, z2, y, emb).terms)
    assert names == ["ce", "soft_ce", "aux_ce", "aux_hinge", "embedding_ce"]


@pytest.mark.parametrize("where", ["embedding", "target", "aux_logits"])
def test_a_tensor_on_another_device_is_named_before_any_arithmetic(where):
    """Once a segfault (the C kernel read a meta tensor's data): now a ValueError."""
    z1, z2, y, emb = _inputs()
    if where == "embedding":
        emb = emb.to("meta")
    elif where == "target":
        y = y.to("meta")
    else:
        z2 = z2.to("meta")
    with pytest.raises(ValueError, match=f"one device.*{where}.* on meta"):
        LabelEmbeddingLoss(emb)(z1, z2, y)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_embedding_is_caught_like_non_finite_logits(value):
    z1, z2, y, emb = _inputs()
    with torch.no_grad():
        emb.weight[y[0], 1] = value
    with pytest.raises(ValueError, match="^embedding contain NaN or inf"):
        label_embedding_loss(z1, z2, y, emb)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_criterion_computes_in_float32(dtype):
    z1, z2, y, emb = _inputs(dtype=torch.float32)
    ref = LabelEmbeddingLoss(emb)(z1, z2, y)
    for _ in range(2):  # the second call once took another path
        out = LabelEmbeddingLoss(emb).to(dtype)(z1.to(dtype), z2.to(dtype), y)
        assert out.loss.dtype == torch.float32
        torch.testing.assert_close(out.loss, ref.loss, rtol=2e-2, atol=2e-2)
