"""Label embedding with the Hugging Face Trainer on a real 40-class text task (fortunes).

A small BERT-style encoder, randomly initialised (nothing is downloaded: the tokenizer is
trained on the training split), is trained with the unmodified ``transformers.Trainer`` once
per loss, with the same seed and recipe; the script prints each loss's test accuracy, raw and
temperature-calibrated ECE, and the nearest categories of a few labels.

    labelemb data prepare fortunes --out data/fortunes     # apt-get install fortunes first
    python examples/hf_text_classification.py --data data/fortunes --smoke   # ~1 min, 2 cores
    python examples/hf_text_classification.py --data data/fortunes --modes ce,ls,ols,emb \
        --seeds 0-2 --out runs/fortunes-hf                  # the study (docs/RESULTS.md)

The tokenizer is trained once and kept in ``OUT/tokenizer`` for every run. Each run writes
``OUT/MODE/seed-S/``: ``result.json``, ``predictions.pt`` (dev and test
logits), ``model/`` (``save_pretrained``: encoder, head and label embedding, plus the
tokenizer; ``transformers.pipeline("text-classification", model=...)`` loads it) and, for
``emb``, ``embedding.safetensors`` with the category names, which
``labelemb inspect OUT/emb/seed-0`` draws. A run whose ``result.json`` exists is skipped,
so an interrupted study continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from transformers import (BertConfig, DataCollatorWithPadding, PreTrainedTokenizerFast, Trainer,
                          TrainingArguments, set_seed)

from labelemb import save_embedding
from labelemb.calibration import calibration_metrics, fit_temperature
from labelemb.data.text_classification import load_text_classification
from labelemb.hf import (LabelEmbeddingConfig, LabelEmbeddingForSequenceClassification,
                         OnlineLabelSmoothingCallback, max_tokens)
from labelemb.hf.text import encode, train_tokenizer
from labelemb.report.nearest import nearest_labels, resolve_classes

from _study import study_parser  # noqa: E402  (beside this script)


@dataclass(frozen=True)
class Recipe:
    """Everything that is the same for every loss: the model size and the training schedule."""

    vocab_size: int = 8000
    max_length: int = 48
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    intermediate: int = 256
    dropout: float = 0.1
    epochs: float = 2  # what a shared 2-core CPU affords: 12 runs in about an hour on one core
    batch_size: int = 32
    lr: float = 1e-3
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    train_subset: int | None = None  # the first N training texts (for --smoke)


#: --smoke: a smaller model on 2,000 training texts, one epoch; about a minute on 2 cores
SMOKE = Recipe(vocab_size=2000, max_length=32, hidden=64, layers=1, intermediate=128,
               epochs=1, train_subset=2000)
#: labels whose nearest categories are printed, where the data has them
SHOWN = ("linux", "love", "startrek", "medicine", "politics")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = study_parser(__doc__.split("\n\n")[0], "runs/hf-text", "ce,emb", "ce, ls, ols, emb")
    p.add_argument("--soft-target-temperature", type=float, default=None,
                   help="emb: a sharper soft target softmax(e / T) (default: the preset's 1)")
    return p.parse_args(argv)


def seeds_of(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def build_model(recipe: Recipe, mode: str, names: list[str], seed: int,
                loss_options: dict | None = None) -> LabelEmbeddingForSequenceClassification:
    """The same encoder and main head for every mode (same seed); ``emb`` adds its parts."""
    set_seed(seed)
    encoder = BertConfig(
        vocab_size=recipe.vocab_size, hidden_size=recipe.hidden,
        num_hidden_layers=recipe.layers, num_attention_heads=recipe.heads,
        intermediate_size=recipe.intermediate, max_position_embeddings=recipe.max_length,
        hidden_dropout_prob=recipe.dropout, attention_probs_dropout_prob=recipe.dropout)
    config = LabelEmbeddingConfig(
        encoder=encoder, loss=mode, num_labels=len(names), loss_options=loss_options,
        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    return LabelEmbeddingForSequenceClassification(config)


def training_args(recipe: Recipe, out: Path, seed: int) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(out / "trainer"), num_train_epochs=recipe.epochs,
        per_device_train_batch_size=recipe.batch_size, per_device_eval_batch_size=256,
        learning_rate=recipe.lr, warmup_steps=recipe.warmup_ratio,  # < 1: a ratio
        weight_decay=recipe.weight_decay, lr_scheduler_type="linear", seed=seed,
        eval_strategy="no", save_strategy="no", logging_strategy="epoch", report_to=[],
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
        disable_tqdm=True)


def score_test(logits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """Test accuracy, and ECE raw and after temperature scaling fitted on dev."""
    temperature = fit_temperature(*logits["dev"])
    raw = calibration_metrics(*logits["test"])
    calibrated = calibration_metrics(*logits["test"], temperature=temperature)
    return {"test_accuracy": 1.0 - raw["error"], "test_ece": raw["ece"],
            "test_ece_calibrated": calibrated["ece"], "temperature": temperature,
            "test_nll": raw["nll"], "test_nll_calibrated": calibrated["nll"]}


def dataset_name(folder: str) -> str:
    """The name ``labelemb data prepare`` wrote into ``labels.json``, else the folder's."""
    info = json.loads((Path(folder) / "labels.json").read_text(encoding="utf-8"))
    return str(info.get("dataset") or Path(folder).name)


