"""Shared test settings: the suite runs in parallel when pytest-xdist is installed.

Most of the suite's time is real training in child processes (the CLI, torchrun), so two
workers on CI's two cores halve its wall time. `-n 0` (or `-p no:xdist`) runs it serially;
`-n N`, `--dist` or `--tx` on the command line are left as given.
"""
import os

import pytest
import torch


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which turns -n into workers
def pytest_cmdline_main(config):
    """One worker per core (at most 4) unless the command line chose; work-stealing evens out
    the slow tests."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # a worker (or a process a test started from one) never starts workers itself
    if not config.pluginmanager.hasplugin("xdist") or (os.cpu_count() or 1) < 2:
        return
    option = config.option
    if option.numprocesses is not None or option.tx or option.dist != "no":
        return
    if option.collectonly or option.usepdb or option.trace or option.showfixtures:
        return
    option.numprocesses, option.maxprocesses = "auto", 4  # xdist resolves "auto" to the cores
    option.dist = "worksteal"


if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each worker and the processes it starts keep to one thread, so that two workers do not
    # oversubscribe the cores (torch's default is one thread per core).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
