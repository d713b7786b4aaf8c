"""Parameter memory of the label embeddings at a large label set (issue 6, target 3).

Builds each embedding for real and sums ``numel * element_size`` over its parameters, so the
figure is what the module holds, not a formula. The full ``C x C`` matrix is never built at
large ``C``: its size is computed (and marked as such).

    python benchmarks/embedding_size.py                  # C = 50,000, dim = 100
    python benchmarks/embedding_size.py --quick          # C = 1,000
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from _common import MIB, machine  # noqa: E402
from labelemb import CompressedLabelEmbedding, LabelEmbedding  # noqa: E402

TARGET_MIB = 38.5


def parameter_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-classes", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="C = 1,000")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.num_classes = 1000
    c, dim = args.num_classes, args.dim
    print(machine())
    compressed = CompressedLabelEmbedding(c, dim)
    compressed_mib = parameter_bytes(compressed) / MIB
    if c <= 5000:
        full_mib, how = parameter_bytes(LabelEmbedding(c)) / MIB, "built"
    else:
        full_mib, how = c * c * 4 / MIB, "computed, not built"
    print(f"C={c}: compressed (dim {dim}) {compressed_mib:.2f} MiB "
          f"({sum(p.numel() for p in compressed.parameters()):,} float32 parameters: A {c}x{dim}, "
          f"B {c}x{dim}, bias {c}); target <= {TARGET_MIB} MiB at C=50,000, dim=100")
    print(f"C={c}: full C x C {full_mib:,.2f} MiB ({how}); compressed/full = "
          f"{compressed_mib / full_mib:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "num_classes": c, "dim": dim,
                       "compressed_mib": compressed_mib, "full_mib": full_mib}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
