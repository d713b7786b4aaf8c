"""One training step of a small causal LM: label embedding against Transformers' own loss.

Setting (issue 28): a GPT-2 of 1 layer, 64 wide, batch 8 x 512 tokens drawn from a Zipf
distribution over the vocabulary (``--vocab``, 32,000 and 128,000 in the issue), a compressed
label embedding of size 100. Variants, each a forward and backward of the whole model:

* ``transformers``: ``GPT2LMHeadModel(input_ids, labels=...)``, Transformers' own causal-LM
  loss, which makes the float32 ``tokens x vocab`` logits;
* ``emb``: :class:`labelemb.hf.LabelEmbeddingForCausalLM` with ``loss="emb"`` (the seq2seq
  preset after its warm-up), the loss from the hidden states chunk by chunk;
* ``ce``: the same model with ``loss="ce"``: cross-entropy through the chunked path.

Memory: each variant runs in a fresh process; the figure is the peak resident set size minus
the resident set size after setup (model, batch, one small warm-up step). Time: the variants'
processes alternate (A B C, C B A, ...) for ``--rounds`` rounds of ``--steps`` timed steps;
the median step time of each and its ratio to ``transformers`` are printed.

    python benchmarks/lm_step.py --vocab 32000 --threads 1
    python benchmarks/lm_step.py --vocab 128000 --threads 1
    python benchmarks/lm_step.py --quick      # smoke run

The 32,000 time ratio alone, quickly (emb and Transformers' loss only, four alternating rounds
of one step). Each round's ratio and their median are printed, in wall time and in the
processes' CPU time: on a loaded machine a round's two processes meet about the same load, and
CPU time leaves out the time a process waited for a core (on a quiet machine, one thread, the
two agree)::

    python benchmarks/lm_step.py --vocab 32000 --threads 1 --variants transformers emb \
        --rounds 4 --steps 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from _common import (MIB, format_phases, machine, median, peak_rss_bytes,  # noqa: E402
                     profiled_phases, rss_bytes, run_worker, write_json)

VARIANTS = ("transformers", "emb", "ce")
TARGET_MEMORY_RATIO = 1.0
TARGET_TIME_RATIO = 2.0


def build(variant: str, args: argparse.Namespace) -> torch.nn.Module:
    """The variant's model, seeded: the wrapped GPT-2 is the same in every variant."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from labelemb.hf import LabelEmbeddingForCausalLM

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=args.vocab, n_positions=args.seq, n_embd=args.width,
                        n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(config)
    if variant == "transformers":
        return model
    options = dict(warmup_steps=0, mask_wrong=args.fit == "correct") if variant == "emb" else {}
    return LabelEmbeddingForCausalLM.from_model(model, loss=variant, label_dim=args.dim,
                                                logits_with_loss=False,
                                                chunk_size=args.chunk_size, **options)


def zipf_tokens(args: argparse.Namespace, rows: int, seed: int) -> torch.Tensor:
    """``(rows, seq)`` token ids, token ``k`` drawn with probability proportional to
    ``1 / (k + 1)``: the repeats a real text has."""
    weights = 1.0 / torch.arange(1, args.vocab + 1, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    return torch.multinomial(weights, rows * args.seq, replacement=True, generator=g).view(
        rows, args.seq)


def worker(args: argparse.Namespace) -> dict:
    """One variant in this (fresh) process: the memory of its first step, each step's time."""
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build(args.worker, args).train()

    def step(ids: torch.Tensor) -> float:
        model.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss.item()

    step(zipf_tokens(args, 1, 1)[:, :16])  # load kernels and lazily allocated state
    model.zero_grad(set_to_none=True)
    ids = zipf_tokens(args, args.batch, 0)
    rss_setup = rss_bytes()
    times, cpu_times, losses = [], [], []
    for _ in range(args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        losses.append(step(ids))
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    peak_extra_mib = (peak_rss_bytes() - rss_setup) / MIB
    profiled = {}
    if args.profile:  # one more step under torch.profiler: the chunked loss's phases
        seconds, phases = profiled_phases(lambda: step(ids))
        profiled = dict(profiled_seconds=seconds, phases=phases)
    return dict(variant=args.worker, peak_extra_mib=peak_extra_mib, times=times,
                cpu_times=cpu_times,
                loss=losses[0], distinct=int(ids[:, 1:].unique().numel()), **profiled)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="the 32,000 time ratio quickly (emb against Transformers' loss, per-round "
               "ratios and their median):\n  python benchmarks/lm_step.py --vocab 32000 "
               "--threads 1 --variants transformers emb --rounds 4 --steps 1")
    parser.add_argument("--vocab", type=int, default=32_000, help="vocabulary size")
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--width", type=int, default=64, help="the GPT-2's hidden size")
    parser.add_argument("--dim", type=int, default=100, help="compressed embedding size")
    parser.add_argument("--fit", choices=("all", "correct"), default="correct",
                        help="the embedding learns from the targets the second head gets right "
                             "(the preset; almost none at initialisation) or from all")
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads in each variant's process (0: torch's default)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="which variants to run (transformers, the baseline, always runs)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per process")
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one step: the chunked loss's phases")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.variants = ["transformers", *(v for v in VARIANTS[1:] if v in args.variants)]
    if args.quick:
        args.vocab, args.seq, args.batch, args.rounds, args.steps = 2000, 64, 2, 1, 1
    return args


