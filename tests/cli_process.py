"""Running ``python -m labelemb`` as a user would, in its own process, and the command line's
error contract: input the user can fix is one stderr line ``labelemb: error: ...`` that names
the flag or file, exit 2, and no traceback."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
#: a bound no labelemb command needs here (imports take ~0.7 GB of address space), far below
#: the 40 GB a 100,000-class full embedding would take
ADDRESS_SPACE_LIMIT = 4 << 30


def env() -> dict[str, str]:
    """This checkout's labelemb for the child, whatever is installed; output unbuffered."""
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def labelemb(*args: str | Path, cwd: Path | None = None, limit_memory: bool = False
             ) -> subprocess.CompletedProcess:
    """Run ``python -m labelemb ARGS`` in ``cwd``; ``limit_memory`` caps its address space."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))

    return subprocess.run([sys.executable, "-m", "labelemb", *map(str, args)], cwd=cwd,
                          env=env(), capture_output=True, text=True, timeout=600,
                          preexec_fn=cap if limit_memory else None)


def assert_user_error(done: subprocess.CompletedProcess, *named: str, pattern: str = "",
                      alone: bool = True) -> str:
    """Exit 2, no traceback, one line ``labelemb: error: ...`` holding each of ``named`` and
    matching the regular expression ``pattern``; returns it. ``alone``: stderr is that line
    only (else log lines from work done before the error may come first)."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    errors = [line for line in lines if line.startswith("labelemb: error: ")]
    assert len(errors) == 1, done.stderr
    if alone:
        assert lines == errors, done.stderr
    for name in named:
        assert name in errors[0], errors[0]
    assert re.search(pattern, errors[0]), errors[0]
    return errors[0]
