"""Shared fixtures: ``backend`` runs a loss test on both implementations of the loss."""

from __future__ import annotations

import shutil

import pytest

from labelemb import native


def _native_or_skip() -> None:
    if native.available():
        return
    # Without a C compiler the compiled loss cannot exist: that is a skip. With one, a failed
    # build is a bug, and the test fails.
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip(f"no C compiler: {native.status()}")
    pytest.fail(f"the compiled loss did not build: {native.status()}")


@pytest.fixture(params=["native", "autograd"])
def backend(request) -> str:
    """``"native"`` (the compiled loss) and ``"autograd"`` (the term-by-term definition)."""
    if request.param == "native":
        _native_or_skip()
    return request.param
