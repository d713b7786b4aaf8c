"""Run by `torchrun --nproc_per_node 2` from tests/test_hf.py: one Trainer step per loss on 2
ranks (4 examples each, the test's 8 in all); rank 0 saves the gradients the optimiser gets."""

import sys

import torch
import torch.distributed as dist
from transformers import Trainer, TrainingArguments

from test_hf import LOSSES, GradsAtStep, examples, tiny_model


def main(out: str) -> None:
    grads = {}
    for loss in LOSSES:
        grab = GradsAtStep()
        args = TrainingArguments(output_dir=f"{out}.{loss}", max_steps=1,
                                 per_device_train_batch_size=4, max_grad_norm=0.0,
                                 report_to=[], save_strategy="no", use_cpu=True,
                                 disable_tqdm=True, ddp_backend="gloo")
        Trainer(model=tiny_model(loss), args=args, train_dataset=examples(),
                callbacks=[grab]).train()
        grads[loss] = grab.grads
    assert dist.is_initialized() and dist.get_world_size() == 2  # it really ran as DDP
    if dist.get_rank() == 0:
        torch.save(grads, out)


if __name__ == "__main__":
    main(sys.argv[1])
