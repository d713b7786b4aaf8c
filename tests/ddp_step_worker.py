"""One training step of ``labelemb train``'s engine on a fixed global batch, every mode, as one
process or as one rank of ``torchrun`` (gloo): saves each rank's gradients for
tests/test_train_ddp.py to compare.

    python tests/ddp_step_worker.py OUT EMBEDDING            # one process
    torchrun --nproc_per_node 2 tests/ddp_step_worker.py OUT EMBEDDING

Writes ``OUT/rank-<r>.pt``: ``{(mode, accumulate): {"grads": {name: tensor}, "shares": {...}}}``.
The step is the engine's own (:func:`data_parallel`, :func:`backward_step`); the batch is made so
that every term is active: the auxiliary head is confident (the summed hinge fires) and right on
about half the images (``embedding_ce``'s n_correct is neither 0 nor the batch). The seq2seq
entries, ``("seq2seq-emb" | "seq2seq-baseline", chunked)``, are one step of the seq2seq engine
(:func:`~labelemb.engine.seq2seq.backward_batch`) on sentences of different lengths, so the
ranks' shards hold different numbers of target tokens.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from labelemb.data.registry import ImageDataset
from labelemb.engine.classification import (MODES, TrainConfig, backward_step, build_criterion,
                                            data_parallel)
from labelemb.data.parallel_text import ParallelCorpus, encode_corpus
from labelemb.data.vocab import Vocab
from labelemb.engine import seq2seq
from labelemb.models.classifier import build_model
from labelemb.models.seq2seq import Seq2SeqConfig
from labelemb.runs.ranks import rank_and_world

BATCH, CLASSES, SIZE = 40, 10, 8


def _dataset() -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (BATCH, 1, SIZE, SIZE), generator=g, dtype=torch.uint8)
    return ImageDataset("synthetic", [f"c{i}" for i in range(CLASSES)], x,
                        torch.randint(0, CLASSES, (BATCH,), generator=g), x, torch.zeros(BATCH))


def one_step(mode: str, accumulate: int, ds: ImageDataset, cfg: TrainConfig) -> dict:
    torch.manual_seed(0)
    model = build_model("mlp", 1, SIZE, CLASSES, aux=MODES[mode].aux_head)
    criterion = build_criterion(mode, ds, cfg, 0)
    x = ds.train_x.float() / 255
    y = ds.train_y.clone()
    if model.head.aux:
        with torch.no_grad():
            model.head.aux_fc.weight.mul_(60.0)
            y[: BATCH // 2] = model(x)[1][: BATCH // 2].argmax(1)
    shares = backward_step(data_parallel(model, torch.device("cpu")), criterion, x, y, accumulate)
    params = {**{f"model.{k}": p for k, p in model.named_parameters()},
              **{f"criterion.{k}": p for k, p in criterion.named_parameters() if p.requires_grad}}
    return {"grads": {k: p.grad.clone() for k, p in params.items()},
            "shares": {k: v.detach().clone() for k, v in shares.items()}}


def seq2seq_step(mode: str, chunked: bool) -> dict:
    g = torch.Generator().manual_seed(0)
    lines = [" ".join(f"w{int(t)}" for t in torch.randint(0, 9, (int(n),), generator=g))
             for n in torch.randint(1, 9, (13,), generator=g)]
    corpus = ParallelCorpus(lines, [" ".join(reversed(s.split())) for s in lines], "words", "t")
    vocab = Vocab.build(corpus.iter_tokens("both"))
    src_ids, tgt_ids = encode_corpus(corpus, vocab, vocab)
    torch.manual_seed(0)
    model = seq2seq.build_model(Seq2SeqConfig(len(vocab), len(vocab), 8, 16, 1, 0.0), mode)
    criterion = seq2seq.build_criterion(mode, vocab, 6, warmup_steps=0, chunked=chunked)
    loss, terms, _, _ = seq2seq.backward_batch(model, criterion, src_ids, tgt_ids,
                                               list(range(len(lines))), torch.device("cpu"))
    params = {**{f"model.{k}": p for k, p in model.named_parameters()},
              **{f"criterion.{k}": p for k, p in criterion.named_parameters()}}
    return {"grads": {k: p.grad.clone() for k, p in params.items() if p.grad is not None},
            "shares": {"loss": loss.detach(), **terms}}


def main(out: Path, embedding: str) -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
    torch.set_num_threads(1)
    ds = _dataset()
    cfg = TrainConfig(embedding=embedding)
    results = {(mode, acc): one_step(mode, acc, ds, cfg) for mode in MODES for acc in (1, 3)}
    for mode, chunked in (("emb", False), ("emb", True), ("baseline", False)):
        results[(f"seq2seq-{mode}", chunked)] = seq2seq_step(mode, chunked)
    torch.save(results, out / f"rank-{rank_and_world()[0]}.pt")
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
