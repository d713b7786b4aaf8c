"""``labelemb seq2seq train|translate|evaluate|neighbours``: the paper's Tables 3-5."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Sequence

from torch import nn

from ..data.vocab import SPECIALS, Vocab
from ..runs.device import pick_device
from ..engine.seq2seq import TrainConfig
from ..report.nearest import TOP_K
from ..report.nearest import nearest_labels as _nearest
from ..runs.settings import check_ranges, setting
from .options import add_config_arguments, add_flag, config_from_args

__all__ = ["register", "nearest_words", "DecodeOptions", "TranslateOptions", "EvaluateOptions"]

_THE_RUNS = "the run's setting"


@dataclasses.dataclass
class DecodeOptions:
    """The decoding flags of translate and evaluate, declared once; ``None``: the run's own."""

    beam: int | None = setting(None, "beam size", default_text=_THE_RUNS, at_least=1)
    max_len: int | None = setting(None, "longest output", default_text=_THE_RUNS, at_least=1)
    length_norm: float | None = setting(None, "rank finished beams by score/len**a",
                                        default_text=_THE_RUNS, at_least=0)
    min_len: int | None = setting(None, "tokens every output has before it may end",
                                  default_text=_THE_RUNS, at_least=0)
    unk_replace: bool | None = setting(None, "replace <unk> from attention",
                                       default_text=_THE_RUNS)
    checkpoint: str = setting("best", "best.pt, or checkpoint.pt (the last)",
                              choices=("best", "last"))
    batch_size: int = setting(64, "sentences decoded together", at_least=1)
    device: str | None = setting(None, "cpu, cuda or cuda:N", default_text="cuda if available")
    threads: int | None = setting(None, "CPU threads for torch; 1 is much faster on a busy "
                                  "machine", default_text="torch's choice", at_least=1)


@dataclasses.dataclass
class TranslateOptions(DecodeOptions):
    input: str = setting("-", "input text file, one sentence a line; - is stdin")
    output: str = setting("-", "output file; - is stdout")


@dataclasses.dataclass
class EvaluateOptions(DecodeOptions):
    split: str = setting("test", "the run's split to score", choices=("dev", "test"))
    src: str | None = setting(None, "source file (with --ref: score these instead of a split)")
    ref: str | None = setting(None, "reference file aligned with --src")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "seq2seq", help="attention seq2seq with the compressed label embedding (IWSLT15, LCSTS)",
        description="Sequence to sequence with the compressed label embedding (Tables 3-5).",
    )
    sub = p.add_subparsers(dest="seq2seq_command", metavar="ACTION")

    # Flags generated from the engine's TrainConfig: each setting and default declared once.
    t = sub.add_parser("train", help="train every --modes x --seeds run into OUT/<mode>/"
                       "seed-<k>, keep each best-dev model, score the test set",
                       allow_abbrev=False)
    add_config_arguments(t, TrainConfig)
    t.set_defaults(func=_train)

    tr = sub.add_parser("translate", help="translate/summarise lines with a trained run")
    tr.add_argument("run", help="run directory")
    add_config_arguments(tr, TranslateOptions)
    tr.set_defaults(func=_translate)

    ev = sub.add_parser("evaluate", help="score a trained run on its dev/test set or given files")
    ev.add_argument("run", help="run directory")
    add_config_arguments(ev, EvaluateOptions)
    ev.set_defaults(func=_evaluate)

    nb = sub.add_parser("neighbours", help="nearest target words in the learned label embedding")
    nb.add_argument("run", help="run directory (mode emb)")
    nb.add_argument("words", nargs="+", help="target-side words")
    add_flag(nb, "-k", type=int, default=TOP_K, help="neighbours per word")
    nb.add_argument("--json", action="store_true", help="print JSON")
    nb.set_defaults(func=_neighbours)


def _options(cls: type, args: argparse.Namespace):
    """The parsed ``cls`` flags, checked, and the device: both before any file is read (an
    unknown --device would otherwise fail inside torch.load)."""
    opts = config_from_args(cls, args)
    check_ranges(opts)
    if opts.threads is not None:
        import torch

        torch.set_num_threads(opts.threads)
    return opts, pick_device(opts.device)


