"""The label embedding loss as one compiled call, for small CPU batches.

On a small model the loss in :mod:`labelemb.functional` is about a hundred tiny tensor
operations (softmaxes, gathers, masks, sums), each costing a few microseconds of dispatch for
a few hundred floats of arithmetic; with autograd's bookkeeping they cost several times the
model's output layer. ``fused_loss.c`` does the same arithmetic in two loops over the rows:
the five terms, their reduction, and the gradients with respect to ``z1``, ``z2`` and ``e``,
which a :class:`torch.autograd.Function` hands to autograd (its backward only scales them by
the incoming gradient). Gradients then flow on from ``e`` into any label embedding.

The C file is compiled on first use with the system C compiler (``$CC``, else ``cc``) into
``$LABELEMB_CACHE_DIR`` (default ``~/.cache/labelemb``), keyed by a hash of the source and the
flags, and loaded with :mod:`ctypes`; no Python headers or PyTorch build are involved. A
library is loaded only from a folder, and as a file, that this user owns and no one else can
write to; otherwise it is built afresh in a private temporary folder. Where
there is no compiler, or ``LABELEMB_NATIVE=0``, :func:`available` is False and the loss runs
its PyTorch definition instead, with the same results.

Used for CPU tensors of float32/float64 up to :data:`MAX_ELEMENTS` per ``(N, C)`` input;
larger batches are dominated by arithmetic, where PyTorch's vectorised, multi-threaded
kernels win, and GPU tensors never come here.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

__all__ = ["available", "status", "supports", "plan", "native_label_embedding_loss", "MAX_ELEMENTS"]

#: Largest ``N * C`` sent to the compiled loss (one thread); above it PyTorch's kernels win.
MAX_ELEMENTS = 1 << 18

_HERE = Path(__file__).resolve().parent
_SOURCES = ("fused_loss.c", "fused_loss_body.h")
# No -ffast-math: the kernel relies on isfinite() and on IEEE NaN ordering.
# -fno-math-errno lets sqrt be one instruction; errno is never read.
_FLAGS = ("-O2", "-fno-math-errno", "-std=c99", "-shared", "-fPIC")
_REDUCTIONS = {"mean": 0, "sum": 1, "none": 2}
_HINGES = {"l1": 0, "l2": 1, "abs": 2}
_LE_NO_MEMORY = 4  # fused_loss.c's return codes; the others are bad input, named by _raise


class _Options(ctypes.Structure):
    """Mirrors ``le_options`` in fused_loss.c, field for field."""

    _fields_ = [
        ("rows", ctypes.c_int64),
        ("classes", ctypes.c_int64),
        ("ignore_index", ctypes.c_int64),
        ("soft_on", ctypes.c_int32),
        ("has_aux", ctypes.c_int32),
        ("embedding_ce", ctypes.c_int32),
        ("mask_wrong", ctypes.c_int32),
        ("by_correct", ctypes.c_int32),
        ("hinge", ctypes.c_int32),
        ("hinge_mean", ctypes.c_int32),
        ("reduction", ctypes.c_int32),
        ("validate", ctypes.c_int32),
        ("e_by_target", ctypes.c_int32),
        ("w_ce", ctypes.c_double),
        ("w_soft", ctypes.c_double),
        ("tau", ctypes.c_double),
        ("alpha", ctypes.c_double),
        ("ld1", ctypes.c_int64),
        ("ld2", ctypes.c_int64),
    ]


_lock = threading.Lock()
_state: dict[str, Any] = {"loaded": False, "lib": None, "reason": "not built yet"}


def _cache_dir() -> Path:
    root = os.environ.get("LABELEMB_CACHE_DIR")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "labelemb" if xdg else Path.home() / ".cache" / "labelemb"


def _build() -> tuple[ctypes.CDLL | None, str]:
    """Compile (or reuse) the shared library; returns it and a one-line status."""
    if os.environ.get("LABELEMB_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None, "disabled by LABELEMB_NATIVE=0"
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return None, "no C compiler found (set CC, or install gcc)"
    digest = hashlib.sha256()
    for name in _SOURCES:
        digest.update((_HERE / name).read_bytes())
    digest.update(" ".join((compiler, *_FLAGS, platform.machine(), platform.system())).encode())
    name = f"fused_loss-{digest.hexdigest()[:16]}.so"
    try:
        cache = _cache_dir()
        cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        cache = None
    # A shared library is code: load one only from a folder no one else can write to.
    if cache is None or not _private(cache) or (
            (cache / name).exists() and not _private(cache / name)):
        cache = Path(tempfile.mkdtemp(prefix="labelemb-native-"))  # private, this process only
    target = cache / name
    if not target.exists():
        try:
            # Build beside the target, then rename: a killed build never leaves a broken .so,
            # and concurrent processes (DDP ranks) each install a complete file.
            fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=target.parent)
            os.close(fd)
            try:
                subprocess.run(
                    [compiler, *_FLAGS, "-o", tmp, str(_HERE / "fused_loss.c"), "-lm"],
                    check=True, capture_output=True, text=True, timeout=120,
                )
                os.chmod(tmp, 0o755)  # whatever the umask: writable by the owner only
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except (OSError, subprocess.SubprocessError) as err:
            detail = getattr(err, "stderr", "") or str(err)
            return None, f"compiling {_SOURCES[0]} with {compiler} failed: {detail.strip()[:500]}"
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as err:
        return None, f"loading {target} failed: {err}"
    pointers = [ctypes.c_void_p] * 9
    for suffix in ("f32", "f64"):
        fn = getattr(lib, f"le_loss_{suffix}")
        fn.argtypes = [ctypes.POINTER(_Options), *pointers]
        fn.restype = ctypes.c_int
    return lib, f"compiled loss in {target}"


def _private(path: Path) -> bool:
    """Owned by this user and writable by no one else."""
    if not hasattr(os, "getuid"):  # not POSIX: no owner to check
        return True
    st = path.stat()
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


def _library() -> ctypes.CDLL | None:
    if not _state["loaded"]:
        with _lock:
            if not _state["loaded"]:
                lib, reason = _build()
                _state.update(loaded=True, lib=lib, reason=reason)
                if lib is None and "LABELEMB_NATIVE" not in reason:
                    warnings.warn(f"labelemb: {reason}; the loss runs its PyTorch code instead "
                                  "(same results, more time per step on small models)",
                                  RuntimeWarning, stacklevel=3)
    return _state["lib"]


def available() -> bool:
    """Whether the compiled loss can be used (builds it on the first call)."""
    return _library() is not None


def status() -> str:
    """One line: where the compiled loss lives, or why it is not used."""
    _library()
    return str(_state["reason"])


_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def loaded() -> bool:
    """Whether the library is built and loaded (no build attempt: for per-call checks)."""
    return _state["lib"] is not None


def supports(logits: Any, aux_logits: Any = None) -> bool:
    """Whether logits ``(N, C, ...)`` (and aux logits) can go to the compiled loss.

    fp16/bf16 qualify: like the PyTorch path, the loss computes in float32.
    """
    if not (isinstance(logits, Tensor) and logits.is_cpu and logits.dtype in _DTYPES
            and logits.dim() >= 2 and logits.shape[1] > 0 and logits.numel() <= MAX_ELEMENTS):
        return False
    if aux_logits is not None and not (
        isinstance(aux_logits, Tensor) and aux_logits.is_cpu
        and (aux_logits.dtype == torch.float64) == (logits.dtype == torch.float64)
    ):
        return False
    return (_state["lib"] if _state["loaded"] else _library()) is not None


class Plan(NamedTuple):
    """What one set of loss options means for the kernel; made once per set (cached)."""

    options: bytes  # an ``_Options`` image without rows, classes and e_by_target
    names: tuple[str, ...]  # the computed terms, in the kernel's order
    reduced: bool


@functools.lru_cache(maxsize=256)
def plan(soft_on: bool, has_aux: bool, embedding_ce: bool, w_ce: float, w_soft: float,
         tau: float, alpha: float, hinge: str, hinge_reduction: str, mask_wrong: bool,
         embedding_normalizer: str, ignore_index: int, reduction: str, validate: bool) -> Plan:
    """The kernel's options for one configuration of the loss (positional: a cheap cache key)."""
    embedding_ce = embedding_ce and has_aux
    options = _Options(
        ignore_index=ignore_index, soft_on=soft_on, has_aux=has_aux, embedding_ce=embedding_ce,
        mask_wrong=mask_wrong, by_correct=embedding_normalizer == "correct" and mask_wrong,
        hinge=_HINGES[hinge], hinge_mean=hinge_reduction == "mean",
        reduction=_REDUCTIONS[reduction], validate=validate,
        w_ce=w_ce, w_soft=w_soft, tau=tau, alpha=alpha,
    )
    names = ["ce"] + ["soft_ce"] * soft_on
    if has_aux:
        names += ["aux_ce", "aux_hinge"] + ["embedding_ce"] * embedding_ce
    return Plan(bytes(options), tuple(names), reduction != "none")


