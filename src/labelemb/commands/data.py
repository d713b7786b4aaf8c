"""``labelemb data``: download the paper's image datasets, show where they are, or prepare a
text dataset from installed Debian packages (fortunes, bible-en-es)."""

from __future__ import annotations

import argparse

from ..data.registry import DATASETS, download_dataset, load_dataset, search_dirs

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "data", help="download or inspect image datasets (MNIST, Fashion-MNIST, CIFAR), "
        "or prepare a text dataset (fortunes)",
        description="Download the image datasets from their official sources with checksum "
        "verification, show where a dataset is found and its splits, or prepare a text "
        "classification set from an installed Debian package.",
    )
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    d = sub.add_parser("download", help="fetch a dataset and verify its checksums")
    d.add_argument("name", choices=sorted(DATASETS))
    d.add_argument("--dir", default=None,
                   help="where to put it (default: $LABELEMB_DATA/<name> or "
                   "~/.cache/labelemb/<name>)")
    d.add_argument("--base-url", "--url", dest="base_url", default=None,
                   help="fetch the files from this base URL instead of the official mirrors")
    d.set_defaults(func=_download)
    i = sub.add_parser("info", help="where a dataset is found, its splits and class names")
    i.add_argument("name", help=f"one of {sorted(DATASETS)}, a folder of class folders or an .npz")
    i.add_argument("--data-dir", default=None)
    i.set_defaults(func=_info)
    _register_prepare(sub)


def _register_prepare(sub: argparse._SubParsersAction) -> None:
    pr = sub.add_parser(
        "prepare", help="write a text dataset from installed Debian packages",
        description="fortunes: Debian's fortune-cookie texts, the category as the label "
        "(apt-get install fortunes); writes {train,dev,test}.jsonl and labels.json. "
        "bible-en-es: the King James Version and the Reina-Valera 1909, verse-aligned, from "
        "Debian's SWORD modules (apt-get install sword-text-kjv sword-text-sparv), lower-cased, "
        "words and punctuation split by spaces, for `seq2seq train --task parallel`; dev and "
        "test are verses drawn by a seeded shuffle, the rest is train.")
    pr.add_argument("name", choices=["fortunes", "bible-en-es"])
    pr.add_argument("--out", required=True, metavar="DIR", help="the folder to write into")
    pr.add_argument("--source", default=None, metavar="DIR",
                    help="fortunes: the fortune files (default: where the Debian package puts them)")
    pr.add_argument("--dev-size", type=int, default=1000,
                    help="bible-en-es: verses in dev (default: %(default)s)")
    pr.add_argument("--test-size", type=int, default=1000,
                    help="bible-en-es: verses in test (default: %(default)s)")
    pr.add_argument("--seed", type=int, default=None,
                    help="seed of the split (default: 0 for fortunes, 1 for bible-en-es)")
    pr.set_defaults(func=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    if args.name == "bible-en-es":
        from ..data.bible import prepare_bible

        counts = prepare_bible(args.out, args.dev_size, args.test_size,
                               1 if args.seed is None else args.seed)
        print(f"{args.name} in {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        return 0
    from ..data.fortunes import FORTUNES_DIR, prepare_fortunes

    info = prepare_fortunes(args.out, args.source or FORTUNES_DIR,
                            seed=0 if args.seed is None else args.seed)
    sizes = ", ".join(f"{s} {sum(c.values())}" for s, c in info["counts"].items())
    print(f"fortunes: {len(info['names'])} categories, {sizes} -> {args.out}")
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
    dev = 0 if ds.dev_y is None else len(ds.dev_y)
    print(f"{ds.name}: from {ds.source}")
    print(f"  images {ds.in_channels}x{ds.image_size}x{ds.image_size}, {ds.num_classes} classes")
    print(f"  train {len(ds.train_y)}, dev {dev}, test {len(ds.test_y)}")
    print("  classes: " + ", ".join(ds.class_names))
    return 0

