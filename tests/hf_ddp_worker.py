"""Run by `torchrun --nproc_per_node 2` from tests/test_hf.py: one Trainer step per loss and
clipping setting on 2 ranks, each 2 micro-batches of 8 (the test's 32 examples in all); rank 0
saves the gradients the optimiser gets."""

import sys

import torch
import torch.distributed as dist
from transformers import Trainer

from test_hf import LOSSES, GradsAtStep, examples, tiny_model, trainer_args


def main(out: str) -> None:
    grads = {}
    for loss in LOSSES:
        for max_grad_norm in (0.0, 1.0):
            grab = GradsAtStep()
            args = trainer_args(f"{out}.{loss}", 8, 2, max_grad_norm, ddp_backend="gloo")
            Trainer(model=tiny_model(loss), args=args, train_dataset=examples(),
                    callbacks=[grab]).train()
            grads[loss, max_grad_norm] = grab.grads
    assert dist.is_initialized() and dist.get_world_size() == 2  # it really ran as DDP
    if dist.get_rank() == 0:
        torch.save(grads, out)


if __name__ == "__main__":
    main(sys.argv[1])
