"""Time of one training step, label embedding network over the cross-entropy baseline.

One step = forward, loss, backward, Adam step, on the same backbone (same initial weights) and
the same batch. The baseline is what a user would write without the method: the model with a
single output layer and ``F.cross_entropy``. The label embedding network adds the auxiliary
layer on detached features, a ``LabelEmbedding(10)`` and ``LabelEmbeddingLoss`` with the
authors' classification settings; Adam covers the extra parameters too. With
``--compile-loss`` the criterion is ``torch.compile(criterion)`` (compiled before timing starts;
the baseline stays eager ``F.cross_entropy``, as a user would write it). With
``--compile-step`` each side's forward and loss are one ``torch.compile``d function (the
baseline's ``F.cross_entropy(model(x))`` too): what the method costs to a user who compiles.

Both are timed in one process, alternating rounds (see ``_common.interleaved``), and the
ratio of the medians is printed for each model.

    python benchmarks/train_step.py                 # MNIST CNN, MLP, CIFAR ResNet-8
    python benchmarks/train_step.py --models mlp    # one model
    python benchmarks/train_step.py --quick         # smoke run (tiny batch, few steps)
    python benchmarks/train_step.py --models mlp --repeat 5   # five runs, their median ratio
    python benchmarks/train_step.py --compile-loss  # torch.compile(criterion), the target's setting
    python benchmarks/train_step.py --compile-step  # model + loss compiled, on both sides
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor  # noqa: E402

from _common import interleaved, machine, median  # noqa: E402
from labelemb import LabelEmbedding, LabelEmbeddingLoss  # noqa: E402
from labelemb.models.classifier import build_model  # noqa: E402

#: model -> (in_channels, image_size, batch size, target ratio, rounds, steps per round)
SETUPS = {
    "cnn": (1, 28, 100, 1.03, 20, 10),
    "mlp": (1, 28, 100, 1.08, 40, 50),
    "resnet8": (3, 32, 128, 1.03, 6, 1),
}


FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def batches(name: str, batch: int, count: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``count`` distinct batches stacked: ``(count, batch, ...)`` images and labels.

    Every step gets a new batch, so neither model memorises one batch (a memorised batch
    drives gradients towards zero, into float denormals, and times arithmetic that real
    training never sees). MNIST-shaped models read real Fashion-MNIST when it is on the
    machine; otherwise, and for CIFAR shapes, the images are Gaussian noise.
    """
    in_channels, size = SETUPS[name][:2]
    g = torch.Generator().manual_seed(seed)
    images = os.path.join(FASHION_MNIST, "train-images-idx3-ubyte.gz")
    if (in_channels, size) == (1, 28) and os.path.exists(images):
        from labelemb.data.idx import read_idx

        n = min(count * batch, 60_000)
        x = torch.from_numpy(read_idx(images, ndim=3)[:n].copy()).float().div_(255.0)
        x = (x - x.mean()) / x.std()
        y = torch.from_numpy(read_idx(images.replace("images-idx3", "labels-idx1"), 1)[:n]
                             .astype("int64"))
        count = n // batch
        return (x[:count * batch].reshape(count, batch, 1, 28, 28),
                y[:count * batch].reshape(count, batch))
    x = torch.randn(count, batch, in_channels, size, size, generator=g)
    return x, torch.randint(0, 10, (count, batch), generator=g)


