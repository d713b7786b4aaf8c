"""``labelemb data``: download the paper's image datasets, show where they are, or prepare a
text dataset from installed Debian packages (fortunes, bible-en-es, bible-lm)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.registry import DATASETS, download_dataset, load_dataset, search_dirs

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "data", help="download or inspect image datasets (MNIST, Fashion-MNIST, CIFAR), "
        "or prepare a text dataset (fortunes, bible-en-es, bible-lm)",
        description="Download the image datasets from their official sources with checksum "
        "verification, show where a dataset is found and its splits, or prepare a text "
        "dataset from installed Debian packages.",
    )
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    d = sub.add_parser("download", help="fetch a dataset and verify its checksums")
    d.add_argument("name", choices=sorted(DATASETS), metavar="NAME",
                   help=f"the dataset: one of {', '.join(sorted(DATASETS))}")
    d.add_argument("--dir", default=None,
                   help="where to put it (default: $LABELEMB_DATA/<name> or "
                   "~/.cache/labelemb/<name>)")
    d.add_argument("--base-url", "--url", dest="base_url", default=None,
                   help="fetch the files from this base URL instead of the official mirrors")
    d.set_defaults(func=_download)
    i = sub.add_parser("info", help="where a dataset is found, its splits and class names")
    i.add_argument("name", help=f"one of {sorted(DATASETS)}, a folder of class folders or an .npz")
    i.add_argument("--data-dir", default=None, metavar="DIR",
                   help="look here first, for the files or a <name>/ folder of them (default: "
                   "$LABELEMB_DATA, ~/.cache/labelemb/<name>, /usr/share/datasets/<name>)")
    i.set_defaults(func=_info)
    _register_prepare(sub)


#: what each ``data prepare NAME`` writes and from which package, for its help
_PREPARED = {
    "fortunes": "Debian's fortune-cookie texts, the category as the label (apt-get install "
    "fortunes); {train,dev,test}.jsonl and labels.json, each category split 80/10/10, "
    "stratified and seeded",
    "bible-en-es": "the King James Version and the Reina-Valera 1909, verse-aligned (apt-get "
    "install sword-text-kjv sword-text-sparv), lower-cased, words and punctuation split by "
    "spaces, for `seq2seq train --task parallel`; {train,dev,test}.{en,es}",
    "bible-lm": "the King James Version as printed, one verse a line, for language models "
    "(apt-get install sword-text-kjv); {train,dev,test}.txt",
}


def _register_prepare(sub: argparse._SubParsersAction) -> None:
    from ..data import bible, fortunes

    pr = sub.add_parser(
        "prepare", help="write a text dataset from installed Debian packages",
        description=" ".join(f"{name}: {what}." for name, what in _PREPARED.items())
        + " The bible sets draw --dev-size and --test-size verses by a seeded shuffle (from "
        "every book), the rest is train. The set is written into a hidden temporary folder "
        "beside --out and renamed into place when complete.")
    pr.add_argument("name", choices=list(_PREPARED), metavar="NAME",
                    help=f"the set: one of {', '.join(_PREPARED)}")
    pr.add_argument("--out", required=True, metavar="DIR",
                    help="the folder to write; it must be new or empty")
    pr.add_argument("--overwrite", action="store_true",
                    help="replace --out when it holds a set prepared before (only files that "
                    "`data prepare` writes: a folder with other files is never replaced)")
    pr.add_argument("--source", default=None, metavar="DIR",
                    help="where to read from (default: where the Debian packages put it): "
                    f"fortunes: the folder of fortune files ({fortunes.FORTUNES_DIR}); bible "
                    "sets: a SWORD library, the folder holding mods.d/ ($SWORD_PATH, ~/.sword, "
                    "/usr/share/sword)")
    pr.add_argument("--dev-size", type=int, default=None,
                    help=f"bible sets: verses in dev (default: {bible.DEV_SIZE})")
    pr.add_argument("--test-size", type=int, default=None,
                    help=f"bible sets: verses in test (default: {bible.TEST_SIZE})")
    pr.add_argument("--seed", type=int, default=None,
                    help=f"seed of the split (default: {fortunes.SEED} for fortunes, "
                    f"{bible.SEED} for the bible sets)")
    pr.set_defaults(func=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    given = {k: v for k, v in (("seed", args.seed), ("dev_size", args.dev_size),
                               ("test_size", args.test_size)) if v is not None}
    if args.name != "fortunes":
        from ..data.bible import prepare_bible, prepare_bible_lm

        prepare = prepare_bible if args.name == "bible-en-es" else prepare_bible_lm
        roots = [Path(args.source)] if args.source else None
        counts = prepare(args.out, roots=roots, overwrite=args.overwrite, **given)
        print(f"{args.name} in {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        return 0
    from ..data.fortunes import FORTUNES_DIR, prepare_fortunes

    sizes = [f for f, k in (("--dev-size", "dev_size"), ("--test-size", "test_size")) if k in given]
    if sizes:
        raise ValueError(f"{' and '.join(sizes)}: fortunes splits each category 80/10/10; the "
                         "sizes are for the bible sets")
    info = prepare_fortunes(args.out, args.source or FORTUNES_DIR, overwrite=args.overwrite,
                            **given)
    sizes_text = ", ".join(f"{s} {sum(c.values())}" for s, c in info["counts"].items())
    print(f"fortunes: {len(info['names'])} categories, {sizes_text} -> {args.out}")
    for name, why in info["dropped"].items():
        print(f"  dropped {name}: {why}")
    return 0


def _download(args: argparse.Namespace) -> int:
    # A DownloadError is reported by the CLI's error boundary (one line, exit 2).
    path = download_dataset(args.name, args.dir, args.base_url)
    print(f"{args.name} ready in {path}")
    return 0


def _info(args: argparse.Namespace) -> int:
    if args.name in DATASETS:
        print("searched, in order: " + ", ".join(str(d) for d in search_dirs(args.name, args.data_dir)))
    ds = load_dataset(args.name, args.data_dir)
    print(f"{ds.name}: from {ds.source}")
    print(f"  images {ds.in_channels}x{ds.image_size}x{ds.image_size}, {ds.num_classes} classes")
    if ds.dev_y is not None:
        print(f"  train {len(ds.train_y)}, dev {len(ds.dev_y)}, test {len(ds.test_y)}")
    else:  # what `labelemb train` holds out by default (docs/TRAINING.md: which split is which)
        held = ds.hold_out_dev()
        how = "stratified by class" if ds.stratify else "its last images"
        print(f"  train {len(held.train_y)}, dev {len(held.dev_y)} (held out of the "
              f"{len(ds.train_y)} training images, {how}; --held-out to change), "
              f"test {len(ds.test_y)}")
    print("  classes: " + ", ".join(ds.class_names))
    return 0

