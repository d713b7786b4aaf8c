"""Shared test settings: the suite runs in parallel when pytest-xdist is installed.

Most of the suite's time is real training in child processes (the CLI, torchrun), so two
workers on CI's two cores halve its wall time. `-n 0` (or `-p no:xdist`) runs it serially.
"""
import os

import pytest
import torch


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which turns -n into workers
def pytest_cmdline_main(config):
    """One worker per core unless the command line chose (-n); work-stealing evens out the slow tests."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # a worker (or a process a test started from one) never starts workers itself
    if not config.pluginmanager.hasplugin("xdist") or config.option.numprocesses is not None:
        return
    if config.option.collectonly or config.option.usepdb:
        return
    config.option.numprocesses = min(len(os.sched_getaffinity(0)), 4)
    config.option.dist = "worksteal"


if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each worker and the processes it starts keep to one thread, so that two workers do not
    # oversubscribe the cores (torch's default is one thread per core).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
