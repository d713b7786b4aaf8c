"""What the language-model examples share: the study's command line, its loop over seeds and
losses (a run whose ``result.json`` exists is skipped), and the one tokenizer of a study.

Not a public API: the examples import it by path (they run as scripts from this folder).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from transformers import PreTrainedTokenizerFast

from labelemb.atomic import atomic_write_text
from labelemb.hf.lm_text import train_bpe_tokenizer


@dataclass(frozen=True)
class LMRecipe:
    """Everything that is the same for every loss: model size and training schedule (each
    example adds its own fields)."""

    vocab_size: int = 8000
    max_length: int = 64
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    epochs: float = 1
    batch_size: int = 32
    lr: float = 1e-3
    label_dim: int = 100
    emb_warmup: float = 0.25  # emb: the share of the training steps before soft_ce counts
    train_subset: int | None = None  # the first N training examples (for --smoke)

    def wrap(self, wrapper: type, model, mode: str, examples: int):
        """``wrapper.from_model(model)`` for the loss ``mode``, without logits beside the loss;
        ``emb``'s soft target counts after ``emb_warmup`` of the steps ``examples`` make."""
        steps = math.ceil(examples / self.batch_size) * self.epochs
        options = {"warmup_steps": int(self.emb_warmup * steps)} if mode == "emb" else {}
        return wrapper.from_model(model, loss=mode, label_dim=self.label_dim,
                                  logits_with_loss=False, **options)

    def trainer_settings(self, out: Path, seed: int) -> dict:
        """The ``TrainingArguments`` every example shares: the schedule, no saving, no eval."""
        return dict(output_dir=str(out / "trainer"), num_train_epochs=self.epochs,
                    per_device_train_batch_size=self.batch_size, learning_rate=self.lr,
                    warmup_steps=0.05, lr_scheduler_type="linear", weight_decay=0.01,
                    seed=seed, eval_strategy="no", save_strategy="no",
                    logging_strategy="epoch", report_to=[],
                    use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
                    disable_tqdm=True)


def study_parser(description: str, out: str, modes: str, losses: str = "ce, ls, emb"
                 ) -> argparse.ArgumentParser:
    """The flags every example takes (the text classifier's too); it adds its own."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", required=True, help="the data folder")
    p.add_argument("--out", default=out, help="where the runs go")
    p.add_argument("--modes", default=modes, type=_modes_among(losses),
                   help=f"comma-separated: {losses}")
    p.add_argument("--seeds", default="0", type=_seeds, help="e.g. 0 or 0-2 or 0,3")
    p.add_argument("--smoke", action="store_true", help="tiny model and data, 1 epoch")
    p.add_argument("--epochs", type=float, default=None, help="override the recipe's epochs")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return p


def seeds_of(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def _seeds(text: str) -> str:
    """``--seeds``, checked before any training (``3-1`` would be no seed at all)."""
    try:
        seeds = seeds_of(text)
    except ValueError:
        seeds = []
    if not seeds:
        raise argparse.ArgumentTypeError(f"{text!r} names no seed (e.g. 0 or 0-2 or 0,3)")
    return text


def _modes_among(losses: str) -> Callable[[str], str]:
    """``--modes``' check: each a loss of ``losses`` (as the help lists them)."""
    allowed = [name.strip() for name in losses.split(",")]

    def check(text: str) -> str:
        for mode in text.split(","):
            if mode not in allowed:
                raise argparse.ArgumentTypeError(
                    f"unknown loss {mode!r} (choose from {', '.join(allowed)})")
        return text
    return check


def run_study(args: argparse.Namespace, recipe: LMRecipe,
              run_one: Callable[[str, int, Path], dict]) -> list[dict]:
    """``run_one(mode, seed, out)`` for each seed and mode, or its saved ``result.json`` when
    that run had this ``recipe`` (another recipe in the same ``--out`` is refused)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    wanted = json.loads(json.dumps(asdict(recipe)))  # as result.json holds it
    results = []
    for seed in seeds_of(args.seeds):
        for mode in args.modes.split(","):
            out = Path(args.out) / mode / f"seed-{seed}"
            done = out / "result.json"
            if not done.is_file():
                results.append(run_one(mode, seed, out))
                continue
            saved = json.loads(done.read_text())
            if saved.get("recipe") != wanted:
                raise SystemExit(f"{out} was trained with another recipe (--smoke or "
                                 "--epochs?): give another --out, or delete it")
            results.append(saved)
    return results


def report_fields(data: str, model: str, primary_metric: str, higher_is_better: bool,
                  recipe: LMRecipe) -> dict:
    """What ``labelemb report`` reads from a run's ``result.json`` to group and compare it:
    the data set (the data folder's name), the model, the primary measure and the settings."""
    return {"task": "language-model", "dataset": Path(data).resolve().name, "model": model,
            "primary_metric": primary_metric, "higher_is_better": higher_is_better,
            "settings": asdict(recipe)}


def save_run(out: Path, model, tokenizer, result: dict) -> None:
    """The model and its tokenizer in ``out/model``, then ``result.json`` (last: "done")."""
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    # atomically: a run killed while writing leaves no half file that would stop the study
    atomic_write_text(out / "result.json", json.dumps(result, indent=2) + "\n")


def study_tokenizer(out: Path, texts: list[str], vocab_size: int, max_length: int
                    ) -> PreTrainedTokenizerFast:
    """The byte-level BPE tokenizer every run under ``out`` uses: trained once on ``texts``,
    kept in ``out/tokenizer`` (training is not reproducible across processes); it cuts at the
    model's ``max_length`` positions."""
    folder = Path(out) / "tokenizer"
    if (folder / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(folder)
    tokenizer = train_bpe_tokenizer(texts, vocab_size, model_max_length=max_length)
    tokenizer.save_pretrained(folder)
    return tokenizer
