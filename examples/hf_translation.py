"""Label embedding for an encoder-decoder translation model, with the Seq2SeqTrainer.

A small Marian model, randomly initialised, with a byte-level BPE tokenizer shared by both
languages and trained on the training split, learns English -> Spanish on ``bible-en-es``
once per loss (``ce``, ``ls``, ``emb``) and seed. Test BLEU (sacrebleu) comes from beam search
through ``generate()`` (``predict_with_generate``).

    labelemb data prepare bible-en-es --out data/bible-en-es
    python examples/hf_translation.py --data data/bible-en-es --smoke   # about a minute, 2 cores
    python examples/hf_translation.py --data data/bible-en-es --modes ce,emb --seeds 0-2 \
        --out runs/bible-hf-mt

Any folder with ``{train,dev,test}.{en,es}`` (one sentence a line, aligned) will do. Each run
writes ``OUT/MODE/seed-S/``: ``result.json`` and ``model/`` (the Marian model, the second head
and the label embedding, and the tokenizer). A run whose ``result.json`` exists is skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import sacrebleu
import torch
from transformers import (DataCollatorForSeq2Seq, MarianConfig, MarianMTModel,
                          PreTrainedTokenizerFast, Seq2SeqTrainer, Seq2SeqTrainingArguments,
                          set_seed)

from labelemb.hf import LabelEmbeddingForSeq2SeqLM
from labelemb.hf.lm_text import train_bpe_tokenizer


@dataclass(frozen=True)
class Recipe:
    """Everything that is the same for every loss: model size and training schedule."""

    vocab_size: int = 8000
    max_length: int = 64
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    ffn: int = 256
    dropout: float = 0.1
    epochs: float = 1
    batch_size: int = 32
    lr: float = 1e-3
    label_dim: int = 100
    emb_warmup: float = 0.25  # emb: the share of the steps before soft_ce counts
    beams: int = 4
    train_subset: int | None = None  # the first N training pairs (for --smoke)
    eval_subset: int | None = None  # the first N test pairs


#: --smoke: a tiny model on 2,000 pairs, 100 test pairs; about a minute on 2 cores
SMOKE = Recipe(vocab_size=2000, max_length=32, hidden=64, layers=1, heads=2, ffn=128,
               beams=2, train_subset=2000, eval_subset=100)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a folder with {train,dev,test}.{en,es}")
    p.add_argument("--out", default="runs/hf-translation", help="where the runs go")
    p.add_argument("--modes", default="ce,emb", help="comma-separated: ce, ls, emb")
    p.add_argument("--seeds", default="0", help="e.g. 0 or 0-2 or 0,3")
    p.add_argument("--source", default="en")
    p.add_argument("--target", default="es")
    p.add_argument("--smoke", action="store_true", help="tiny model, 2,000 pairs, 1 epoch")
    p.add_argument("--epochs", type=float, default=None, help="override the recipe's epochs")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return p.parse_args(argv)


def seeds_of(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def read_pairs(folder: Path, split: str, source: str, target: str) -> list[tuple[str, str]]:
    sides = []
    for side in (source, target):
        path = folder / f"{split}.{side}"
        if not path.is_file():
            raise SystemExit(f"hf_translation: error: no {path} (`labelemb data prepare "
                             "bible-en-es --out DIR` writes one)")
        sides.append(path.read_text(encoding="utf-8").splitlines())
    return [(s.strip(), t.strip()) for s, t in zip(*sides) if s.strip() and t.strip()]


def encode(tokenizer, pairs: list[tuple[str, str]], max_length: int) -> list[dict]:
    """Source and target token ids, each ending in the end-of-text token."""
    eos = tokenizer.eos_token_id
    cut = dict(truncation=True, max_length=max_length - 1)
    src = tokenizer([s for s, _ in pairs], **cut)["input_ids"]
    tgt = tokenizer([t for _, t in pairs], **cut)["input_ids"]
    return [{"input_ids": s + [eos], "labels": t + [eos]} for s, t in zip(src, tgt)]


def build_model(recipe: Recipe, tokenizer, mode: str, seed: int, steps: int
                ) -> LabelEmbeddingForSeq2SeqLM:
    set_seed(seed)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    config = MarianConfig(vocab_size=len(tokenizer), d_model=recipe.hidden,
                          encoder_layers=recipe.layers, decoder_layers=recipe.layers,
                          encoder_attention_heads=recipe.heads,
                          decoder_attention_heads=recipe.heads, encoder_ffn_dim=recipe.ffn,
                          decoder_ffn_dim=recipe.ffn, max_position_embeddings=recipe.max_length,
                          dropout=recipe.dropout, pad_token_id=pad, eos_token_id=eos,
                          decoder_start_token_id=pad, forced_eos_token_id=eos)
    options = {"warmup_steps": int(recipe.emb_warmup * steps)} if mode == "emb" else {}
    return LabelEmbeddingForSeq2SeqLM.from_model(MarianMTModel(config), loss=mode,
                                                 label_dim=recipe.label_dim,
                                                 logits_with_loss=False, **options)


def training_args(recipe: Recipe, out: Path, seed: int) -> Seq2SeqTrainingArguments:
    return Seq2SeqTrainingArguments(
        output_dir=str(out / "trainer"), num_train_epochs=recipe.epochs,
        per_device_train_batch_size=recipe.batch_size, per_device_eval_batch_size=64,
        learning_rate=recipe.lr, warmup_steps=0.05, lr_scheduler_type="linear",
        weight_decay=0.01, seed=seed, predict_with_generate=True,
        generation_max_length=recipe.max_length, generation_num_beams=recipe.beams,
        eval_strategy="no", save_strategy="no", logging_strategy="epoch", report_to=[],
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, disable_tqdm=True)


def run_one(data: dict, recipe: Recipe, tokenizer, mode: str, seed: int, out: Path) -> dict:
    """Train one mode and seed with the Seq2SeqTrainer; write and return its result."""
    sets = {s: encode(tokenizer, pairs, recipe.max_length) for s, pairs in data.items()}
    steps = math.ceil(len(sets["train"]) / recipe.batch_size) * recipe.epochs
    model = build_model(recipe, tokenizer, mode, seed, steps)
    trainer = Seq2SeqTrainer(model=model, args=training_args(recipe, out, seed),
                             train_dataset=sets["train"],
                             data_collator=DataCollatorForSeq2Seq(tokenizer, model=model.model))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    predicted = trainer.predict(sets["test"])
    tokens = torch.as_tensor(predicted.predictions).clamp(min=0)  # -100 padding, if any
    hypotheses = [t.strip() for t in tokenizer.batch_decode(tokens, skip_special_tokens=True)]
    references = [t for _, t in data["test"]]
    bleu = sacrebleu.corpus_bleu(hypotheses, [references])
    result = {"mode": mode, "seed": seed, "recipe": asdict(recipe),
              "train_seconds": round(seconds, 1), "train_pairs": len(sets["train"]),
              "threads": torch.get_num_threads(), "test_bleu": bleu.score,
              "test_loss": predicted.metrics["test_loss"],
              "samples": [{"source": s, "reference": r, "output": h} for (s, r), h in
                          zip(data["test"][:2], hypotheses[:2])]}
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")  # last: "done"
    return result


def study_tokenizer(out: Path, pairs: list[tuple[str, str]], vocab_size: int
                    ) -> PreTrainedTokenizerFast:
    """One tokenizer for both languages (Marian shares its embeddings), trained once."""
    folder = out / "tokenizer"
    if (folder / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(folder)
    tokenizer = train_bpe_tokenizer([text for pair in pairs for text in pair], vocab_size)
    tokenizer.save_pretrained(folder)
    return tokenizer


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = SMOKE if args.smoke else Recipe()
    if args.epochs is not None:
        recipe = replace(recipe, epochs=args.epochs)
    folder = Path(args.data)
    data = {s: read_pairs(folder, s, args.source, args.target) for s in ("train", "test")}
    data["train"] = data["train"][:recipe.train_subset]
    data["test"] = data["test"][:recipe.eval_subset]
    tokenizer = study_tokenizer(Path(args.out), data["train"], recipe.vocab_size)
    results = []
    for seed in seeds_of(args.seeds):
        for mode in args.modes.split(","):
            out = Path(args.out) / mode / f"seed-{seed}"
            done = out / "result.json"
            results.append(json.loads(done.read_text()) if done.is_file() else
                           run_one(data, recipe, tokenizer, mode, seed, out))
    print(f"\n{'mode':>5} {'seed':>4} {'test BLEU':>10}")
    for r in results:
        print(f"{r['mode']:>5} {r['seed']:>4} {r['test_bleu']:10.2f}")
    for r in results:
        print(f"\nsamples ({r['mode']}, seed {r['seed']}):")
        for s in r["samples"]:
            print(f"  {s['source']}\n    -> {s['output']}\n    (reference: {s['reference']})")


if __name__ == "__main__":
    main()