def run_rounds(args: argparse.Namespace, passthrough: list[str]) -> dict[str, list[dict]]:
    """Each variant's fresh processes, in alternating order (A B C, C B A, ...)."""
    runs: dict[str, list[dict]] = {v: [] for v in args.variants}
    for r in range(args.rounds):
        for v in (args.variants if r % 2 == 0 else args.variants[::-1]):
            res = run_worker(__file__, [f"--worker={v}", *passthrough])
            runs[v].append(res)
            print(f"  round {r}: {v:12s} step {median(res['times']):7.3f} s  "
                  f"peak +{res['peak_extra_mib']:7.1f} MiB  loss {res['loss']:.4f}", flush=True)
            if res.get("phases"):
                print("    " + format_phases(res["profiled_seconds"], res["phases"]))
    return runs


def round_ratios(runs: dict[str, list[dict]], key: str = "times") -> dict[str, list[float]]:
    """Per variant, each round's median step over the same round's Transformers step: the two
    ran back to back, so a slow spell on a shared machine moves both. ``key``: ``"times"``
    (wall) or ``"cpu_times"`` (the process's CPU time: on a loaded machine it leaves out the
    time the process waited for a core, which wall time does not)."""
    base = [median(res[key]) for res in runs["transformers"]]
    return {v: [median(res[key]) / b for res, b in zip(rs, base)]
            for v, rs in runs.items() if v != "transformers"}


def _ratios(xs: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in xs) + f" (median {median(xs):.2f}x)"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    passthrough = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                   if k in ("vocab", "seq", "batch", "width", "dim", "fit", "steps", "chunk_size",
                            "threads") and v is not None] + (["--profile"] if args.profile else [])
    if args.threads:  # the machine line names the workers' thread count
        torch.set_num_threads(args.threads)
    print(machine())
    print(f"GPT-2 1 layer x {args.width}, vocab {args.vocab}, batch {args.batch} x {args.seq}, "
          f"embedding dim {args.dim}, fit {args.fit}, chunk_size {args.chunk_size or 'default'}, "
          f"threads {args.threads or 'default'}")
    runs = run_rounds(args, passthrough)
    if "emb" in runs:
        print(f"distinct target tokens: {runs['emb'][0]['distinct']} of "
              f"{args.batch * (args.seq - 1)}")
    summary = {v: dict(seconds=median([t for res in runs[v] for t in res["times"]]),
                       peak_extra_mib=max(res["peak_extra_mib"] for res in runs[v]))
               for v in args.variants}
    ratios, cpu_ratios = round_ratios(runs), round_ratios(runs, "cpu_times")
    base = summary["transformers"]
    for v, s in summary.items():
        s["round_ratios"], s["round_cpu_ratios"] = ratios.get(v, []), cpu_ratios.get(v, [])
        print(f"{v:12s} step {s['seconds']:7.3f} s ({s['seconds'] / base['seconds']:.2f}x)  "
              f"peak +{s['peak_extra_mib']:7.1f} MiB "
              f"({s['peak_extra_mib'] / base['peak_extra_mib']:.2f}x)")
        if v in ratios:
            print(f"{'':12s} per round: wall {_ratios(ratios[v])}; CPU time "
                  f"{_ratios(cpu_ratios[v])}")
    print(f"targets: time <= {TARGET_TIME_RATIO}x, memory <= {TARGET_MEMORY_RATIO}x "
          "Transformers' own loss")
    write_json(args.json, args, summary, runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
