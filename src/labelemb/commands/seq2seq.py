"""``labelemb seq2seq train|translate|evaluate|neighbours``: the paper's Tables 3-5."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register"]

_BOOL = argparse.BooleanOptionalAction

# (flag, TrainConfig field, argparse kwargs). Defaults None = the task's preset.
_TRAIN_OPTIONS: list[tuple[str, dict]] = [
    ("--seed", dict(type=int, default=1, help="random seed (default 1)")),
    ("--src-lang", dict(help="source file extension (iwslt15: en; parallel: src)")),
    ("--tgt-lang", dict(help="target file extension (iwslt15: vi; parallel: tgt)")),
    ("--train-prefix", dict(default="train", help="parallel: training files <prefix>.<lang>")),
    ("--dev-prefix", dict(default="dev", help="parallel: dev files (default dev)")),
    ("--test-prefix", dict(default="test", help="parallel: test files; 'none' for no test set")),
    ("--tokenize", dict(choices=["words", "chars"], help="words (default) or chars (lcsts)")),
    ("--lcsts-min-score", dict(type=int, help="lcsts: keep dev/test pairs with human_label >= N "
                                              "(default: all, the paper's counts)")),
    ("--vocab-size", dict(type=int, default=50_000, help="vocabulary cap, specials included")),
    ("--min-count", dict(type=int, default=1, help="drop tokens seen fewer times")),
    ("--share-vocab", dict(action=_BOOL, help="one vocabulary for both sides (lcsts default)")),
    ("--max-train-len", dict(type=int, help="drop training pairs with a longer side "
                                            "(iwslt 100 tokens, lcsts 150 characters; 0: keep all)")),
    ("--max-train-pairs", dict(type=int, help="use only the first N training pairs")),
    ("--dev-max-pairs", dict(type=int, help="score only the first N dev pairs")),
    ("--emb-dim", dict(type=int, help="word embedding size (iwslt 512, lcsts 400)")),
    ("--hidden", dict(type=int, help="LSTM size (iwslt 512, lcsts 500)")),
    ("--layers", dict(type=int, help="LSTM layers (iwslt 2, lcsts 1)")),
    ("--dropout", dict(type=float, help="dropout (iwslt 0.2, lcsts 0)")),
    ("--share-embeddings", dict(action=_BOOL, help="one word embedding for both sides")),
    ("--label-dim", dict(type=int, default=512, help="compressed label embedding size")),
    ("--batch-size", dict(type=int, default=64)),
    ("--lr", dict(type=float, default=1e-3)),
    ("--clip-norm", dict(type=float, default=5.0)),
    ("--epochs", dict(type=int, help="iwslt 25, lcsts 10")),
    ("--max-steps", dict(type=int, help="stop after N updates")),
    ("--warmup-steps", dict(type=int, default=20_000,
                            help="updates before the soft-target term starts (default 20000)")),
    ("--chunked-loss", dict(action=_BOOL, default=False,
                            help="emb: head + loss in chunks of tokens, no (B*T) x V tensor "
                                 "(same loss, far less memory for big vocabularies)")),
    ("--eval-every", dict(type=int, default=500, help="updates between dev evaluations")),
    ("--beam", dict(type=int, help="beam for the test set (iwslt 10, lcsts 1)")),
    ("--dev-beam", dict(type=int, default=1, help="beam for dev evaluations (default greedy)")),
    ("--max-len", dict(type=int, help="longest output (iwslt 100, lcsts 50)")),
    ("--length-norm", dict(type=float, default=0.0, help="rank finished beams by score/len**a")),
    ("--unk-replace", dict(action=_BOOL, default=False, help="copy the most attended source "
                                                             "token for each output <unk>")),
    ("--select", dict(choices=["bleu", "rouge1", "rouge2", "rougeL"],
                      help="dev metric for best.pt (iwslt bleu, lcsts rougeL)")),
    ("--device", dict(help="cpu or cuda (default: cuda when available)")),
]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "seq2seq", help="attention seq2seq with the compressed label embedding (IWSLT15, LCSTS)",
        description="Sequence to sequence with the compressed label embedding (Tables 3-5).",
    )
    sub = p.add_subparsers(dest="seq2seq_command", metavar="ACTION")

    t = sub.add_parser("train", help="train, keep the best-dev model, score the test set")
    t.add_argument("--task", required=True, choices=["iwslt15", "lcsts", "parallel"])
    t.add_argument("--data-dir", required=True, help="directory of the data files")
    t.add_argument("--mode", default="emb", choices=["emb", "baseline"],
                   help="emb: label embedding loss; baseline: cross-entropy only")
    t.add_argument("--out", help="run directory (default runs/seq2seq-TASK-MODE-seedN)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--threads", type=int, help="torch CPU threads")
    for flag, kwargs in _TRAIN_OPTIONS:
        t.add_argument(flag, **kwargs)
    t.set_defaults(func=_train)

    tr = sub.add_parser("translate", help="translate/summarise lines with a trained run")
    tr.add_argument("run", help="run directory")
    tr.add_argument("--input", default="-", help="input text file, one sentence a line (- stdin)")
    tr.add_argument("--output", default="-", help="output file (- stdout)")
    _decode_options(tr)
    tr.set_defaults(func=_translate)

    ev = sub.add_parser("evaluate", help="score a trained run on its dev/test set or given files")
    ev.add_argument("run", help="run directory")
    ev.add_argument("--split", default="test", choices=["dev", "test"])
    ev.add_argument("--src", help="source file (with --ref: score these instead of a split)")
    ev.add_argument("--ref", help="reference file aligned with --src")
    _decode_options(ev)
    ev.set_defaults(func=_evaluate)

    nb = sub.add_parser("neighbours", help="nearest target words in the learned label embedding")
    nb.add_argument("run", help="run directory (mode emb)")
    nb.add_argument("words", nargs="+", help="target-side words")
    nb.add_argument("-k", type=int, default=5, help="neighbours per word (default 5)")
    nb.add_argument("--json", action="store_true", help="print JSON")
    nb.set_defaults(func=_neighbours)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _decode_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--beam", type=int, help="beam size (default: the run's)")
    p.add_argument("--max-len", type=int, help="longest output (default: the run's)")
    p.add_argument("--length-norm", type=float, help="score/len**a for finished beams")
    p.add_argument("--unk-replace", action=_BOOL, default=None, help="replace <unk> from attention")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"],
                   help="best.pt (default) or checkpoint.pt")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")


def _which(args) -> str:
    from ..runs.rundir import CHECKPOINT
    from ..engine.seq2seq import BEST

    return BEST if args.checkpoint == "best" else CHECKPOINT


def _train(args) -> int:
    import torch

    from ..engine.seq2seq import TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    options = {flag.lstrip("-").replace("-", "_"): getattr(args, flag.lstrip("-").replace("-", "_"))
               for flag, _ in _TRAIN_OPTIONS}
    if options["test_prefix"] in ("none", ""):
        options["test_prefix"] = None
    out = args.out or str(Path("runs") / f"seq2seq-{args.task}-{args.mode}-seed{args.seed}")
    cfg = TrainConfig(task=args.task, data_dir=args.data_dir, out=out, mode=args.mode, **options)
    result = train(cfg, resume=args.resume)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def _read_input(path: str) -> list[str]:
    from ..data.parallel_text import read_lines

    if path == "-":
        return [line.rstrip("\r\n") for line in sys.stdin]
    return read_lines(path)


def _translate(args) -> int:
    from ..runs.atomic import atomic_write_text
    from ..engine.seq2seq import translate_lines

    lines = _read_input(args.input)
    out = translate_lines(
        args.run, lines, beam=args.beam, max_len=args.max_len, length_norm=args.length_norm,
        unk_replace=args.unk_replace, batch_size=args.batch_size, device=args.device,
        which=_which(args),
    )
    text = "".join(o + "\n" for o in out)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        atomic_write_text(args.output, text)
    return 0


def _evaluate(args) -> int:
    from ..data.parallel_text import read_parallel
    from ..engine.seq2seq import TrainConfig, decode_corpus, load_run, load_task, score

    model, _, src_vocab, tgt_vocab, config = load_run(args.run, _which(args), args.device)
    s = config["settings"]
    if bool(args.src) != bool(args.ref):
        raise ValueError("--src and --ref go together")
    if args.src:
        corpus = read_parallel(args.src, args.ref, s["tokenize"])
    else:
        corpus = load_task(TrainConfig(**s))[args.split]
        if corpus is None:
            raise ValueError(f"the run has no {args.split} set")
        if args.split == "dev":
            corpus = corpus.head(s["dev_max_pairs"])
    beam = args.beam or s["beam"]
    hyps = decode_corpus(
        model, corpus, src_vocab, tgt_vocab, beam=beam, max_len=args.max_len or s["max_len"],
        length_norm=s["length_norm"] if args.length_norm is None else args.length_norm,
        unk_replace=s["unk_replace"] if args.unk_replace is None else args.unk_replace,
        batch_size=args.batch_size, device=args.device, show_progress=True,
    )
    refs = [corpus.tgt_tokens(i) for i in range(len(corpus))]
    scores = score(s["select"], hyps, refs)
    print(json.dumps({"pairs": len(corpus), "beam": beam, **scores}, indent=2))
    return 0


def _neighbours(args) -> int:
    from ..engine.seq2seq import load_run, nearest_labels
    from ..loss import LabelEmbeddingLoss

    _, criterion, _, tgt_vocab, _ = load_run(args.run)
    if not isinstance(criterion, LabelEmbeddingLoss):
        raise ValueError(f"{args.run} was trained in baseline mode: it has no label embedding")
    near = nearest_labels(criterion.embedding, tgt_vocab, args.words, args.k)
    if args.json:
        print(json.dumps(near, ensure_ascii=False, indent=2))
    else:
        for word, pairs in near.items():
            print(f"{word}\t" + ", ".join(f"{w} ({p:.3f})" for w, p in pairs))
    return 0
