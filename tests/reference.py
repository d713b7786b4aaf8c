"""An independent, slow, per-sample computation of the paper's loss terms (float64).

Written from the equations (eq. 8-14, 17, Appendix A) and the authors' code (docs/METHOD.md) with plain exp/log/sum,
not the library's code path, so the tests compare two separate derivations.
"""

from __future__ import annotations

import torch
from torch import Tensor


def softmax(x: Tensor, temperature: float = 1.0) -> Tensor:
    x = x / temperature
    x = x - x.max()  # shift for stability; does not change the result
    ex = torch.exp(x)
    return ex / ex.sum()


def cross_entropy(p: Tensor, q: Tensor) -> Tensor:
    """H(p, q) = -sum_i p_i log q_i."""
    return -(p * torch.log(q)).sum()


def reference_terms(z1, z2, y, E_rows, *, tau=2.0, alpha=0.9, hinge="l1", mask_wrong=True,
                    soft_target_temperature=1.0):
    """Per-sample terms for one sample: z1, z2, e are (C,) vectors, y an int.

    Detaches follow the method: the soft target softmax(e) and softmax(z2/tau) are constants.
    """
    C = z1.shape[0]
    one_hot = torch.zeros(C, dtype=z1.dtype)
    one_hot[y] = 1.0
    p1 = softmax(z1)
    e_soft = softmax(E_rows)
    out = {
        "ce": cross_entropy(one_hot, p1),
        "soft_ce": cross_entropy(softmax(E_rows, soft_target_temperature).detach(), p1),
    }
    if z2 is not None:
        p2 = softmax(z2)
        out["aux_ce"] = cross_entropy(one_hot, p2)
        gap = p2[y] - alpha
        if hinge == "l1":
            out["aux_hinge"] = torch.clamp(gap, min=0.0)
        elif hinge == "l2":
            out["aux_hinge"] = torch.clamp(gap, min=0.0) ** 2
        else:
            out["aux_hinge"] = gap.abs()
        correct = int(torch.argmax(z2).item()) == y
        out["embedding_ce"] = cross_entropy(softmax(z2, tau).detach(), e_soft)
        out["_correct"] = torch.tensor(1.0 if (correct or not mask_wrong) else 0.0, dtype=z1.dtype)
    return out


def reference_loss(
    z1: Tensor,  # (M, C)
    z2: Tensor | None,  # (M, C)
    y: Tensor,  # (M,)
    E: Tensor,  # (C, C) the embedding logits of every class
    *,
    beta=0.5,
    tau=2.0,
    alpha=0.9,
    hinge="l1",
    hinge_reduction="sum",
    mask_wrong=True,
    embedding_normalizer="correct",
    soft_on=True,
    ignore_index=-100,
    reduction="mean",
    trainable=True,
    soft_target_temperature=1.0,
):
    """Total loss and the reduced terms, one sample at a time."""
    w_ce, w_soft = (1.0, 1.0) if beta is None else (beta, 1.0 - beta)
    per = []
    for i in range(y.shape[0]):
        yi = int(y[i])
        if yi == ignore_index:
            continue
        per.append(reference_terms(z1[i], None if z2 is None else z2[i], yi, E[yi],
                                   tau=tau, alpha=alpha, hinge=hinge, mask_wrong=mask_wrong,
                                   soft_target_temperature=soft_target_temperature))
    n = max(len(per), 1)
    zero = z1.sum() * 0.0
    sums = {}
    keys = ["ce"] + (["soft_ce"] if soft_on else [])
    if z2 is not None:
        keys += ["aux_ce", "aux_hinge"] + (["embedding_ce"] if trainable else [])
    for k in keys:
        if k == "embedding_ce":
            vals = [p[k] * p["_correct"] for p in per]
        else:
            vals = [p[k] for p in per]
        sums[k] = sum(vals, zero)
    if reduction == "mean":
        for k in ("ce", "soft_ce", "aux_ce"):
            if k in sums:
                sums[k] = sums[k] / n
        if "aux_hinge" in sums and hinge_reduction == "mean":
            sums["aux_hinge"] = sums["aux_hinge"] / n
        if "embedding_ce" in sums:
            if embedding_normalizer == "correct" and mask_wrong:
                n_correct = sum((p["_correct"] for p in per), zero)
                sums["embedding_ce"] = sums["embedding_ce"] / (n_correct + 1e-8)
            else:
                sums["embedding_ce"] = sums["embedding_ce"] / n
    weights = {"ce": w_ce, "soft_ce": w_soft}
    total = sum((weights.get(k, 1.0) * v for k, v in sums.items()), zero)
    return total, sums
