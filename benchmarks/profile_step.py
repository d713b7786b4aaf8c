"""Where the label embedding network's extra time goes in one training step.

Times the four phases of a step (forward through the head, loss, backward, Adam step) for the
baseline and the label embedding network on the same batches, alternating step by step, and
prints the medians and their differences; then the torch.profiler table of the loss's own
operations. Same models and batches as ``train_step.py``.

    python benchmarks/profile_step.py --model mlp
    python benchmarks/profile_step.py --quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.profiler import profile, record_function  # noqa: E402

from _common import machine  # noqa: E402
from labelemb import LabelEmbedding, LabelEmbeddingLoss  # noqa: E402
from labelemb.models.classifier import build_model  # noqa: E402
from train_step import SETUPS, batches  # noqa: E402

PHASES = ("forward", "loss", "backward", "optimizer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(SETUPS), default="mlp")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: all)")
    parser.add_argument("--quick", action="store_true", help="batch 4, 6 steps")
    parser.add_argument("--compile-loss", action="store_true",
                        help="profile torch.compile(criterion) instead of the eager criterion")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    in_channels, size, batch = SETUPS[args.model][:3]
    steps = args.steps
    if args.quick:
        batch, steps = 4, 6
    warmup = min(20, steps // 3)
    xs, ys = batches(args.model, batch, steps)
    torch.manual_seed(0)
    base = build_model(args.model, in_channels, size, 10, aux=False)
    torch.manual_seed(0)
    emb = build_model(args.model, in_channels, size, 10, aux=True)
    criterion = LabelEmbeddingLoss(LabelEmbedding(10))
    if args.compile_loss:
        criterion = torch.compile(criterion)
    opt_base = torch.optim.Adam(base.parameters(), lr=1e-3)
    opt_emb = torch.optim.Adam([*emb.parameters(), *criterion.parameters()], lr=1e-3)

    def base_loss(logits, aux_logits, y):
        return F.cross_entropy(logits, y)

    def emb_loss(logits, aux_logits, y):
        return criterion(logits, aux_logits, y)[0]

    sides = {"baseline": (base, base_loss, opt_base), "label_embedding": (emb, emb_loss, opt_emb)}
    times = {side: {p: [] for p in PHASES} for side in sides}

    def step(side: str, i: int, record: bool) -> None:
        model, loss_fn, opt = sides[side]
        x, y = xs[i % len(xs)], ys[i % len(ys)]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits, aux_logits = model(x)
        t1 = time.perf_counter()
        with record_function("LOSS"):
            loss = loss_fn(logits, aux_logits, y)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if record:
            for p, dt in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[side][p].append(dt)

    for i in range(steps):
        for side in (sides if i % 2 == 0 else list(sides)[::-1]):
            step(side, i, record=i >= warmup)

    print(machine() + ("; loss compiled" if args.compile_loss else "; loss eager"))
    print(f"{args.model}, batch {batch}: median microseconds per phase over "
          f"{steps - warmup} alternating steps")
    print(f"{'phase':10s} {'baseline':>10s} {'label emb':>10s} {'extra':>8s}")
    total = {side: 0.0 for side in sides}
    for p in PHASES:
        m = {side: 1e6 * statistics.median(times[side][p]) for side in sides}
        for side in sides:
            total[side] += m[side]
        print(f"{p:10s} {m['baseline']:10.0f} {m['label_embedding']:10.0f} "
              f"{m['label_embedding'] - m['baseline']:+8.0f}")
    print(f"{'sum':10s} {total['baseline']:10.0f} {total['label_embedding']:10.0f} "
          f"{total['label_embedding'] - total['baseline']:+8.0f}  "
          f"(ratio {total['label_embedding'] / total['baseline']:.3f})")

    with profile() as prof:
        for i in range(min(50, steps)):
            step("label_embedding", i, record=False)
    print("\ntorch.profiler, label embedding steps, operations by self CPU time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
