"""Run by `torchrun --nproc_per_node 2` from tests/test_hf_lm.py: one Trainer step of the
causal LM per loss on 2 ranks, each 2 micro-batches of 2 (the test's 8 sequences in all);
rank 0 saves the gradients the optimiser gets."""

import sys

import torch
import torch.distributed as dist

from test_hf_lm import fitted, trainer_grads


def main(out: str) -> None:
    grads = {loss: trainer_grads(fitted(loss), 2, 2, f"{out}.{loss}", ddp_backend="gloo")
             for loss in ("emb", "ce")}
    assert dist.is_initialized() and dist.get_world_size() == 2  # it really ran as DDP
    if dist.get_rank() == 0:
        torch.save(grads, out)


if __name__ == "__main__":
    main(sys.argv[1])
