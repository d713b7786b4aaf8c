"""Memory and time of one seq2seq training step with a large target vocabulary.

Each measurement runs in a fresh Python process, so the peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) belongs to that configuration alone. The child
builds the IWSLT-sized model (2-layer LSTM 512, vocabularies of ``--vocab`` words), a random
batch of ``--batch`` pairs of ``--src-len`` / ``--tgt-len`` tokens, and times full training
steps (forward, loss, backward, clip, Adam).

    python benchmarks/seq2seq_step.py                       # emb and baseline, V = 50,000
    python benchmarks/seq2seq_step.py --modes emb --steps 3 --device cuda

Prints one JSON line per configuration and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def child(args: argparse.Namespace) -> dict:
    import resource
    import time

    import torch
    from torch import nn

    from labelemb.data.parallel_text import collate
    from labelemb.data.vocab import Vocab
    from labelemb.engine.seq2seq import build_criterion, sequence_loss
    from labelemb.models.seq2seq import PRESETS, Seq2Seq, Seq2SeqConfig

    def rss_mib() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    vocab = Vocab([f"w{i}" for i in range(args.vocab - 4)])
    preset = dict(PRESETS["iwslt15"])
    model = Seq2Seq(Seq2SeqConfig(args.vocab, args.vocab, **preset), aux_head=args.mode == "emb")
    model.to(device)
    criterion = build_criterion(args.mode, vocab, args.label_dim, warmup_steps=0,
                                chunked=args.chunked_loss).to(device)
    params = list(model.parameters()) + list(criterion.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3)
    g = torch.Generator().manual_seed(0)
    src = torch.randint(4, args.vocab, (args.batch, args.src_len), generator=g).tolist()
    tgt = torch.randint(4, args.vocab, (args.batch, args.tgt_len), generator=g).tolist()
    batch = collate(src, tgt).to(device)
    built = rss_mib()
    times = []
    for _ in range(args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss, terms = sequence_loss(model, criterion, batch)  # all five terms (warm-up 0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    out = {
        "mode": args.mode, "vocab": args.vocab, "batch": args.batch, "src_len": args.src_len,
        "tgt_len": args.tgt_len, "label_dim": args.label_dim,
        "chunked_loss": args.chunked_loss, "device": str(device),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "params": sum(p.numel() for p in params), "terms": sorted(terms),
        "rss_after_build_mib": round(built, 1), "peak_rss_mib": round(rss_mib(), 1),
        "first_step_s": round(times[0], 3),
        "later_step_s": round(min(times[1:]), 3) if len(times) > 1 else None,
    }
    if device.type == "cuda":
        out["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", nargs="+", default=["emb", "baseline"], choices=["emb", "baseline"])
    p.add_argument("--vocab", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--src-len", type=int, default=30)
    p.add_argument("--tgt-len", type=int, default=30)
    p.add_argument("--label-dim", type=int, default=512)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--chunked-loss", action="store_true",
                   help="emb: labelemb.chunked head + loss (no (B*T) x V tensor)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.mode = args.child
        print(json.dumps(child(args)))
        return
    rows = []
    for mode in args.modes:
        cmd = [sys.executable, __file__, "--child", mode] + [
            f"--{k.replace('_', '-')}" if v is True else f"--{k.replace('_', '-')}={v}"
            for k, v in vars(args).items() if k not in ("modes", "child") and v is not False
        ]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            sys.stderr.write(res.stderr)
            raise SystemExit(f"{mode}: child failed with code {res.returncode}")
        row = json.loads(res.stdout.strip().splitlines()[-1])
        print(json.dumps(row), flush=True)
        rows.append(row)
    print("\n| mode | V | batch x T | params | RSS after build (MiB) | peak RSS (MiB) "
          "| first step (s) | later step (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['mode']} | {r['vocab']:,} | {r['batch']} x {r['tgt_len']} | {r['params']:,} "
              f"| {r['rss_after_build_mib']:,.0f} | {r['peak_rss_mib']:,.0f} "
              f"| {r['first_step_s']} | {r['later_step_s']} |")


if __name__ == "__main__":
    main()
