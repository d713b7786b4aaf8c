"""Large label sets: head + loss, forward and backward, memory and time against cross-entropy.

Setting (issue 6): C = 50,000 labels, 512-d features, 4,096 targets (a seq2seq batch), a
compressed label embedding (``dim`` 100 by default). Variants:

* ``ce``: the baseline, one ``nn.Linear(512, C)`` and ``F.cross_entropy``.
* ``chunked``: ``LabelEmbeddingHead`` + :class:`labelemb.chunked.ChunkedLabelEmbeddingLoss`
  with the ``seq2seq`` preset after its warm-up (all five terms on).
* ``unchunked`` (``--unchunked``): ``LabelEmbeddingHead`` + ``LabelEmbeddingLoss``, the plain
  path that holds three ``N x C`` tensors and their gradients.

``--fit all`` (the default) turns ``mask_wrong`` off so the embedding is fitted on every
target, the worst case (as if the auxiliary head were right on every target); ``--fit
correct`` keeps the preset's mask, which at random initialisation selects almost no target.

Memory: each variant runs in a fresh process; the figure is the peak resident set size
(``getrusage`` ``ru_maxrss``) minus the resident set size after setup (parameters, features
and targets allocated, one tiny warm-up step run so libraries are loaded). It counts
everything the step allocates: activations, temporaries and the parameter gradients.

Time: the variants' processes alternate (A B, B A, ...) for ``--rounds`` rounds of
``--steps`` timed steps each; the median step time of each variant and their ratio are
printed.

    python benchmarks/large_vocab.py                # the issue's setting
    python benchmarks/large_vocab.py --dim 512      # the authors' seq2seq embedding size
    python benchmarks/large_vocab.py --quick        # smoke run, checks chunked == unchunked
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _common import (MIB, format_phases, machine, median, peak_rss_bytes,  # noqa: E402
                     profiled_phases, rss_bytes, run_worker, write_json)
from labelemb import CompressedLabelEmbedding, LabelEmbeddingHead, LabelEmbeddingLoss  # noqa: E402
from labelemb.chunked import ChunkedLabelEmbeddingLoss  # noqa: E402

VARIANTS = ("ce", "chunked", "unchunked")
TARGET_MEMORY_RATIO = 1.0
TARGET_TIME_RATIO = 2.0


def build(variant: str, num_classes: int, features: int, dim: int, fit: str,
          chunk_size: int | None):
    """Return ``step(h, y) -> loss`` and the modules whose gradients it fills."""
    torch.manual_seed(0)
    if variant == "ce":
        linear = torch.nn.Linear(features, num_classes)

        def step(h, y):
            loss = F.cross_entropy(linear(h), y)
            loss.backward()
            return loss

        return step, [linear]
    head = LabelEmbeddingHead(features, num_classes)
    embedding = CompressedLabelEmbedding(num_classes, dim)
    options = dict(warmup_steps=0, mask_wrong=fit == "correct")
    if variant == "chunked":
        criterion = ChunkedLabelEmbeddingLoss.from_preset("seq2seq", embedding,
                                                          chunk_size=chunk_size, **options)

        def step(h, y):
            loss, _ = criterion(h, y, head)
            loss.backward()
            return loss
    else:
        criterion = LabelEmbeddingLoss.from_preset("seq2seq", embedding, **options)

        def step(h, y):
            loss, _ = criterion(*head(h), y)
            loss.backward()
            return loss

    return step, [head, criterion]


def worker(args: argparse.Namespace) -> dict:
    """One variant in this (fresh) process: memory of the first steps, time of each step."""
    step, modules = build(args.worker, args.num_classes, args.features, args.dim, args.fit,
                          args.chunk_size)

    def batch(n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        h = torch.randn(n, args.features, generator=g).requires_grad_(True)
        return h, torch.randint(0, args.num_classes, (n,), generator=g)

    def clear():
        for m in modules:
            m.zero_grad(set_to_none=True)

    step(*batch(8, 1))  # load kernels and lazily allocated library state
    clear()
    h, y = batch(args.targets, 0)
    rss_setup = rss_bytes()
    times, losses = [], []
    for _ in range(args.steps):
        clear()
        h.grad = None
        t0 = time.perf_counter()
        loss = step(h, y)
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    peak_extra_mib = (peak_rss_bytes() - rss_setup) / MIB
    profiled = _profile(lambda: (clear(), step(h, y))) if args.profile else {}
    return dict(variant=args.worker, setup_mib=rss_setup / MIB, peak_extra_mib=peak_extra_mib,
                times=times, loss=losses[0], **profiled)


#: The matrix-product operators, as torch.profiler names them.
_MATMULS = ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::addmv_")


def _profile(run, top: int = 5) -> dict:
    """Two steps under torch.profiler. The first, without input shapes (recording them took
    the chunked step from about 20 s to 27-32 s here): the step's time and the chunked loss's
    phases. The second: the share of self CPU time spent in matrix products and the ``top``
    operators, by input shapes, that took the most."""
    from torch.profiler import profile

    seconds, phases = profiled_phases(run)
    with profile(record_shapes=True) as prof:
        run()
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events)
    heaviest = sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]
    return dict(matmul_share=sum(e.self_cpu_time_total for e in events
                                 if e.key in _MATMULS) / total,
                top_ops=[dict(op=e.key, shapes=str(e.input_shapes), calls=e.count,
                              seconds=e.self_cpu_time_total / 1e6) for e in heaviest],
                profiled_seconds=seconds, phases=phases)


def _print_run(r: int, variant: str, res: dict) -> None:
    """One worker's figures: step, memory, loss, and its profile's if it made one."""
    share = res.get("matmul_share")
    print(f"  round {r}: {variant:9s} step {median(res['times']):8.3f} s  "
          f"peak +{res['peak_extra_mib']:8.1f} MiB  loss {res['loss']:.5f}"
          + (f"  matrix products {100 * share:.0f} % of the step" if share else ""), flush=True)
    for op in res.get("top_ops") or []:
        print(f"    {op['seconds']:7.3f} s  {op['calls']:4d} x {op['op']} {op['shapes']}")
    if res.get("phases"):
        print("    " + format_phases(res["profiled_seconds"], res["phases"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-classes", type=int, default=50_000)
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--targets", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=100, help="compressed embedding size")
    parser.add_argument("--fit", choices=("all", "correct"), default="all")
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per process")
    parser.add_argument("--unchunked", action="store_true", help="also run the plain path")
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--profile", action="store_true",
                        help="also profile two steps of each variant: the chunked loss's "
                             "phases, the share of matrix products, the heaviest operators")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.num_classes, args.features, args.targets, args.dim = 2000, 64, 300, 16
        args.rounds, args.steps, args.unchunked = 1, 1, True
        args.chunk_size = args.chunk_size or 64
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    variants = ["ce", "chunked"] + (["unchunked"] if args.unchunked else [])
    passthrough = [f"--num-classes={args.num_classes}", f"--features={args.features}",
                   f"--targets={args.targets}", f"--dim={args.dim}", f"--fit={args.fit}",
                   f"--steps={args.steps}"] + (["--profile"] if args.profile else [])
    if args.chunk_size:
        passthrough.append(f"--chunk-size={args.chunk_size}")
    print(machine())
    print(f"C={args.num_classes} features={args.features} targets={args.targets} "
          f"embedding dim={args.dim} fit={args.fit} chunk_size={args.chunk_size or 'default'}")
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            res = run_worker(__file__, [f"--worker={v}", *passthrough])
            runs[v].append(res)
            _print_run(r, v, res)

    summary = {}
    for v in variants:
        summary[v] = dict(
            seconds=median([t for res in runs[v] for t in res["times"]]),
            peak_extra_mib=max(res["peak_extra_mib"] for res in runs[v]),
            loss=runs[v][0]["loss"],
        )
    ce = summary["ce"]
    for v in variants:
        s = summary[v]
        print(f"{v:9s} step {s['seconds']:8.3f} s ({s['seconds'] / ce['seconds']:.2f}x ce)   "
              f"peak memory +{s['peak_extra_mib']:8.1f} MiB "
              f"({s['peak_extra_mib'] / ce['peak_extra_mib']:.2f}x ce)")
    ch = summary["chunked"]
    print(f"chunked / ce: time {ch['seconds'] / ce['seconds']:.2f} (target <= "
          f"{TARGET_TIME_RATIO}), peak memory {ch['peak_extra_mib'] / ce['peak_extra_mib']:.2f} "
          f"(target <= {TARGET_MEMORY_RATIO})")
    if "unchunked" in summary:
        diff = abs(summary["unchunked"]["loss"] - ch["loss"])
        print(f"chunked loss {ch['loss']:.6f} vs unchunked {summary['unchunked']['loss']:.6f}: "
              f"|diff| {diff:.2e}")
        if diff > 1e-4 * max(1.0, abs(ch["loss"])):
            print("ERROR: the chunked loss differs from the unchunked one", file=sys.stderr)
            return 1
    write_json(args.json, args, summary, runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
