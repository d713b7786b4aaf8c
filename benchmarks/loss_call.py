"""What one loss call costs on a small label set, forward and backward, eager and compiled.

The MLP target of issue 11 (step with ``torch.compile(criterion)`` <= 1.08x the eager
cross-entropy step) leaves the loss a few hundred microseconds. This script times the loss
calls alone, at the MLP's sizes (batch 100, 10 classes; logits that require gradients, as a
head's would), interleaved round by round:

* ``ce``: ``F.cross_entropy``, eager (the target's baseline) and under ``torch.compile``, which
  measures what ``torch.compile`` costs per call on the simplest loss there is; then three
  cross-entropies compiled as one, on the three tensors the method trains (both heads' logits
  and the embedding's rows): about the least a compiled loss that trains them costs;
* ``emb``: ``LabelEmbeddingLoss(LabelEmbedding(10))`` eager and compiled as the target compiles
  it, then compiled without validation and compiled returning only the loss (no terms): how
  much of the compiled call the method's options and outputs account for.

    python benchmarks/loss_call.py             # 1 thread, as the MLP target
    python benchmarks/loss_call.py --quick     # smoke run
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from _common import interleaved, machine, median  # noqa: E402
from labelemb import LabelEmbedding, LabelEmbeddingLoss  # noqa: E402


def calls(batch: int, num_classes: int) -> dict:
    """``{name: call}``: each call runs one loss forward and backward on the same logits."""
    torch.manual_seed(0)
    logits = torch.randn(batch, num_classes, requires_grad=True)
    aux_logits = torch.randn(batch, num_classes, requires_grad=True)
    target = torch.randint(0, num_classes, (batch,))

    def criterion(**options):  # a fresh one per variant: no warm-up counter is shared
        return LabelEmbeddingLoss(LabelEmbedding(num_classes), **options)

    def loss_of(loss_module):
        return lambda: loss_module(logits, aux_logits, target).loss

    table = nn.Parameter(torch.eye(num_classes))  # a C x C embedding's rows E[y]

    def three_ce():  # the three tensors the method trains, each by a plain cross-entropy
        return sum(F.cross_entropy(x, target) for x in (logits, aux_logits, table[target]))

    losses = {
        "ce eager": lambda: F.cross_entropy(logits, target),
        "ce compiled": torch.compile(lambda: F.cross_entropy(logits, target)),
        "3 x ce compiled (logits, aux_logits, E[y])": torch.compile(three_ce),
        "emb eager": loss_of(criterion()),
        "emb compiled": loss_of(torch.compile(criterion())),
        "emb compiled, validate=False": loss_of(torch.compile(criterion(validate=False))),
        # A compiled function that returns only the loss: inductor never computes the terms.
        "emb compiled, loss only": torch.compile(loss_of(criterion())),
        "emb compiled, validate=False, loss only": torch.compile(
            loss_of(criterion(validate=False))),
    }
    return {name: (lambda loss: lambda: loss().backward())(loss) for name, loss in losses.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls-per-round", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 5 calls")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.rounds, args.calls_per_round = 2, 5
    runs = calls(args.batch, args.num_classes)
    times = interleaved(runs, args.rounds, args.calls_per_round, warmup=3)
    print(machine())
    print(f"batch {args.batch}, {args.num_classes} classes: median microseconds per call "
          f"(forward + backward), {args.rounds} interleaved rounds of {args.calls_per_round}")
    base = median(times["ce eager"])
    for name, seconds in times.items():
        print(f"  {name:44s} {1e6 * median(seconds):8.1f} us  "
              f"{1e6 * (median(seconds) - base):+8.1f} us against ce eager")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