def _which(opts: DecodeOptions) -> str:
    from ..runs.rundir import BEST, CHECKPOINT

    return BEST if opts.checkpoint == "best" else CHECKPOINT


def _train(args) -> int:
    from ..engine.seq2seq import run_training
    from ..runs.ranks import is_main_process
    from .train import write_summary

    run_dirs = run_training(args)
    if is_main_process():  # rank 0 alone under torchrun
        print(write_summary(run_dirs), flush=True)
    return 0


def _read_input(path: str) -> list[str]:

    if path == "-":
        return [line.rstrip("\r\n") for line in sys.stdin]
    if not Path(path).exists():
        raise FileNotFoundError(f"--input: no such file: {path}")
    if Path(path).is_dir():
        raise IsADirectoryError(f"--input {path} is a folder; give a text file")
    with open(path, encoding="utf-8") as f:  # also a device or pipe (/dev/null, <(...))
        return [line.rstrip("\r\n") for line in f]


def _decoding(opts: DecodeOptions) -> dict:
    """The decoding flags given, by name (``None``: the run's own)."""
    from ..engine.decoding import DECODING

    return {k: getattr(opts, k) for k in DECODING}


def _translate(args) -> int:
    from ..atomic import atomic_write_text
    from ..engine.decoding import translate_lines

    opts, device = _options(TranslateOptions, args)
    lines = _read_input(opts.input)
    out = translate_lines(args.run, lines, batch_size=opts.batch_size, device=device,
                          which=_which(opts), **_decoding(opts))
    text = "".join(o + "\n" for o in out)
    if opts.output == "-":
        sys.stdout.write(text)
    else:
        atomic_write_text(opts.output, text)
    return 0


def _evaluate(args) -> int:
    from ..data.parallel_text import read_parallel
    from ..engine.decoding import decode_corpus, decoding_settings, load_run, score
    from ..data.seq2seq_data import load_task

    opts, device = _options(EvaluateOptions, args)
    if bool(opts.src) != bool(opts.ref):
        raise ValueError("--src and --ref go together")
    model, _, src_vocab, tgt_vocab, config = load_run(args.run, _which(opts), device)
    s = config["settings"]
    if opts.src:
        corpus = read_parallel(opts.src, opts.ref, s["tokenize"])
    else:
        corpus = load_task(TrainConfig(**{k: v for k, v in s.items()
                                          if k not in ("mode", "seed")}))[opts.split]
        if corpus is None:
            raise ValueError(f"the run has no {opts.split} set")
        if opts.split == "dev":
            corpus = corpus.head(s["dev_max_pairs"])
    decoding = decoding_settings(s, **_decoding(opts))
    hyps = decode_corpus(model, corpus, src_vocab, tgt_vocab, batch_size=opts.batch_size,
                         device=device, show_progress=True, **decoding)
    refs = [corpus.tgt_tokens(i) for i in range(len(corpus))]
    scores = score(s["select"], hyps, refs)
    print(json.dumps({"pairs": len(corpus), "beam": decoding["beam"], **scores}, indent=2))
    return 0


def _neighbours(args) -> int:
    from ..engine.decoding import load_run
    from ..loss import LabelEmbeddingLoss

    _, criterion, _, tgt_vocab, _ = load_run(args.run)
    if not isinstance(criterion, LabelEmbeddingLoss):
        raise ValueError(f"{args.run} was trained in baseline mode: it has no label embedding")
    near = nearest_words(criterion.embedding, tgt_vocab, args.words, args.k)
    if args.json:
        print(json.dumps(near, ensure_ascii=False, indent=2))
    else:
        for word, pairs in near.items():
            print(f"{word}\t" + ", ".join(f"{w} ({p:.3f})" for w, p in pairs))
    return 0


def nearest_words(
    embedding: nn.Module, vocab: Vocab, words: Sequence[str], k: int = TOP_K
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
