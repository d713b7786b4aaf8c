"""Label embedding for a causal language model, with the unmodified Hugging Face Trainer.

A small GPT-2, randomly initialised (nothing is downloaded: a byte-level BPE tokenizer is
trained on the training split), is trained on one text a line, once per loss (``ce``
cross-entropy, ``ls`` label smoothing, ``emb`` label embedding) and seed, with the same recipe.
The script prints each run's test perplexity, its token-level ECE raw and calibrated (a
temperature fitted on dev), the nearest tokens of a few words in the learned label embedding
and two generated samples.

    labelemb data prepare bible-lm --out data/bible-lm      # DIR/{train,dev,test}.txt
    python examples/hf_causal_lm.py --data data/bible-lm --smoke     # about a minute, 2 cores
    python examples/hf_causal_lm.py --data data/bible-lm --modes ce,ls,emb --seeds 0-2 \
        --out runs/bible-lm

Any folder with ``train.txt``, ``dev.txt`` and ``test.txt`` (one text a line) will do. The
tokenizer is trained once and kept in ``OUT/tokenizer``; each run writes ``OUT/MODE/seed-S/``:
``result.json`` and ``model/`` (``save_pretrained``: the GPT-2, the second head and the label
embedding, and the tokenizer). A run whose ``result.json`` exists is skipped.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from transformers import (DataCollatorForLanguageModeling, GPT2Config, GPT2LMHeadModel,
                          Trainer, TrainingArguments, set_seed)

from _study import (LMRecipe, report_fields, run_study, save_run, study_parser,
                    study_tokenizer)
from labelemb.calibration import calibration_metrics, fit_temperature
from labelemb.chunked import chunked_cross_entropy
from labelemb.hf import LabelEmbeddingForCausalLM
from labelemb.hf.lm_text import encode_lines
from labelemb.report.nearest import nearest_labels


@dataclass(frozen=True)
class Recipe(LMRecipe):
    """:class:`LMRecipe` and the tokens the calibration is measured on."""

    calibration_tokens: int = 4000  # dev and test tokens whose logits the ECE is taken on


#: --smoke: a tiny model on 2,000 training lines; about a minute on 2 cores for three losses
SMOKE = Recipe(vocab_size=2000, max_length=32, hidden=64, layers=1, heads=2,
               train_subset=2000, calibration_tokens=1000)
#: words whose nearest tokens are printed (the ones the vocabulary has as one token)
WORDS = ("God", "LORD", "king", "father", "water", "said")
PROMPTS = ("In the beginning", "And the LORD said")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = study_parser(__doc__.split("\n\n")[0], "runs/hf-causal-lm", "ce,ls,emb")
    p.add_argument("--vocab-size", type=int, default=None, help="BPE vocabulary (8k-32k)")
    return p.parse_args(argv)


def read_split(folder: Path, split: str) -> list[str]:
    path = folder / f"{split}.txt"
    if not path.is_file():
        raise SystemExit(f"hf_causal_lm: error: no {path} (one text a line; "
                         "`labelemb data prepare bible-lm --out DIR` writes one)")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def build_model(recipe: Recipe, tokenizer, mode: str, seed: int, examples: int
                ) -> LabelEmbeddingForCausalLM:
    """The same GPT-2 for every mode (same seed); ``emb`` adds the second head and the
    embedding, and its soft target counts after ``emb_warmup`` of the training steps."""
    set_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=recipe.max_length,
                        n_embd=recipe.hidden, n_layer=recipe.layers, n_head=recipe.heads,
                        resid_pdrop=recipe.dropout, embd_pdrop=recipe.dropout,
                        attn_pdrop=recipe.dropout, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return recipe.wrap(LabelEmbeddingForCausalLM, GPT2LMHeadModel(config), mode, examples)


@torch.no_grad()
def token_scores(model: LabelEmbeddingForCausalLM, examples: list[dict], collator,
                 keep: int) -> tuple[float, torch.Tensor, torch.Tensor]:
    """The main head's mean NLL per token over ``examples`` (computed chunk by chunk, no
    ``tokens x vocab`` tensor), and the logits and targets of the first ``keep`` tokens."""
    model.eval()
    head = model.get_output_embeddings()
    total, count, logits, targets = 0.0, 0, [], []
    for start in range(0, len(examples), 64):
        batch = collator(examples[start:start + 64])
        hidden = model.model.base_model(input_ids=batch["input_ids"],
                                        attention_mask=batch["attention_mask"]).last_hidden_state
        hidden, target = hidden[:, :-1], batch["labels"][:, 1:]
        total += float(chunked_cross_entropy(hidden, target, head, reduction="sum").loss)
        count += int((target != -100).sum())
        if sum(len(t) for t in targets) < keep:
            valid = target != -100
            logits.append(head(hidden[valid]).float())
            targets.append(target[valid])
    return total / max(count, 1), torch.cat(logits)[:keep], torch.cat(targets)[:keep]


def nearest_tokens(model: LabelEmbeddingForCausalLM, tokenizer) -> dict[str, list[str]]:
    """The 5 tokens whose learned soft targets are nearest each of :data:`WORDS` (``emb``)."""
    if model.label_embedding is None:
        return {}
    ids = {w: tokenizer.convert_tokens_to_ids("Ġ" + w) for w in WORDS}
    ids = {w: i for w, i in ids.items() if i != tokenizer.unk_token_id and i is not None}
    names = [tokenizer.decode([i]).strip() or repr(tokenizer.decode([i]))
             for i in range(len(tokenizer))]
    special = [tokenizer.eos_token_id, tokenizer.pad_token_id]
    near = nearest_labels(model.label_embedding, list(ids.values()), k=5, names=names,
                          exclude=special)
    return {w: [n.name for n in near[i]] for w, i in ids.items()}


def samples(model: LabelEmbeddingForCausalLM, tokenizer, seed: int) -> list[str]:
    set_seed(seed)
    out = []
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        made = model.generate(ids, max_new_tokens=24, do_sample=True, top_k=40,
                              pad_token_id=tokenizer.pad_token_id)
        out.append(tokenizer.decode(made[0], skip_special_tokens=True).strip())
    return out


def run_one(data: dict, recipe: Recipe, tokenizer, mode: str, seed: int, out: Path,
            source: str) -> dict:
    """Train one mode and seed with the Trainer; write and return its result."""
    sets = {s: encode_lines(tokenizer, lines, recipe.max_length) for s, lines in data.items()}
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    model = build_model(recipe, tokenizer, mode, seed, len(sets["train"]))
    trainer = Trainer(model=model, args=TrainingArguments(**recipe.trainer_settings(out, seed)),
                      train_dataset=sets["train"], data_collator=collator)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    nll, scored = {}, {}
    for split in ("dev", "test"):
        nll[split], *scored[split] = token_scores(model, sets[split], collator,
                                                  recipe.calibration_tokens)
    temperature = fit_temperature(*scored["dev"])
    raw = calibration_metrics(*scored["test"])
    calibrated = calibration_metrics(*scored["test"], temperature=temperature)
    result = {**report_fields(source, "gpt2-small", "test_perplexity", False, recipe),
              "mode": mode, "seed": seed, "recipe": asdict(recipe),
              "train_seconds": round(seconds, 1), "train_lines": len(sets["train"]),
              "threads": torch.get_num_threads(), "dev_perplexity": math.exp(nll["dev"]),
              "test_perplexity": math.exp(nll["test"]), "test_ece": raw["ece"],
              "test_ece_calibrated": calibrated["ece"], "temperature": temperature,
              "nearest": nearest_tokens(model, tokenizer), "samples": samples(model, tokenizer,
                                                                               seed)}
    save_run(out, model, tokenizer, result)
    return result


def report(results: list[dict]) -> None:
    print(f"\n{'mode':>5} {'seed':>4} {'test ppl':>9} {'ECE':>7} {'ECE cal.':>9}")
    for r in results:
        print(f"{r['mode']:>5} {r['seed']:>4} {r['test_perplexity']:9.2f} "
              f"{100 * r['test_ece']:6.2f}% {100 * r['test_ece_calibrated']:8.2f}%")
    for r in results:
        if r["nearest"]:
            print(f"\nnearest tokens (label embedding, seed {r['seed']}):")
            for word, near in r["nearest"].items():
                print(f"  {word:>8} ~ {', '.join(near)}")
            break
    for r in results:
        print(f"\nsamples ({r['mode']}, seed {r['seed']}):")
        for text in r["samples"]:
            print(f"  {text}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    recipe = SMOKE if args.smoke else Recipe()
    recipe = replace(recipe, **{k: v for k, v in (("epochs", args.epochs),
                                                  ("vocab_size", args.vocab_size))
                                if v is not None})
    folder = Path(args.data)
    data = {s: read_split(folder, s) for s in ("train", "dev", "test")}
    data["train"] = data["train"][:recipe.train_subset]
    if args.smoke:
        data = {s: lines[:500] if s != "train" else lines for s, lines in data.items()}
    tokenizer = study_tokenizer(Path(args.out), data["train"], recipe.vocab_size,
                                recipe.max_length)
    report(run_study(args, recipe, lambda mode, seed, out: run_one(data, recipe, tokenizer,
                                                                   mode, seed, out, args.data)))


if __name__ == "__main__":
    main()
