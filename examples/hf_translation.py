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
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import sacrebleu
import torch
from transformers import (DataCollatorForSeq2Seq, MarianConfig, MarianMTModel, Seq2SeqTrainer,
                          Seq2SeqTrainingArguments, set_seed)

from _study import (LMRecipe, report_fields, run_study, save_run, study_parser,
                    study_tokenizer)
from labelemb.hf import LabelEmbeddingForSeq2SeqLM


@dataclass(frozen=True)
class Recipe(LMRecipe):
    """:class:`LMRecipe` and the feed-forward width, the beams and the test pairs."""

    ffn: int = 256
    beams: int = 4
    eval_subset: int | None = None  # the first N test pairs


#: --smoke: a tiny model on 2,000 pairs, 100 test pairs; about a minute on 2 cores
SMOKE = Recipe(vocab_size=2000, max_length=32, hidden=64, layers=1, heads=2, ffn=128,
               beams=2, train_subset=2000, eval_subset=100)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = study_parser(__doc__.split("\n\n")[0], "runs/hf-translation", "ce,emb")
    p.add_argument("--source", default="en")
    p.add_argument("--target", default="es")
    return p.parse_args(argv)


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


def build_model(recipe: Recipe, tokenizer, mode: str, seed: int, examples: int
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
    return recipe.wrap(LabelEmbeddingForSeq2SeqLM, MarianMTModel(config), mode, examples)


def training_args(recipe: Recipe, out: Path, seed: int) -> Seq2SeqTrainingArguments:
    return Seq2SeqTrainingArguments(
        **recipe.trainer_settings(out, seed), per_device_eval_batch_size=64,
        predict_with_generate=True, generation_max_length=recipe.max_length,
        generation_num_beams=recipe.beams)


def run_one(data: dict, recipe: Recipe, tokenizer, mode: str, seed: int, out: Path,
            source: str) -> dict:
    """Train one mode and seed with the Seq2SeqTrainer; write and return its result."""
    sets = {s: encode(tokenizer, pairs, recipe.max_length) for s, pairs in data.items()}
    model = build_model(recipe, tokenizer, mode, seed, len(sets["train"]))
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
    result = {**report_fields(source, "marian-small", "test_bleu", True, recipe),
              "mode": mode, "seed": seed, "recipe": asdict(recipe),
              "train_seconds": round(seconds, 1), "train_pairs": len(sets["train"]),
              "threads": torch.get_num_threads(), "test_bleu": bleu.score,
              "test_loss": predicted.metrics["test_loss"],
              "samples": [{"source": s, "reference": r, "output": h} for (s, r), h in
                          zip(data["test"][:2], hypotheses[:2])]}
    save_run(out, model, tokenizer, result)
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    recipe = SMOKE if args.smoke else Recipe()
    if args.epochs is not None:
        recipe = replace(recipe, epochs=args.epochs)
    folder = Path(args.data)
    data = {s: read_pairs(folder, s, args.source, args.target) for s in ("train", "test")}
    data["train"] = data["train"][:recipe.train_subset]
    data["test"] = data["test"][:recipe.eval_subset]
    texts = [text for pair in data["train"] for text in pair]  # one vocabulary, both sides
    tokenizer = study_tokenizer(Path(args.out), texts, recipe.vocab_size,
                                recipe.max_length)
    results = run_study(args, recipe, lambda mode, seed, out: run_one(data, recipe, tokenizer,
                                                                      mode, seed, out, args.data))
    print(f"\n{'mode':>5} {'seed':>4} {'test BLEU':>10}")
    for r in results:
        print(f"{r['mode']:>5} {r['seed']:>4} {r['test_bleu']:10.2f}")
    for r in results:
        print(f"\nsamples ({r['mode']}, seed {r['seed']}):")
        for s in r["samples"]:
            print(f"  {s['source']}\n    -> {s['output']}\n    (reference: {s['reference']})")


if __name__ == "__main__":
    main()
