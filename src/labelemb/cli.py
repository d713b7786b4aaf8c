"""``labelemb`` command line: parse, call, print. Each sub-command lives in its own module
and exposes ``register(subparsers)``, which adds its parser and sets ``func``."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# Modules that register sub-commands, in the order `labelemb --help` lists them.
COMMAND_MODULES: tuple[str, ...] = ("labelemb.commands.demo", "labelemb.commands.report", "labelemb.commands.inspect", "labelemb.commands.train", "labelemb.commands.data", "labelemb.commands.seq2seq")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labelemb",
        description="Label Embedding Network: train, reproduce the paper, report, inspect.",
    )
    parser.add_argument("--version", action="version", version=f"labelemb {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as err:
        # Bad input is the user's to fix: say what, without a traceback.
        print(f"labelemb: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
