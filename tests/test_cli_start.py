"""The first second of every command, in real ``python -m labelemb`` processes: Ctrl-C there is
one line and exit 130 (it was a 13-53-line traceback from the imports), ``import labelemb``
imports no torch (which is what lets the boundary come first), and the top-level help says
what the commands work on."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from cli_process import env, labelemb

# (the import after which SIGINT is sent, the command). ``python -X importtime`` prints a line
# on stderr as each import finishes: a real SIGINT at a known point of the start, not after a
# sleep that a loaded machine stretches. Python's own start-up (``site``, ``runpy``) comes
# before any labelemb code and is out of its reach; these points are all after it.
EARLY = [
    ("labelemb", ["report", "runs"]),  # the package is in: runpy is looking for __main__
    ("labelemb.cli", ["train", "--dataset", "mnist"]),  # main() is about to start
    ("argparse", ["seq2seq", "translate", "run"]),
    ("torch._C", ["inspect", "run"]),  # in the middle of torch's import
    # torch is in, the command modules follow; a command that then works for seconds without a
    # word (reading the KJV), so that the signal lands before it can end on its own
    ("torch", ["data", "prepare", "bible-lm", "--out",
               str(Path(tempfile.gettempdir()) / f"labelemb-ctrl-c-{os.getpid()}")]),
]


def _interrupt_after(module: str, args: list[str], sigint=signal.SIG_DFL
                     ) -> tuple[int, list[str]]:
    """Start ``labelemb ARGS``, send SIGINT as soon as ``module`` is imported; the exit status
    and the stderr lines that are not ``-X importtime``'s. ``sigint``: the disposition the
    process starts with (SIG_DFL: as in a terminal, even when pytest runs in the background,
    which ignores SIGINT)."""
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "labelemb", *args], env=env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))
    finished = re.compile(r"^import time:.*\|\s+" + re.escape(module) + r"$")
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line.rstrip("\n"))
            if finished.match(seen[-1]):
                proc.send_signal(signal.SIGINT)
                break
        else:
            pytest.fail(f"{module} was never imported:\n" + "\n".join(seen[-20:]))
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = seen + rest.splitlines()
    return proc.returncode, [line for line in lines if not line.startswith("import time:")]


@pytest.mark.parametrize("module, args", EARLY, ids=[m for m, _ in EARLY])
def test_ctrl_c_in_the_first_second_is_one_line_and_exit_130(module, args):
    status, lines = _interrupt_after(module, args)
    assert (status, lines) == (130, ["labelemb: interrupted"])


def test_an_ignored_sigint_stays_ignored():
    """``nohup labelemb ...`` or ``labelemb ... &``: the start-up guard leaves it alone."""
    status, lines = _interrupt_after("labelemb", ["report", "no-such-folder"], signal.SIG_IGN)
    assert status == 2 and len(lines) == 1 and "no-such-folder" in lines[0], lines


def test_import_labelemb_imports_no_torch_until_a_name_is_used():
    code = ("import sys, labelemb\n"
            "assert 'torch' not in sys.modules, 'torch imported with the package'\n"
            "from labelemb import LabelEmbeddingHead, load_embedding\n"
            "assert labelemb.loss.LabelEmbeddingLoss is labelemb.LabelEmbeddingLoss\n"
            "assert 'LabelEmbeddingHead' in dir(labelemb)\n"
            "print(LabelEmbeddingHead.__module__, load_embedding.__module__)\n")
    done = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["labelemb.head", "labelemb.embedding"]


def test_an_unknown_attribute_of_the_package_is_an_attribute_error():
    import labelemb

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        labelemb.nope  # noqa: B018
    # a subpackage is imported when asked, never guessed (a fresh process: in this one another
    # test may have imported labelemb.hf already)
    done = subprocess.run([sys.executable, "-c", "import labelemb; print(hasattr(labelemb, 'hf'))"],
                          capture_output=True, text=True, env=env(), timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def test_top_level_help_names_every_dataset_and_task():
    """It named neither bible-en-es nor --task parallel."""
    done = labelemb("--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    for name in ("mnist", "fashion-mnist", "cifar10", "cifar100", "fortunes", "bible-en-es",
                 "--task iwslt15 | lcsts | parallel", "train --dataset DIR"):
        assert name in text, name
