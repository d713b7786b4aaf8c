"""The compiled loss (labelemb.native) against the term-by-term autograd definition.

tests/test_loss.py runs every reference test on both backends; here the two are compared
directly over more shapes, dtypes, embeddings and options, and the compiled path's own
behaviour (build, cache, fallback, backward rules) is checked for real: a C compiler runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from labelemb import (
    CompressedLabelEmbedding,
    FixedLabelEmbedding,
    LabelEmbedding,
    LabelEmbeddingLoss,
    label_embedding_loss,
)
from labelemb import native

pytestmark = pytest.mark.usefixtures("_native_required")


@pytest.fixture
def _native_required(request):
    from conftest import _native_or_skip

    _native_or_skip()


def _make_embedding(kind: str, c: int, dtype: torch.dtype, seed: int):
    torch.manual_seed(seed)
    if kind == "full":
        emb = LabelEmbedding(c)
        with torch.no_grad():
            emb.weight.add_(0.5 * torch.randn(c, c))
    elif kind == "compressed":
        emb = CompressedLabelEmbedding(c, 6)
    else:
        emb = FixedLabelEmbedding(torch.randn(c, c))
    return emb.to(dtype)


def _case(rows: int, c: int, dtype: torch.dtype, seed: int, aux: bool = True):
    g = torch.Generator().manual_seed(seed)
    z1 = (torch.randn(rows, c, generator=g, dtype=dtype) * 3).requires_grad_()
    z2 = (torch.randn(rows, c, generator=g, dtype=dtype) * 3) if aux else None
    y = torch.randint(0, c, (rows,), generator=g)
    if aux:
        # about half the aux predictions right, so embedding_ce has rows on both sides
        z2[: rows // 2].scatter_add_(1, y[: rows // 2, None],
                                     torch.full((rows // 2, 1), 12.0, dtype=dtype))
        z2.requires_grad_()
    y[::5] = -100
    return z1, z2, y


def _is_native(loss: torch.Tensor) -> bool:
    """Whether the compiled loss made ``loss`` (through any reshaping views)."""
    fn = loss.grad_fn
    while fn is not None and type(fn).__name__.startswith("View"):
        fn = fn.next_functions[0][0]
    return type(fn).__name__ == "_NativeLossBackward"


def _run(backend, z1, z2, y, emb, weights=None, **options):
    params = [z1, *([z2] if z2 is not None else []), *emb.parameters()]
    for p in params:
        p.grad = None
    out = label_embedding_loss(z1, z2, y, emb, backend=backend, **options)
    total = out.loss if weights is None else (out.loss * weights).sum()
    if total.requires_grad:
        total.backward()
    return out, [None if p.grad is None else p.grad.clone() for p in params]


OPTIONS = [
    dict(),
    dict(hinge="l2", alpha=0.05),
    dict(hinge="abs", alpha=0.3, hinge_reduction="mean"),
    dict(beta=None, embedding_normalizer="valid"),
    dict(mask_wrong=False, tau=0.7),
    dict(beta=1.0),
    dict(warmup_steps=10, step=3),  # soft_ce off
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", ["full", "compressed", "fixed"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("rows, classes", [(40, 7), (5, 12)], ids=["rows>C", "rows<C"])
def test_native_equals_autograd(dtype, kind, reduction, rows, classes):
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    for seed, options in enumerate(OPTIONS):
        emb = _make_embedding(kind, classes, dtype, seed)
        z1, z2, y = _case(rows, classes, dtype, seed, aux=kind != "fixed")
        weights = torch.rand(rows, dtype=dtype) if reduction == "none" else None
        a, grads_a = _run("autograd", z1, z2, y, emb, weights, reduction=reduction, **options)
        b, grads_b = _run("native", z1, z2, y, emb, weights, reduction=reduction, **options)
        assert _is_native(b.loss) and not _is_native(a.loss)
        assert list(a.terms) == list(b.terms), options
        torch.testing.assert_close(b.loss, a.loss, **tol, msg=str(options))
        for k in a.terms:
            torch.testing.assert_close(b.terms[k], a.terms[k], **tol, msg=f"{k} {options}")
        for ga, gb in zip(grads_a, grads_b):
            assert (ga is None) == (gb is None), options
            if ga is not None:
                torch.testing.assert_close(gb, ga, **tol, msg=str(options))


def test_gradients_scale_with_the_incoming_gradient():
    emb = _make_embedding("full", 7, torch.float64, 0)
    z1, z2, y = _case(30, 7, torch.float64, 0)
    _, plain = _run("native", z1, z2, y, emb)
    out = label_embedding_loss(z1, z2, y, emb, backend="native")
    for p in (z1, z2, emb.weight):
        p.grad = None
    (3.0 * out.loss).backward()
    for g, p in zip(plain, (z1, z2, emb.weight)):
        torch.testing.assert_close(p.grad, 3.0 * g)


def test_non_contiguous_and_int32_targets():
    emb = _make_embedding("full", 6, torch.float32, 1)
    z1, z2, y = _case(25, 6, torch.float32, 1)
    a, ga = _run("autograd", z1, z2, y, emb)
    z1t = z1.detach().t().contiguous().t().requires_grad_()  # column-major storage
    assert not z1t.is_contiguous()
    b, gb = _run("native", z1t, z2, y.int(), emb)
    torch.testing.assert_close(b.loss, a.loss)
    for x, w in zip(ga[1:], gb[1:]):
        torch.testing.assert_close(w, x)
    torch.testing.assert_close(z1t.grad, ga[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_rows_of_a_wider_matrix_are_read_in_place(dtype):
    """The head returns z1, z2 as the two column halves of one (N, 2C) product: the kernel
    reads them with a row stride of 2C (and a padded row stride too)."""
    emb = _make_embedding("full", 6, dtype, 3)
    z1, z2, y = _case(30, 6, dtype, 3)
    a, ga = _run("autograd", z1, z2, y, emb)
    for width in (12, 15):  # halves of (N, 2C), and rows padded past 2C
        both = torch.zeros(30, width, dtype=dtype)
        both[:, :6], both[:, 6:12] = z1.detach(), z2.detach()
        both.requires_grad_()
        v1, v2 = both[:, :6], both[:, 6:12]
        assert v1.stride() == v2.stride() == (width, 1)
        out = label_embedding_loss(v1, v2, y, emb, backend="native")
        out.loss.backward()
        torch.testing.assert_close(out.loss, a.loss)
        torch.testing.assert_close(both.grad[:, :6], ga[0])
        torch.testing.assert_close(both.grad[:, 6:12], ga[1])
        assert not both.grad[:, 12:].any()
        emb.weight.grad = None
    bad = torch.zeros(30, 12, dtype=dtype)
    bad[:, :6], bad[:, 6:] = z1.detach(), z2.detach()
    bad[4, 8] = float("nan")  # in the aux half
    with pytest.raises(ValueError, match="aux_logits"):
        label_embedding_loss(bad[:, :6], bad[:, 6:], y, emb, backend="native")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_half_precision_module_computes_in_float32(dtype):
    """A .half() loss (embedding too) must not send 2-byte values to the float32 kernel: the
    module's direct path once did, from its second call on (the first builds the library)."""
    z1, z2, y = _case(40, 7, torch.float32, 4)
    z1, z2 = (z.detach().to(dtype).requires_grad_() for z in (z1, z2))
    emb = _make_embedding("full", 7, torch.float32, 4)
    ref = LabelEmbeddingLoss(emb, backend="autograd").to(dtype)
    got = LabelEmbeddingLoss(_make_embedding("full", 7, torch.float32, 4)).to(dtype)
    for _ in range(3):
        a, b = ref(z1, z2, y), got(z1, z2, y)
        assert a.loss.dtype == b.loss.dtype == torch.float32
        torch.testing.assert_close(b.loss, a.loss)
    with pytest.raises(TypeError, match="float32 or float64"):
        native.native_label_embedding_loss(z1, z2, None, y, native.plan(
            True, True, False, 0.5, 0.5, 2.0, 0.9, "l1", "sum", True, "correct", -100, "mean",
            True))