def run_one(data, recipe: Recipe, tokenizer, mode: str, seed: int, out: Path,
            loss_options: dict | None = None) -> dict:
    """Train one mode and seed with the Trainer; write and return its result (which names its
    primary measure and settings, so that ``labelemb report`` reads it)."""
    n = {"train": recipe.train_subset}  # None: every text
    sets = {s: encode(tokenizer, data.texts[s][:n.get(s)], data.labels[s][:n.get(s)],
                      recipe.max_length) for s in ("train", "dev", "test")}
    model = build_model(recipe, mode, data.names, seed, loss_options)
    trainer = Trainer(model=model, args=training_args(recipe, out, seed),
                      train_dataset=sets["train"], data_collator=DataCollatorWithPadding(tokenizer),
                      callbacks=[OnlineLabelSmoothingCallback()])
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    logits = {}
    for split in ("dev", "test"):
        pred = trainer.predict(sets[split])
        logits[split] = (torch.from_numpy(pred.predictions).float(),
                         torch.from_numpy(pred.label_ids).long())
    result = {
        "task": "classification", "dataset": dataset_name(data.source), "model": "bert-small",
        "primary_metric": "test_accuracy", "higher_is_better": True,
        "settings": {**asdict(recipe), "loss_options": loss_options or {}},
        "mode": mode, "seed": seed, "recipe": asdict(recipe), "train_seconds": round(seconds, 1),
        "train_texts": len(sets["train"]), "threads": torch.get_num_threads(),
        "dev_accuracy": float((logits["dev"][0].argmax(1) == logits["dev"][1]).float().mean()),
        **score_test(logits),
    }
    save_run(out, model, tokenizer, logits, result)
    return result


def save_run(out: Path, model, tokenizer, logits: dict, result: dict) -> None:
    model.save_pretrained(out / "model")
    # The saved tokenizer knows the model's longest input: `pipeline("text-classification",
    # model=OUT/MODE/seed-S/model)` with truncation=True cuts there.
    tokenizer.model_max_length = max_tokens(model.encoder)
    tokenizer.save_pretrained(out / "model")
    torch.save({f"{s}_{k}": t for s, (lg, y) in logits.items() for k, t in
                (("logits", lg), ("labels", y))}, out / "predictions.pt")
    if model.label_embedding is not None:
        save_embedding(model.label_embedding, out / "embedding.safetensors",
                       class_names=model.label_embedding.class_names)
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")  # last: "done"


def study_tokenizer(out: Path, texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """The tokenizer every run under ``out`` uses: trained once, saved in ``out/tokenizer``
    and reused. Training is not reproducible across processes (the tokenizers library breaks
    ties between equally frequent pieces in hash-map order), so a resumed or parallel study
    must not train its own."""
    folder = out / "tokenizer"
    if (folder / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(folder)
    tokenizer = train_tokenizer(texts, vocab_size)
    tokenizer.save_pretrained(folder)
    return tokenizer


def print_nearest(run: Path, names: list[str]) -> None:
    model = LabelEmbeddingForSequenceClassification.from_pretrained(run / "model")
    shown = resolve_classes(names, [n for n in SHOWN if n in names] or names[:3])
    for i, near in nearest_labels(model.label_embedding, shown, k=3, names=names).items():
        cells = ", ".join(f"{n.name} ({n.probability:.3f})" for n in near)
        print(f"  {names[i]:>10} ~ {cells}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = SMOKE if args.smoke else Recipe()
    if args.epochs is not None:
        recipe = replace(recipe, epochs=args.epochs)
    data = load_text_classification(args.data)
    tokenizer = study_tokenizer(Path(args.out), data.texts["train"], recipe.vocab_size)
    loss_options = ({} if args.soft_target_temperature is None else
                    {"soft_target_temperature": args.soft_target_temperature})
    results = []
    for seed in seeds_of(args.seeds):
        for mode in args.modes.split(","):
            out = Path(args.out) / mode / f"seed-{seed}"
            done = out / "result.json"
            results.append(json.loads(done.read_text()) if done.is_file() else
                           run_one(data, recipe, tokenizer, mode, seed, out, loss_options))
    print(f"\n{'mode':>5} {'seed':>4} {'test acc':>9} {'ECE':>7} {'ECE cal.':>9}")
    for r in results:
        print(f"{r['mode']:>5} {r['seed']:>4} {100 * r['test_accuracy']:8.2f}% "
              f"{100 * r['test_ece']:6.2f}% {100 * r['test_ece_calibrated']:8.2f}%")
    if "emb" in args.modes.split(","):
        print("\nnearest categories (label embedding, seed %d):" % seeds_of(args.seeds)[0])
        print_nearest(Path(args.out) / "emb" / f"seed-{seeds_of(args.seeds)[0]}", data.names)


if __name__ == "__main__":
    main()