def native_label_embedding_loss(
    z1: Tensor, z2: Tensor | None, e: Tensor | None, target: Tensor, how: Plan,
    e_by_target: bool = False,
) -> tuple[Tensor, Tensor]:
    """The loss and its stacked terms from rows ``z1, z2, e`` ``(M, C)`` and ``target (M,)``.

    ``how`` comes from :func:`plan`. ``e`` (the embedding's logits for the target, any
    in-range index where the target is ignored) is needed for ``soft_ce`` or ``embedding_ce``;
    with ``e_by_target`` it is the ``(C, C)`` matrix of a :class:`~labelemb.LabelEmbedding`
    instead, row ``y`` read for target ``y`` (no gather, and its gradient comes straight from
    the kernel). Returns ``loss`` (``()``, or ``(M,)`` for ``reduction="none"``) and the terms,
    ``(K,)`` or ``(K, M)``, in the order of ``how.names``.
    """
    if not _state["lib"] and _library() is None:
        raise RuntimeError(f"labelemb: the compiled loss is not available: {status()}")
    options = _Options.from_buffer_copy(how.options)
    options.rows, options.classes = z1.shape
    options.e_by_target = e_by_target
    if e is not None and e.dtype != z1.dtype:
        e = e.to(z1.dtype)  # e.g. a float32 embedding beside float64 logits
    n_terms = len(how.names)
    terms = z1.new_empty((n_terms,) if how.reduced else (n_terms, options.rows))
    # The terms come back through an output argument: a second output of the Function would
    # cost autograd a zero gradient and a longer backward on every step.
    loss = _NativeLoss.apply(options, target, terms, z1, z2, e)
    return loss, terms


