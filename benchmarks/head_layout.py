"""Does the earlier one-weight head still matter once the loss is compiled? (issue 11)

The training step of the paper's MLP with the current ``LabelEmbeddingHead`` (two
``nn.Linear`` layers) and with the one-weight head it replaced (W1 and W2 in one ``(2C, F)``
weight with a hand-written autograd function), both with ``torch.compile(criterion)``,
interleaved in one process with the cross-entropy baseline. The old head is read from the
repository's history (``git show d91db14:src/labelemb/head.py``), so this needs a git
checkout; the source tree itself no longer carries that layer.

    python benchmarks/head_layout.py --threads 1           # 3 interleaved series
    python benchmarks/head_layout.py --quick               # smoke run, eager loss
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import labelemb.models.classifier as classifier  # noqa: E402
import train_step  # noqa: E402
from _common import interleaved, machine, median  # noqa: E402

OLD_HEAD = "d91db14:src/labelemb/head.py"


def old_head_class() -> type:
    """``LabelEmbeddingHead`` as it was at commit d91db14, loaded from git."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = subprocess.run(["git", "show", OLD_HEAD], cwd=root, capture_output=True,
                            text=True, check=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("one_weight_head", f.name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    os.unlink(f.name)
    return module.LabelEmbeddingHead


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: all)")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=50, help="steps per round")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved series")
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 4, eager loss")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    batch, compile_loss = (4, False) if args.quick else (100, True)
    if args.quick:
        args.rounds, args.steps, args.repeat = 2, 1, 1
    current = classifier.LabelEmbeddingHead
    fns = {}
    for name, head in (("two_layer", current), ("one_weight", old_head_class())):
        classifier.LabelEmbeddingHead = head  # what build_model constructs
        steps, _ = train_step.make_steps("mlp", batch, args.rounds * args.steps + 2,
                                         compile_loss=compile_loss)
        fns[name] = steps["label_embedding"]
        fns.setdefault("baseline", steps["baseline"])
    classifier.LabelEmbeddingHead = current
    print(machine() + ("; loss compiled" if compile_loss else "; loss eager"))
    for _ in range(args.repeat):
        times = interleaved(fns, rounds=args.rounds, steps_per_round=args.steps, warmup=2)
        base = median(times["baseline"])
        print("  ".join(f"{k} {1e3 * median(v):.2f} ms ({median(v) / base:.3f})"
                        for k, v in times.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
