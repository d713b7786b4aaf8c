"""Time and memory of one seq2seq training step, label embedding over the baseline.

Two sizes: ``small`` (word embeddings 128, one 256-unit LSTM layer, 6,698 target words: the
model of issue 14's end-to-end run) and ``iwslt`` (the paper's IWSLT model: 2 x 512 LSTM,
50,000 words per side). A step is forward, loss, backward, clip, Adam over batches of 64 pairs.

Time: baseline and emb are built in ONE process and stepped in alternating rounds
(``_common.interleaved``), each step on a new batch; the ratio of the medians is reported, so a
busy machine slows both alike. Memory: each mode again in a fresh process, whose peak resident
set size (``VmHWM``) is that mode's alone.

Batches: with ``--data DIR`` (``DIR/train.{en,es}``, e.g. from ``labelemb data prepare
bible-en-es``) real sentence pairs, the vocabularies capped at the size's words; without it,
random pairs whose target words are drawn with probability proportional to 1/rank (Zipf, as
in text: a batch of 1,920 tokens holds several hundred distinct words), lengths 30.

    python benchmarks/seq2seq_step.py --size small --data data/bible-en-es
    python benchmarks/seq2seq_step.py --size iwslt
    python benchmarks/seq2seq_step.py --quick            # smoke run (tiny model, few steps)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from _common import (MIB, format_phases, interleaved, machine, median,  # noqa: E402
                     peak_rss_bytes, profiled_phases, run_worker)
from labelemb.data.parallel_text import Batch, collate  # noqa: E402
from labelemb.engine.decoding import seq2seq_criterion  # noqa: E402
from labelemb.engine.loop import adam  # noqa: E402
from labelemb.engine.seq2seq import sequence_loss  # noqa: E402
from labelemb.models.seq2seq import SIZES as MODEL_SIZES  # noqa: E402
from labelemb.models.seq2seq import Seq2Seq, Seq2SeqConfig  # noqa: E402

#: size -> (model settings, target words)
SIZES = {
    "small": (dict(emb_dim=128, hidden=256, layers=1, dropout=0.2, share_embeddings=False),
              6_698),
    "iwslt": (dict(MODEL_SIZES["iwslt15"]), 50_000),
    "quick": (dict(emb_dim=16, hidden=32, layers=1, dropout=0.0, share_embeddings=False), 500),
}
BATCH, LENGTH = 64, 30


def make_batches(args: argparse.Namespace, vocab: int, count: int) -> tuple[list, int, int]:
    """``count`` batches of ``BATCH`` pairs, real (``--data``) or Zipf-distributed, and the
    source and target vocabulary sizes."""
    g = torch.Generator().manual_seed(0)
    if args.data:
        from labelemb.data.parallel_text import batch_indices, encode_corpus, read_parallel
        from labelemb.data.vocab import Vocab

        corpus = read_parallel(f"{args.data}/train.en", f"{args.data}/train.es").filter(100)
        sv = Vocab.build(corpus.iter_tokens("src"), max_size=vocab)
        tv = Vocab.build(corpus.iter_tokens("tgt"), max_size=vocab)
        src, tgt = encode_corpus(corpus, sv, tv)
        order = batch_indices(tgt.lengths(), BATCH, g)[:count]
        return [collate([src[i] for i in b], [tgt[i] for i in b]) for b in order], len(sv), len(tv)
    ranks = torch.arange(1, vocab - 3, dtype=torch.float64)
    out = []
    for _ in range(count):
        src = torch.multinomial(1 / ranks, BATCH * LENGTH, True, generator=g) + 4
        tgt = torch.multinomial(1 / ranks, BATCH * LENGTH, True, generator=g) + 4
        out.append(collate(src.view(BATCH, LENGTH).tolist(), tgt.view(BATCH, LENGTH).tolist()))
    return out, vocab, vocab


def build(mode: str, args: argparse.Namespace, src_vocab: int, vocab: int):
    """Model, criterion and a ``step(batch)`` closure of one mode (same seed for both)."""
    from labelemb.data.vocab import Vocab

    settings, _ = SIZES[args.size]
    train_mode = "baseline" if mode == "baseline" else "emb"
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(src_vocab, vocab, **settings), aux_head=train_mode == "emb")
    # chunk_size None: labelemb.chunked's default; warm-up 0: all five terms from step one
    criterion = seq2seq_criterion(train_mode, Vocab([f"w{i}" for i in range(vocab - 4)]), dict(
        label_dim=args.label_dim, warmup_steps=0, chunked_loss=mode == "emb-chunked",
        chunk_size=args.chunk_size))
    params = list(model.parameters()) + list(criterion.parameters())
    optimizer = adam(params, 1e-3)  # as seq2seq train builds it

    def step(batch) -> None:
        loss = sequence_loss(model, criterion, batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()

    return step


def memory_child(args: argparse.Namespace) -> dict:
    """Peak RSS of ``args.child``'s mode alone over a few steps. The batches come from the
    parent's file (``--batches``): reading a corpus here would set a peak of its own."""
    saved = torch.load(args.batches, weights_only=True)
    batches = [Batch(*tensors, index=[]) for tensors in saved["batches"]]
    step = build(args.child, args, saved["src_vocab"], saved["vocab"])
    for b in batches:
        step(b)
    return {"mode": args.child, "peak_rss_mib": round(own_peak_rss_bytes() / MIB, 1)}


