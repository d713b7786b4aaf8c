"""One training step of ``labelemb train``'s engine on a fixed global batch, every mode, as one
process or as one rank of ``torchrun`` (gloo): saves each rank's gradients for
tests/test_train_ddp.py to compare.

    python tests/ddp_step_worker.py OUT EMBEDDING            # one process
    torchrun --nproc_per_node 2 tests/ddp_step_worker.py OUT EMBEDDING

Writes ``OUT/rank-<r>.pt``: ``{(mode, accumulate): {"grads": {name: tensor}, "shares": {...}}}``.
The step is the engine's own (:func:`labelemb.engine.loop.step_gradients` with the image
task); the batch is made so that every term is active: the auxiliary head is confident (the
summed hinge fires) and right on about half the images (``embedding_ce``'s n_correct is neither
0 nor the batch). The seq2seq entries, ``("seq2seq-emb" | "seq2seq-baseline", chunked)``, are
one step of the same function with the seq2seq task on sentences of different lengths, so the
ranks' shards hold different numbers of target tokens.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from labelemb.data.parallel_text import ParallelCorpus
from labelemb.data.registry import ImageDataset
from labelemb.data.seq2seq_data import Seq2SeqData
from labelemb.data.vocab import Vocab
from labelemb.engine import seq2seq
from labelemb.engine.classification import Classification, TrainConfig
from labelemb.engine.loop import step_gradients
from labelemb.runs.config import MODES
from labelemb.runs.ranks import rank_and_world

BATCH, CLASSES, SIZE = 40, 10, 8


def _dataset() -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (BATCH, 1, SIZE, SIZE), generator=g, dtype=torch.uint8)
    return ImageDataset("synthetic", [f"c{i}" for i in range(CLASSES)], x,
                        torch.randint(0, CLASSES, (BATCH,), generator=g), x, torch.zeros(BATCH))


def _grads(model, criterion, shares) -> dict:
    params = {**{f"model.{k}": p for k, p in model.named_parameters()},
              **{f"criterion.{k}": p for k, p in criterion.named_parameters() if p.requires_grad}}
    return {"grads": {k: p.grad.clone() for k, p in params.items() if p.grad is not None},
            "shares": {k: v.detach().clone() for k, v in shares.items()}}


def one_step(mode: str, accumulate: int, ds: ImageDataset, embedding: str) -> dict:
    cfg = TrainConfig(model="mlp", embedding=embedding, accumulate=accumulate).resolved(ds)
    task = Classification(cfg, ds, torch.device("cpu"))
    torch.manual_seed(0)
    model, criterion = task.build(mode, 0)
    x = ds.train_x.float() / 255
    y = ds.train_y.clone()
    if model.head.aux:
        with torch.no_grad():
            model.head.aux_fc.weight.mul_(60.0)
            y[: BATCH // 2] = model(x)[1][: BATCH // 2].argmax(1)
    shares, _ = step_gradients(task, model, criterion, (x, y))
    return _grads(model, criterion, shares)


def seq2seq_step(mode: str, chunked: bool) -> dict:
    g = torch.Generator().manual_seed(0)
    lines = [" ".join(f"w{int(t)}" for t in torch.randint(0, 9, (int(n),), generator=g))
             for n in torch.randint(1, 9, (13,), generator=g)]
    corpus = ParallelCorpus(lines, [" ".join(reversed(s.split())) for s in lines], "words", "t")
    vocab = Vocab.build(corpus.iter_tokens("both"))
    cfg = seq2seq.TrainConfig(task="parallel", data_dir=".", emb_dim=8, hidden=16, layers=1,
                              dropout=0.0, label_dim=6, warmup_steps=0,
                              chunked_loss=chunked).resolved()
    task = seq2seq.Seq2SeqTask(cfg, Seq2SeqData(corpus, corpus, None, vocab, vocab),
                               torch.device("cpu"))
    torch.manual_seed(0)
    model, criterion = task.build(mode, 0)
    shares, _ = step_gradients(task, model, criterion, torch.arange(len(lines)))
    return _grads(model, criterion, shares)


def main(out: Path, embedding: str) -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
    torch.set_num_threads(1)
    ds = _dataset()
    results = {(mode, acc): one_step(mode, acc, ds, embedding) for mode in MODES
               for acc in (1, 3)}
    for mode, chunked in (("emb", False), ("emb", True), ("baseline", False)):
        results[(f"seq2seq-{mode}", chunked)] = seq2seq_step(mode, chunked)
    torch.save(results, out / f"rank-{rank_and_world()[0]}.pt")
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
