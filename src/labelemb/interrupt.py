"""Ctrl-C at the very start of ``python -m labelemb``, before the command line's error
boundary (:func:`labelemb.cli.main`) is in place.

``python -m labelemb`` imports this package, then looks for and runs ``labelemb.__main__``,
and only then enters ``main()``, whose ``try`` turns ``KeyboardInterrupt`` into one line and
exit 130. An interrupt in between would print the traceback of whatever Python was doing
(runpy looking for ``__main__``). So while the package is imported as that program, SIGINT
leaves at once with the same line: nothing has been done yet, so nothing needs cleaning up.
``main()`` hands SIGINT back to Python (``KeyboardInterrupt``) as its first step, so that the
``finally`` clauses and atomic writes of a command run on every later interrupt.

Only the standard library is imported here: it runs before torch is.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

__all__ = ["EXIT_INTERRUPTED", "INTERRUPTED", "guard_program_start", "release_start_guard"]

#: Exit status after Ctrl-C: 128 + SIGINT, as a shell reports a process it interrupted.
EXIT_INTERRUPTED = 130
#: The line printed on Ctrl-C (commands that can continue a run add how).
INTERRUPTED = "labelemb: interrupted"


def _exit_now(signum: int, frame: FrameType | None) -> None:
    os.write(2, (INTERRUPTED + "\n").encode())
    os._exit(EXIT_INTERRUPTED)


def _run_as_program(package: str) -> bool:
    """Whether ``package`` is being imported by ``python -m package`` (Python sets
    ``sys.argv[0]`` to ``"-m"`` while it locates the module to run)."""
    if sys.argv[:1] != ["-m"]:
        return False
    args = sys.orig_argv[1:]
    for flag, value in zip(args, args[1:]):
        if flag.startswith("-") and not flag.startswith("--") and flag.endswith("m"):
            return value == package
    return False


def guard_program_start(package: str) -> None:
    """Under ``python -m package``, make SIGINT print :data:`INTERRUPTED` and exit 130 at once.
    A SIGINT the caller ignores (``nohup``, ``cmd &``) stays ignored."""
    if _run_as_program(package) and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _exit_now)


def release_start_guard() -> None:
    """SIGINT raises ``KeyboardInterrupt`` again (a no-op unless the guard is on)."""
    if signal.getsignal(signal.SIGINT) is _exit_now:
        signal.signal(signal.SIGINT, signal.default_int_handler)