def test_backward_twice_and_double_backward_are_refused():
    emb = _make_embedding("full", 5, torch.float64, 2)
    z1, z2, y = _case(10, 5, torch.float64, 2)
    out = label_embedding_loss(z1, z2, y, emb, backend="native")
    out.loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="once"):
        out.loss.backward()
    out = label_embedding_loss(z1, z2, y, emb, backend="native")
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(out.loss, z1, create_graph=True)
    # The definition does both.
    out = label_embedding_loss(z1, z2, y, emb, backend="autograd")
    (g,) = torch.autograd.grad(out.loss, z1, create_graph=True)
    g.sum().backward()


def test_no_grad_and_eval_give_the_same_loss():
    emb = _make_embedding("compressed", 9, torch.float32, 3)
    z1, z2, y = _case(20, 9, torch.float32, 3)
    with_grad = label_embedding_loss(z1, z2, y, emb, backend="native")
    with torch.no_grad():
        without = label_embedding_loss(z1, z2, y, emb, backend="native")
    assert without.loss.grad_fn is None
    torch.testing.assert_close(with_grad.loss.detach(), without.loss)


def test_bad_target_is_an_error_even_without_validation():
    """The kernel indexes memory with the target: it always checks the range."""
    emb = _make_embedding("full", 5, torch.float32, 4)
    z1, z2, y = _case(10, 5, torch.float32, 4)
    y[3] = 5
    with pytest.raises(ValueError, match="target has class index 5"):
        label_embedding_loss(z1, z2, y, emb, backend="native", validate=False)
    y[3] = -7
    with pytest.raises(ValueError, match="target has class index -7"):
        label_embedding_loss(z1, z2, y, emb, backend="native")


