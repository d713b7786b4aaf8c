"""The chunked loss at several chunk and block sizes, alternated in one process.

Setting: features ``(N, F)`` (``--targets``, ``--features``), a ``LabelEmbeddingHead(F, C)``
(``--classes``), a compressed label embedding of size ``--dim``, targets drawn by a Zipf law
(token ``k`` with probability proportional to ``1 / (k + 1)``: a language model's repeats),
:class:`~labelemb.LossOptions`' defaults (the classification preset's terms) with no warm-up.
``--fit correct`` keeps ``mask_wrong`` (at initialisation almost no target trains the
embedding); ``--fit all`` fits every target. The sizes change how the work is cut, not its
amount, so the terms' options hardly matter to the comparison.

Each configuration ``CHUNK:BLOCK`` (``0``: the loss's own rule, :func:`default_chunk_size` or
:func:`block_size`) runs one forward and backward per round; the order reverses every round.
Printed: each configuration's median CPU time of this process per call (on a loaded machine it
leaves out the waits for a core) and median wall time. The block size is not an option of the
loss (it follows from the chunk and the features' width), so a configuration that names one
replaces ``labelemb.chunked.block_size`` for its calls.

    python benchmarks/chunk_sizes.py --classes 32000 --features 64 --configs 64:512 16:128 0:0
    python benchmarks/chunk_sizes.py --quick
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import labelemb.chunked as chunked  # noqa: E402
from _common import machine, median  # noqa: E402
from labelemb import CompressedLabelEmbedding, LabelEmbeddingHead  # noqa: E402


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classes", type=int, default=32_000)
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--targets", type=int, default=4_096)
    p.add_argument("--dim", type=int, default=100, help="compressed embedding size")
    p.add_argument("--fit", choices=("all", "correct"), default="correct")
    p.add_argument("--configs", nargs="+", default=["0:0"],
                   help="CHUNK:BLOCK rows each (0: the loss's own rule)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="small smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.classes, args.features, args.targets, args.rounds = 300, 8, 100, 2
        args.configs = ["0:0", "7:21"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    head = LabelEmbeddingHead(args.features, args.classes)
    emb = CompressedLabelEmbedding(args.classes, args.dim)
    h = torch.randn(args.targets, args.features, requires_grad=True)
    zipf = 1.0 / torch.arange(1, args.classes + 1, dtype=torch.float64)
    y = torch.multinomial(zipf, args.targets, replacement=True,
                          generator=torch.Generator().manual_seed(0))
    rule = chunked.block_size

    def call(config: str) -> tuple[float, float]:
        chunk, block = (int(x) for x in config.split(":"))
        chunked.block_size = (lambda *_: block) if block else rule
        for p in (h, *head.parameters(), *emb.parameters()):
            p.grad = None
        t0, c0 = time.perf_counter(), time.process_time()
        out = chunked.chunked_label_embedding_loss(
            h, y, head, emb, chunk_size=chunk or None, warmup_steps=0, alpha=0.9, tau=2.0,
            mask_wrong=args.fit == "correct")
        out.loss.backward()
        chunked.block_size = rule
        return time.process_time() - c0, time.perf_counter() - t0

    print(machine())
    print(f"C {args.classes}, F {args.features}, {args.targets} Zipf targets "
          f"({int(y.unique().numel())} distinct), fit {args.fit}; default chunk "
          f"{chunked.default_chunk_size(args.classes)}, block "
          f"{rule(chunked.default_chunk_size(args.classes), args.features)}")
    call(args.configs[0])  # warm-up
    seen: dict[str, list[tuple[float, float]]] = {c: [] for c in args.configs}
    for r in range(args.rounds):
        for config in (args.configs if r % 2 == 0 else args.configs[::-1]):
            seen[config].append(call(config))
    for config, runs in seen.items():
        print(f"{config:>10s}  CPU {median([c for c, _ in runs]):7.3f} s  wall "
              f"{median([w for _, w in runs]):7.3f} s  (CPU per round: "
              + ", ".join(f"{c:.2f}" for c, _ in runs) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
