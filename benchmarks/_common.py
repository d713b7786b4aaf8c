"""Shared helpers of the benchmark scripts: interleaved timing, peak memory, a machine line.

Not a public API; each script in this folder imports it by path (they run as scripts).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Sequence

import torch


def machine() -> str:
    """One line naming the machine and software the figures were taken on."""
    return (f"{os.cpu_count()}-core CPU ({platform.machine()}), torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, python {platform.python_version()}")


def interleaved(steps: dict[str, Callable[[], None]], rounds: int, steps_per_round: int,
                warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each step function, measured in alternating rounds.

    Each round runs ``steps_per_round`` calls of every function; the order of the functions
    reverses every round (A B, B A, ...), so a slow spell on a shared machine hits both sides
    alike. ``warmup`` untimed calls of each function come first.
    """
    names = list(steps)
    for name in names:
        for _ in range(warmup):
            steps[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            fn = steps[name]
            for _ in range(steps_per_round):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return times


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc), in bytes."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Highest resident set size this process has had (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_worker(script: str, args: Sequence[str]) -> dict:
    """Run ``python script *args`` in a fresh process and parse the JSON on its last line."""
    out = subprocess.run([sys.executable, script, *args], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


MIB = 1024 * 1024


def profiled_phases(run: Callable[[], object]) -> tuple[float, dict[str, float]]:
    """``run()`` once under torch.profiler without input shapes (recording them slowed the
    chunked loss's many small operators most): its wall time and, in seconds, the CPU time of
    each range labelemb names (the chunked loss's ``labelemb.chunked.*`` phases)."""
    from torch.profiler import profile

    with profile() as prof:
        t0 = time.perf_counter()
        run()
        seconds = time.perf_counter() - t0
    return seconds, {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages()
                     if e.key.startswith("labelemb.")}


def format_phases(seconds: float, phases: dict[str, float]) -> str:
    """``a profiled step: S s; phases forward F s, terms T s, ...`` (the phases if any)."""
    named = ", ".join(f"{k.rsplit('.', 1)[1]} {t:.3f} s" for k, t in phases.items())
    return f"a profiled step: {seconds:.3f} s" + (f"; phases {named}" if named else "")


def write_json(path: str | None, args: object, summary: dict, runs: object) -> None:
    """``--json PATH``: the machine, the arguments, the summary and every run, for the docs."""
    if path:
        with open(path, "w") as f:
            json.dump({"machine": machine(), "args": vars(args), "summary": summary,
                       "runs": runs}, f, indent=2)
