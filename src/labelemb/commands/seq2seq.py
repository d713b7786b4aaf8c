"""``labelemb seq2seq train|translate|evaluate|neighbours``: the paper's Tables 3-5."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from torch import nn

from ..data.vocab import SPECIALS, Vocab
from ..engine.seq2seq import TrainConfig
from ..report.nearest import nearest_labels as _nearest
from .options import add_config_arguments, config_from_args

__all__ = ["register", "nearest_labels"]

_BOOL = argparse.BooleanOptionalAction


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "seq2seq", help="attention seq2seq with the compressed label embedding (IWSLT15, LCSTS)",
        description="Sequence to sequence with the compressed label embedding (Tables 3-5).",
    )
    sub = p.add_subparsers(dest="seq2seq_command", metavar="ACTION")

    # Flags generated from the engine's TrainConfig: each setting and default declared once.
    t = sub.add_parser("train", help="train, keep the best-dev model, score the test set",
                       allow_abbrev=False)
    add_config_arguments(t, TrainConfig)
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
    from ..engine.seq2seq import train

    result = train(config_from_args(TrainConfig, args))
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def _read_input(path: str) -> list[str]:
    from ..data.parallel_text import read_lines

    if path == "-":
        return [line.rstrip("\r\n") for line in sys.stdin]
    return read_lines(path)


def _translate(args) -> int:
    from ..atomic import atomic_write_text
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
    from ..engine.seq2seq import load_run
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


def nearest_labels(
    embedding: nn.Module, vocab: Vocab, words: Sequence[str], k: int = 5
) -> dict[str, list[tuple[str, float]]]:
    """The ``k`` labels each word's learned soft target puts most weight on (paper Table 5).

    :func:`labelemb.report.nearest.nearest_labels` over the asked words' rows only (never
    ``V x V``), leaving out the word itself and the special symbols.
    """
    unknown = [w for w in words if w not in vocab.stoi]
    if unknown:
        raise ValueError(f"not in the target vocabulary: {unknown}")
    ids = [vocab.stoi[w] for w in words]
    near = _nearest(embedding, ids, k=k, names=vocab.itos, exclude=range(len(SPECIALS)))
    return {w: [(n.name, n.probability) for n in near[i]] for w, i in zip(words, ids)}