def own_peak_rss_bytes() -> int:
    """This process's peak resident set since it started (``VmHWM``). Not ``ru_maxrss``: a
    child inherits its parent's peak through fork and exec, and the parent has run every mode."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return peak_rss_bytes()


def save_batches(path: str, batches: list, src_vocab: int, vocab: int) -> None:
    torch.save({"batches": [(b.src, b.src_lengths, b.tgt_in, b.tgt_out) for b in batches],
                "src_vocab": src_vocab, "vocab": vocab}, path)


def timing(args: argparse.Namespace) -> dict:
    n = args.rounds * args.steps_per_round + 1
    batches, src_vocab, vocab = make_batches(args, SIZES[args.size][1], n)
    tokens = [int(b.num_tokens) for b in batches]
    distinct = [len(torch.unique(b.tgt_out[b.tgt_out != 0])) for b in batches]
    fns = {mode: build(mode, args, src_vocab, vocab) for mode in args.modes}
    steps = {}
    for mode, fn in fns.items():  # every mode steps through the same batches
        steps[mode] = lambda fn=fn, it=itertools.cycle(batches): fn(next(it))
    times = interleaved(steps, args.rounds, args.steps_per_round, warmup=1)
    med = {m: median(t) for m, t in times.items()}
    save_batches(args.batches, batches[: args.memory_steps], src_vocab, vocab)
    profiled = ({m: profiled_phases(lambda fn=fn: fn(batches[0])) for m, fn in fns.items()}
                if args.profile else {})
    return {"size": args.size, "vocab": vocab, "label_dim": args.label_dim,
            "chunk_size": args.chunk_size,
            "batches": "real" if args.data else "zipf", "tokens_per_batch": median(tokens),
            "distinct_targets_per_batch": median(distinct), "machine": machine(),
            "median_s": {m: round(v, 6) for m, v in med.items()},
            "ratio": {m: round(med[m] / med["baseline"], 3) for m in med if m != "baseline"},
            "paired_ratio": {m: paired_ratios(times[m], times["baseline"])
                             for m in med if m != "baseline"},
            "profiled": profiled}


def paired_ratios(mode: list[float], baseline: list[float]) -> dict[str, float]:
    """Step i of every mode ran on the same batch: the spread of the per-batch ratios says how
    far one run's ratio of medians can be trusted."""
    ratios = sorted(a / b for a, b in zip(mode, baseline, strict=True))
    return {"median": round(median(ratios), 3), "min": round(ratios[0], 3),
            "max": round(ratios[-1], 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--modes", nargs="+", default=["baseline", "emb-chunked"],
                   choices=["baseline", "emb", "emb-chunked"],
                   help="emb: the plain loss on (B*T) x V logits; emb-chunked: labelemb.chunked")
    p.add_argument("--data", default=None, help="folder with train.en / train.es: real batches")
    p.add_argument("--label-dim", type=int, default=512)
    p.add_argument("--chunk-size", type=int, default=None,
                   help="emb-chunked: targets per chunk (default: sized by labelemb.chunked)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps-per-round", type=int, default=2)
    p.add_argument("--memory-steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--no-memory", action="store_true", help="skip the per-mode memory runs")
    p.add_argument("--profile", action="store_true",
                   help="also profile one step of each mode: the chunked loss's phases")
    p.add_argument("--quick", action="store_true", help="tiny model, 1 round: a smoke run")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--batches", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.size, args.rounds, args.steps_per_round, args.memory_steps = "quick", 1, 1, 1
        args.label_dim = 16
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(memory_child(args)))
        return
    if "baseline" not in args.modes:
        args.modes = ["baseline", *args.modes]
    with tempfile.TemporaryDirectory() as tmp:
        args.batches = os.path.join(tmp, "batches.pt")
        result = timing(args)
        flags = [f"--size={args.size}", f"--label-dim={args.label_dim}",
                 f"--threads={args.threads}", f"--batches={args.batches}"]
        flags += [f"--chunk-size={args.chunk_size}"] if args.chunk_size else []
        if not args.no_memory:
            result["peak_rss_mib"] = {
                m: run_worker(__file__, [*flags, "--child", m])["peak_rss_mib"]
                for m in args.modes}
    print(json.dumps(result))
    for m in args.modes:
        mem = result.get("peak_rss_mib", {}).get(m, "-")
        ratio = result["ratio"].get(m, 1.0)
        spread = result["paired_ratio"].get(m)
        paired = f" (per batch {spread['min']:.2f} to {spread['max']:.2f})" if spread else ""
        print(f"{m}: {result['median_s'][m]} s/step, ratio {ratio:.2f}{paired}, peak RSS {mem} MiB")
        if m in result["profiled"]:
            print("  " + format_phases(*result["profiled"][m]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