def make_steps(name: str, batch: int, count: int, seed: int = 0, foreach: bool | None = None,
               compile_loss: bool = False, cpp_wrapper: bool = False, compile_step: bool = False):
    """Two step functions: ``{"baseline": ..., "label_embedding": ...}``, and their losses.

    Both walk the same ``count`` batches in the same order.
    """
    in_channels, size = SETUPS[name][:2]
    num_classes = 10
    xs, ys = batches(name, batch, count, seed)
    torch.manual_seed(seed)
    base = build_model(name, in_channels, size, num_classes, aux=False)
    torch.manual_seed(seed)
    emb_model = build_model(name, in_channels, size, num_classes, aux=True)
    criterion = LabelEmbeddingLoss(LabelEmbedding(num_classes))
    if compile_loss or compile_step:
        torch._dynamo.reset()  # each run compiles afresh, never past dynamo's recompile limit
    # cpp_wrapper: inductor's C++ wrapper around the kernels instead of Python (less per call)
    options = {"cpp_wrapper": True} if cpp_wrapper else None
    loss_fn = torch.compile(criterion, options=options) if compile_loss else criterion
    base_opt = torch.optim.Adam(base.parameters(), lr=1e-3, foreach=foreach)
    emb_opt = torch.optim.Adam([*emb_model.parameters(), *criterion.parameters()], lr=1e-3,
                               foreach=foreach)
    base.train()
    emb_model.train()

    def base_forward(x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(base(x)[0], y)

    def emb_forward(x: Tensor, y: Tensor) -> Tensor:
        return loss_fn(*emb_model(x), y)[0]

    if compile_step:
        base_forward, emb_forward = torch.compile(base_forward), torch.compile(emb_forward)
    last: dict[str, Tensor] = {}
    position = {"baseline": 0, "label_embedding": 0}

    def next_batch(which: str) -> tuple[Tensor, Tensor]:
        i = position[which] % len(xs)
        position[which] += 1
        return xs[i], ys[i]

    def baseline_step() -> None:
        x, y = next_batch("baseline")
        base_opt.zero_grad(set_to_none=True)
        loss = base_forward(x, y)
        loss.backward()
        base_opt.step()
        last["baseline"] = loss.detach()

    def label_embedding_step() -> None:
        x, y = next_batch("label_embedding")
        emb_opt.zero_grad(set_to_none=True)
        loss = emb_forward(x, y)
        loss.backward()
        emb_opt.step()
        last["label_embedding"] = loss.detach()

    return {"baseline": baseline_step, "label_embedding": label_embedding_step}, last


def compiled_graphs() -> int:
    """Graphs ``torch.compile`` has made since the last ``torch._dynamo.reset()`` (0 eager)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(SETUPS), default=list(SETUPS))
    parser.add_argument("--rounds", type=int, help="alternating rounds (default per model)")
    parser.add_argument("--steps", type=int, help="steps per round (default per model)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: all)")
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 4, 2 rounds")
    parser.add_argument("--foreach", action="store_true",
                        help="Adam(foreach=True) on both sides (default: PyTorch's default, "
                             "a per-tensor loop on CPU)")
    parser.add_argument("--compile-loss", action="store_true",
                        help="time torch.compile(criterion) instead of the eager criterion")
    parser.add_argument("--cpp-wrapper", action="store_true",
                        help="with --compile-loss: torch.compile(criterion, "
                             "options={'cpp_wrapper': True})")
    parser.add_argument("--compile-step", action="store_true",
                        help="torch.compile each side's model + loss (baseline included)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="independent interleaved runs per model; prints each ratio and "
                             "their median (the machine's noise shows in the spread)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(machine() + ("; Adam(foreach=True)" if args.foreach else "; Adam defaults")
          + ("; loss compiled" if args.compile_loss else "" if args.compile_step else "; loss eager")
          + (" (cpp_wrapper)" if args.compile_loss and args.cpp_wrapper else "")
          + ("; model + loss compiled on both sides" if args.compile_step else ""))
    results = {}
    for name in args.models:
        _, _, batch, target, rounds, steps = SETUPS[name]
        if args.quick:
            batch, rounds, steps = 4, 2, 1
        rounds = args.rounds or rounds
        steps = args.steps or steps
        runs = []
        for _ in range(max(1, args.repeat)):
            fns, last = make_steps(name, batch, count=rounds * steps + 2,
                                   foreach=True if args.foreach else None,
                                   compile_loss=args.compile_loss,
                                   cpp_wrapper=args.cpp_wrapper,
                                   compile_step=args.compile_step)
            times = interleaved(fns, rounds=rounds, steps_per_round=steps, warmup=2)
            for k, v in last.items():
                if not torch.isfinite(v):
                    raise RuntimeError(f"{name}: {k} loss is not finite: {v}")
            base_ms = 1e3 * median(times["baseline"])
            emb_ms = 1e3 * median(times["label_embedding"])
            runs.append(dict(baseline_ms=base_ms, label_embedding_ms=emb_ms,
                             ratio=emb_ms / base_ms, compiled_graphs=compiled_graphs()))
            print(f"{name:8s} batch {batch:4d}  baseline {base_ms:9.2f} ms  label embedding "
                  f"{emb_ms:9.2f} ms  ratio {emb_ms / base_ms:.3f} (target <= {target})  "
                  f"[{len(times['baseline'])} steps each]", flush=True)
        ratios = sorted(r["ratio"] for r in runs)
        results[name] = dict(batch=batch, target=target, runs=runs, ratio=median(ratios),
                             steps=len(times["baseline"]))
        if len(runs) > 1:
            print(f"{name:8s} median ratio over {len(runs)} runs {median(ratios):.3f} "
                  f"(min {ratios[0]:.3f}, max {ratios[-1]:.3f}; target <= {target})", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
