"""``labelemb`` command line: parse, call, print. Each sub-command lives in its own module
and exposes ``register(subparsers)``, which adds its parser and sets ``func``.

:func:`main` is the one error boundary: input the user can fix prints one line
``labelemb: error: ...`` and exits 2, Ctrl-C prints one line and exits 130, and anything else
is a bug in labelemb and keeps its traceback. Library code raises ordinary exceptions
(``ValueError`` naming the flag or file, ``OSError`` from the file system); it never prints or
exits on its own.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
import typing

from . import __version__
from .interrupt import EXIT_INTERRUPTED, INTERRUPTED, release_start_guard

# Modules that register sub-commands, in the order `labelemb --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "labelemb.commands.demo", "labelemb.commands.report", "labelemb.commands.inspect",
    "labelemb.commands.train", "labelemb.commands.data", "labelemb.commands.seq2seq",
)


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors keep the command line's contract: one line
    ``labelemb: error: <command>: <what>; see labelemb <command> --help``, exit 2 (argparse
    prints the whole usage block). ``add_subparsers`` makes every sub-command parser of this
    class too."""

    def error(self, message: str) -> typing.NoReturn:
        # "argument --seeds: --seeds: cannot read 'x'": our parsers' messages name the flag.
        flags, _, said = message.partition(": ")
        if flags.startswith("argument ") and said.startswith(
                tuple(flags.removeprefix("argument ").split("/"))):
            message = said
        command = self.prog.removeprefix("labelemb").strip()
        where = f"{command}: " if command else ""
        self.exit(EXIT_USER_ERROR, error_line(ValueError(
            f"{where}{message}; see {self.prog} --help")) + "\n")

    def error_no_command(self) -> typing.NoReturn:
        """The one line for a command given without its sub-command."""
        names = next(a.choices for a in self._actions
                     if isinstance(a, argparse._SubParsersAction))
        self.error(f"choose one of {', '.join(names)}")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """Unknown flags are reported by the sub-command they were given to."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self._chosen(parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _chosen(self, parsed: argparse.Namespace) -> "Parser":
        """The deepest sub-command parser that ``parsed`` went through."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                name = getattr(parsed, action.dest, None)
                if name in action.choices:
                    return action.choices[name]._chosen(parsed)
        return self


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="labelemb",
        description="Label Embedding Network: train, reproduce the paper, report, inspect.",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the epilog's lines
    )
    parser.add_argument("--version", action="version", version=f"labelemb {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    parser.epilog = _data_epilog(parser)
    return parser


def _data_epilog(parser: argparse.ArgumentParser) -> str:
    """What the commands work on, read off their own flags' choices (declared once there)."""
    images = ", ".join(_choices(parser, "data", "download", "name"))
    texts = ", ".join(_choices(parser, "data", "prepare", "name"))
    tasks = " | ".join(_choices(parser, "seq2seq", "train", "task"))
    return (
        "what the commands work on:\n"
        f"  images   {images} (labelemb data download NAME),\n"
        "           or your own: train --dataset DIR (a folder of class folders, or an .npz)\n"
        f"  text     {texts} (labelemb data prepare NAME --out DIR):\n"
        "           fortunes to classify with labelemb.hf (docs/TRANSFORMERS.md),\n"
        "           bible-en-es to translate with seq2seq --task parallel\n"
        f"  seq2seq  seq2seq train --task {tasks}; parallel is any parallel\n"
        "           text, e.g. --task parallel --data-dir DIR --src-lang en --tgt-lang es\n"
        "\n'labelemb COMMAND --help' tells more."
    )


def _choices(parser: argparse.ArgumentParser, *path: str) -> list[str]:
    """The choices of the argument whose ``dest`` is ``path[-1]``, in the sub-command
    ``path[:-1]`` (``"data", "prepare", "name"``)."""
    for action in parser._actions:
        if path[:-1] and isinstance(action, argparse._SubParsersAction):
            if path[0] in action.choices:
                return _choices(action.choices[path[0]], *path[1:])
        elif not path[:-1] and action.dest == path[-1] and action.choices is not None:
            return [str(c) for c in action.choices]
    raise LookupError(f"no argument {' '.join(path)} with choices")  # a bug: the help is stale


#: Exit status for input the user can fix (argparse uses 2 for a bad flag too).
EXIT_USER_ERROR = 2

#: OSErrors about a path the user gave, with what to do about each.
_PATH_ERROR_HINTS: dict[type[OSError], str] = {
    FileNotFoundError: "check the path",
    NotADirectoryError: "a file stands where a directory is needed; choose another path",
    IsADirectoryError: "a directory stands where a file is needed; choose another path",
    PermissionError: "check its permissions or choose another path",
    FileExistsError: "remove it or choose another path",
}
#: errno values of OSErrors that are the machine's state, not a bug: a full or read-only disk.
_USER_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT}


def is_user_error(err: Exception) -> bool:
    """Whether ``err`` means bad input. ``TypeError``, ``RuntimeError``, ``KeyError`` do not:
    through the command line those come from labelemb's own code (an unknown ``--device``,
    torch's RuntimeError, is turned into a ValueError where the flag is parsed)."""
    from safetensors import SafetensorError  # a damaged .safetensors file the user passed

    from .data.download import DownloadError  # the network or a mirror failed, or a checksum

    if isinstance(err, OSError):
        return isinstance(err, tuple(_PATH_ERROR_HINTS)) or err.errno in _USER_ERRNOS
    return isinstance(err, (ValueError, SafetensorError, DownloadError))


def error_line(err: BaseException) -> str:
    """One line for a user error: what went wrong, on which file or flag, and what to do."""
    if isinstance(err, OSError) and err.filename is not None:
        # The OS's own text ("[Errno 21] Is a directory: 'x'") names the file but not the fix.
        hint = next((h for t, h in _PATH_ERROR_HINTS.items() if isinstance(err, t)),
                    "check the disk (full or read-only?) or choose another path")
        # A failed rename (an atomic write's temp file onto the target) names the target
        # second: that is the path the user chose.
        path = err.filename2 if err.filename2 is not None else err.filename
        message = f"{path}: {err.strerror}; {hint}"
    elif isinstance(err, OSError) and err.strerror:
        message = err.strerror  # OSError(errno, text) from labelemb: the text, no "[Errno N]"
    else:
        message = str(err) or type(err).__name__
    # One line whatever the message holds (some wrap third-party multi-line text).
    return "labelemb: error: " + " ".join(line.strip() for line in message.splitlines()
                                          if line.strip())


def _interrupted_line(args: argparse.Namespace | None) -> str:
    """The Ctrl-C line; commands that can continue a run (they have --resume) say how."""
    if args is not None and hasattr(args, "resume"):
        return f"{INTERRUPTED}; run the same command with --resume to continue"
    return INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """Run ``labelemb ARGV``; returns the exit status (0, 2 for a user error, 130 on Ctrl-C)."""
    args: argparse.Namespace | None = None
    try:
        release_start_guard()  # from here a Ctrl-C is a KeyboardInterrupt, caught below
        parser = build_parser()  # imports every command, torch with them
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:  # `labelemb`, `labelemb seq2seq`: no action
            parser._chosen(args).error_no_command()
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(_interrupted_line(args), file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Exception as err:
        if not is_user_error(err):
            raise  # a bug in labelemb: the traceback is what its report needs
        print(error_line(err), file=sys.stderr, flush=True)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