def test_auto_takes_the_definition_where_native_does_not_apply():
    emb = LabelEmbedding(10)
    rows = native.MAX_ELEMENTS // 10 + 1  # just over the size limit
    z1 = torch.randn(rows, 10, requires_grad=True)
    z2 = torch.randn(rows, 10, requires_grad=True)
    y = torch.randint(0, 10, (rows,))
    out = label_embedding_loss(z1, z2, y, emb)
    assert not _is_native(out.loss)
    with pytest.raises(ValueError, match="backend='native' needs"):
        label_embedding_loss(z1, z2, y, emb, backend="native")
    small = label_embedding_loss(z1[:50], z2[:50], y[:50], emb)
    assert _is_native(small.loss)


def test_module_trains_the_same_on_both_backends():
    """Ten Adam steps of a small model: the same weights either way."""
    results = []
    for backend in ("native", "autograd"):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU())
        from labelemb import LabelEmbeddingHead

        head = LabelEmbeddingHead(16, 4)
        crit = LabelEmbeddingLoss(LabelEmbedding(4), backend=backend, alpha=0.5)
        params = [*model.parameters(), *head.parameters(), *crit.parameters()]
        opt = torch.optim.Adam(params, lr=1e-2)
        g = torch.Generator().manual_seed(1)
        for _ in range(10):
            x = torch.randn(32, 8, generator=g)
            y = torch.randint(0, 4, (32,), generator=g)
            loss, _ = crit(*head(model(x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        results.append([p.detach().clone() for p in params])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------- build and cache


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    full_env = {**os.environ, **env, "PYTHONPATH": src}
    return subprocess.run([sys.executable, "-W", "always", "-c", textwrap.dedent(code)],
                          env=full_env, capture_output=True, text=True, timeout=300)


_PROBE = """
    import torch
    from labelemb import LabelEmbedding, label_embedding_loss, native
    torch.manual_seed(0)
    z1, z2 = torch.randn(8, 4, requires_grad=True), torch.randn(8, 4, requires_grad=True)
    out = label_embedding_loss(z1, z2, torch.arange(8) % 4, LabelEmbedding(4))
    out.loss.backward()
    print("available", native.available())
    print("status", native.status())
    print("node", type(out.loss.grad_fn).__name__)
    print("loss", round(out.loss.item(), 6))
"""


def test_builds_into_the_cache_and_reuses_it(tmp_path):
    first = _python(_PROBE, {"LABELEMB_CACHE_DIR": str(tmp_path)})
    assert first.returncode == 0, first.stderr
    assert "available True" in first.stdout and "node _NativeLossBackward" in first.stdout
    built = sorted(p.name for p in tmp_path.iterdir())
    assert len(built) == 1 and built[0].startswith("fused_loss-") and built[0].endswith(".so")
    mtime = (tmp_path / built[0]).stat().st_mtime_ns
    again = _python(_PROBE, {"LABELEMB_CACHE_DIR": str(tmp_path)})
    assert again.returncode == 0, again.stderr
    assert (tmp_path / built[0]).stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert first.stdout.splitlines()[-1] == again.stdout.splitlines()[-1]


def test_without_a_compiler_the_definition_runs_with_a_warning(tmp_path):
    native_run = _python(_PROBE, {"LABELEMB_CACHE_DIR": str(tmp_path / "ok")})
    broken = _python(_PROBE, {"LABELEMB_CACHE_DIR": str(tmp_path / "none"),
                              "CC": str(tmp_path / "no-such-cc")})
    assert broken.returncode == 0, broken.stderr
    assert "available False" in broken.stdout
    assert "RuntimeWarning" in broken.stderr and "PyTorch code instead" in broken.stderr
    assert "node _NativeLossBackward" not in broken.stdout
    # Same loss from both implementations.
    assert native_run.stdout.splitlines()[-1] == broken.stdout.splitlines()[-1]
    off = _python(_PROBE, {"LABELEMB_NATIVE": "0", "LABELEMB_CACHE_DIR": str(tmp_path / "off")})
    assert off.returncode == 0 and "available False" in off.stdout
    assert "disabled by LABELEMB_NATIVE=0" in off.stdout and "RuntimeWarning" not in off.stderr
    assert not (tmp_path / "off").exists()


def test_a_library_in_a_folder_others_can_write_is_not_loaded(tmp_path):
    """A planted file with the right name in a world-writable cache is never loaded."""
    private = tmp_path / "private"
    built = _python(_PROBE, {"LABELEMB_CACHE_DIR": str(private)})
    assert built.returncode == 0, built.stderr
    (name,) = [p.name for p in private.iterdir()]
    assert oct((private / name).stat().st_mode & 0o777) == oct(0o755)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / name).write_bytes(b"not a shared library")
    run = _python(_PROBE, {"LABELEMB_CACHE_DIR": str(shared)})
    assert run.returncode == 0, run.stderr
    assert "available True" in run.stdout and "node _NativeLossBackward" in run.stdout
    assert str(shared) not in run.stdout  # built and loaded elsewhere
    assert (shared / name).read_bytes() == b"not a shared library"


def test_module_direct_path_is_the_function_to_the_bit():
    """LabelEmbeddingLoss skips the general checks for the common case, nothing else."""
    emb = _make_embedding("full", 7, torch.float32, 5)
    crit = LabelEmbeddingLoss(emb, alpha=0.4, warmup_steps=2)
    for step in range(4):  # across the warm-up switch: the cached plan follows the step
        z1, z2, y = _case(30, 7, torch.float32, step)
        out = crit(z1, z2, y)
        ref = label_embedding_loss(z1, z2, y, emb, alpha=0.4, warmup_steps=2, step=step,
                                   backend="native")
        assert _is_native(out.loss) and list(out.terms) == list(ref.terms)
        assert torch.equal(out.loss, ref.loss)
        assert ("soft_ce" in out.terms) == (step >= 2)
    crit.options["hinge"] = "abs"  # options changed in place: a new plan
    z1, z2, y = _case(30, 7, torch.float32, 9)
    ref = label_embedding_loss(z1, z2, y, emb, alpha=0.4, hinge="abs", backend="native")
    assert torch.equal(crit(z1, z2, y).loss, ref.loss)
    # Outside the common case the module takes the function's general path, same result.
    y32 = y.int()
    torch.testing.assert_close(crit(z1, z2, y32).loss, ref.loss)
    with pytest.raises(ValueError, match="target shape"):
        crit(z1, z2, y[:-1])


def test_terms_read_like_a_dict_and_are_made_on_first_read():
    emb = _make_embedding("full", 6, torch.float32, 5)
    z1, z2, y = _case(20, 6, torch.float32, 5)
    ref = label_embedding_loss(z1, z2, y, emb, backend="autograd").terms
    out = LabelEmbeddingLoss(emb)(z1, z2, y)  # the module's direct path
    terms = out.terms
    assert terms._views is None  # nothing made yet: the step did not read them
    assert list(terms) == list(ref) and len(terms) == len(ref) and "aux_hinge" in terms
    assert "nope" not in terms and terms.get("nope") is None
    plain = dict(terms)
    assert list(plain) == list(ref)
    for k, v in ref.items():
        torch.testing.assert_close(terms[k], v)
        assert not terms[k].requires_grad
    assert repr(terms) == repr(plain)
    with pytest.raises(KeyError):
        terms["nope"]