def _rows(z: Tensor) -> tuple[Tensor, int]:
    """``z (M, C)`` as dense rows the kernel can read, and their stride in elements.

    Rows of a wider matrix (``both[:, :C]`` of a :class:`~labelemb.LabelEmbeddingHead`) are read
    where they lie; anything else is copied to contiguous memory.
    """
    rows, classes = z.shape
    if rows > 1 and (z.stride(1) == 1 or classes == 1) and z.stride(0) >= classes:
        return z, z.stride(0)
    z = z.contiguous()
    return z, classes


def _ptr(x: Tensor | None) -> int | None:
    return None if x is None else x.data_ptr()


class _NativeLoss(torch.autograd.Function):
    """Forward: the compiled loss, terms and gradients. Backward: the stored gradients."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, o: _Options, target: Tensor, terms: Tensor, z1: Tensor, z2: Tensor | None,
        e: Tensor | None,
    ) -> Tensor:
        target = target.contiguous()
        if target.dtype != torch.int64:
            target = target.long()
        z1, o.ld1 = _rows(z1)
        if z2 is not None:
            z2, o.ld2 = _rows(z2)
        e = None if e is None else e.contiguous()
        need1, need2, need_e = ctx.needs_input_grad[3:]
        dense = torch.contiguous_format  # gradients are written row after row
        g1 = torch.empty_like(z1, memory_format=dense) if need1 else None
        g2 = torch.empty_like(z2, memory_format=dense) if need2 and z2 is not None else None
        # e learns from embedding_ce alone (soft_ce's target is detached).
        ge = torch.empty_like(e) if need_e and e is not None and o.embedding_ce else None
        reduced = o.reduction != _REDUCTIONS["none"]
        loss = z1.new_empty(() if reduced else (o.rows,))
        lib, dtype = _state["lib"], z1.dtype
        fn = lib.le_loss_f32 if dtype is torch.float32 else (
            lib.le_loss_f64 if dtype is torch.float64 else None)
        # The kernel reads raw memory: every tensor must be of the type it is compiled for.
        if fn is None or (z2 is not None and z2.dtype is not dtype) or terms.dtype is not dtype:
            raise TypeError("the compiled loss takes float32 or float64 logits of one dtype, got "
                            f"{dtype} and {None if z2 is None else z2.dtype}")
        code = fn(ctypes.byref(o), _ptr(target), _ptr(z1), _ptr(z2), _ptr(e), _ptr(loss),
                  _ptr(terms), _ptr(g1), _ptr(g2), _ptr(ge))
        if code:
            _raise(code, o, target, z1, z2)
        ctx.grads = (g1, g2, ge)
        ctx.reduced = reduced
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph=True: these gradients have no graph
            raise RuntimeError("the compiled label embedding loss has no double backward; use "
                               "backend='autograd'")
        if ctx.grads is None:
            raise RuntimeError(
                "the compiled label embedding loss hands out its gradients once; to backpropagate "
                "twice (retain_graph=True) use backend='autograd'"
            )
        grads, ctx.grads = ctx.grads, None  # hand the buffers over, no copy
        if not ctx.reduced:
            grads = tuple(None if g is None else g.mul_(grad_loss.unsqueeze(1)) for g in grads)
        elif float(grad_loss) != 1.0:  # loss.backward() passes 1 (a CPU scalar: no sync cost)
            grads = tuple(None if g is None else g.mul_(grad_loss) for g in grads)
        return (None, None, None, *grads)


def _raise(code: int, o: _Options, target: Tensor, z1: Tensor, z2: Tensor | None) -> None:
    """Raise the error the PyTorch path raises for the same input."""
    if code == _LE_NO_MEMORY:
        raise MemoryError("labelemb: the compiled loss could not allocate its scratch rows")
    from ..functional import check_classification_inputs  # the one source of the messages

    check_classification_inputs(z1, target, aux_logits=z2, ignore_index=o.ignore_index,
                                validate=True)
    raise ValueError(f"labelemb: the compiled loss rejected its input (code {code})")
