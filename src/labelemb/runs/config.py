"""The settings every run shares, declared once, and the training modes.

Each training task's config (:class:`labelemb.engine.classification.TrainConfig`,
:class:`labelemb.engine.seq2seq.TrainConfig`) subclasses :class:`RunSettings` and adds only its
own fields; the command line is generated from the fields (:mod:`labelemb.commands.options`).
``None`` means "the task's recipe" (the dataset's or seq2seq task's defaults), filled in by
:meth:`RunSettings.filled`: every default is written once, in the field or in the recipe.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from torch import nn

from ..functional import PRESETS
from .settings import check_ranges, parse_int_list, parse_names, parse_seeds, setting

__all__ = ["Mode", "MODES", "RunSettings", "LOSS_FLAGS"]


@dataclass(frozen=True)
class Mode:
    """What one training mode needs; every difference between modes is a field here."""

    help: str
    label_embedding: bool = False  # a trainable embedding: the second head, embedding.safetensors
    fixed_embedding: bool = False  # a frozen embedding from --embedding (eq. 17), no second head
    epoch_hook: Callable[[nn.Module], None] | None = None  # called on the criterion per epoch

    @property
    def uses_loss_options(self) -> bool:
        """Whether the criterion takes :data:`LOSS_FLAGS` (--tau, --beta, ...)."""
        return self.label_embedding or self.fixed_embedding


MODES: dict[str, Mode] = {
    "baseline": Mode("cross-entropy on the main head"),
    "emb": Mode("label embedding network: learned embedding, two output layers",
                label_embedding=True),
    "emb-fixed": Mode("frozen embedding of an earlier emb run (eq. 17), no second head",
                      fixed_embedding=True),
    "ls": Mode("label smoothing (--smoothing)"),
    # OLS swaps in the soft labels it gathered once per epoch, after the last batch.
    "ols": Mode("online label smoothing (--ols-alpha)", epoch_hook=lambda c: c.next_epoch()),
}

#: The loss options exposed as flags; the others keep the task's preset.
LOSS_FLAGS = ("beta", "tau", "alpha", "hinge", "warmup_steps", "soft_target_temperature")

_PRESET = "the task's preset (classification: {c}; seq2seq: {s})"


def _preset_text(option: str) -> str:
    return _PRESET.format(c=getattr(PRESETS["classification"], option),
                          s=getattr(PRESETS["seq2seq"], option))


def _modes(text: str) -> list[str]:
    return parse_names(text, MODES, "--modes")


C = TypeVar("C", bound="RunSettings")


@dataclass(kw_only=True)
class RunSettings:
    """The settings of every task: the runs, the optimisation, the loss options, where it
    runs. A task config adds its own fields after these."""

    # --mode is the authors' spelling (cnn.py --mode=emb): one mode, or a list as --modes.
    modes: list[str] = setting(["baseline", "emb"], "comma-separated, from "
                               + "; ".join(f"{k}: {m.help}" for k, m in MODES.items()),
                               flags=("--modes", "--mode"), parse=_modes)
    seeds: list[int] = setting([0], "e.g. 0-19 or 0,3,5", parse=parse_seeds)
    out: str | None = setting(None, "output folder, one OUT/<mode>/seed-<k>/ per run",
                              flags=("--out", "-o"), default_text="the task's",
                              on_resume=True)
    epochs: int | None = setting(None, "training epochs", default_text="the recipe",
                                 on_resume=True, at_least=1)
    max_steps: int | None = setting(None, "stop after N updates, or at --epochs if sooner",
                                    on_resume=True, at_least=1)
    eval_every: int | None = setting(None, "updates between evaluations and checkpoints",
                                     default_text="the recipe; classification: each epoch",
                                     on_resume=True, at_least=1)
    batch_size: int | None = setting(None, "examples per update", default_text="the recipe",
                                     at_least=1)
    accumulate: int = setting(
        1, "split each batch into N micro-batches (gradient accumulation): the same update in "
        "about 1/N of the activation memory", on_resume=True, at_least=1)
    lr: float | None = setting(None, "Adam learning rate", default_text="the recipe", above=0)
    lr_milestones: list[int] | None = setting(
        None, "epochs after which the lr is multiplied by --lr-gamma, e.g. 40,80 or none",
        parse=parse_int_list, default_text="the recipe")
    lr_gamma: float = setting(0.2, "lr factor at each milestone", above=0)
    clip_norm: float | None = setting(None, "clip the gradient norm at N (0: no clipping)",
                                      default_text="the recipe", at_least=0)
    smoothing: float = setting(0.1, "ls: label smoothing epsilon", at_least=0, below=1)
    ols_alpha: float = setting(0.5, "ols: weight of the hard cross-entropy", at_least=0,
                               at_most=1)
    # The loss options of emb and emb-fixed; None keeps the task's preset.
    beta: float | None = setting(None, "emb: weight of the hard ce term (soft_ce gets 1 - beta)",
                                 default_text=_preset_text("beta"), at_least=0, at_most=1)
    tau: float | None = setting(None, "emb: temperature of the second head's output that the "
                                "embedding fits", default_text=_preset_text("tau"), above=0)
    alpha: float | None = setting(None, "emb: hinge threshold on the second head's gold "
                                  "probability", default_text=_preset_text("alpha"),
                                  at_least=0, at_most=1)
    hinge: str | None = setting(None, "emb: hinge form", choices=("l1", "l2", "abs"),
                                default_text=_preset_text("hinge"))
    warmup_steps: int | None = setting(None, "emb: updates before the soft target counts",
                                       default_text=_preset_text("warmup_steps"), at_least=0)
    soft_target_temperature: float | None = setting(
        None, "emb: the main head's soft target is softmax(e / T); below 1 sharpens it",
        default_text=_preset_text("soft_target_temperature"), above=0)
    threads: int | None = setting(
        None, "CPU threads for torch; 1 is much faster on a machine shared with other jobs. "
        "Results are bit-identical only for the same thread count", on_resume=True,
        default_text="torch's choice", at_least=1)
    device: str | None = setting(None, "cpu, cuda, cuda:1", default_text="cuda if available",
                                 on_resume=True)
    resume: bool = setting(False, "continue runs from their checkpoint.pt (settings must be "
                           "unchanged; a larger --epochs or --max-steps extends finished runs)",
                           on_resume=True)
    overwrite: bool = setting(False, "delete existing runs in OUT and start them again",
                              on_resume=True)

    @classmethod
    def from_any(cls: type[C], obj: "C | argparse.Namespace | dict") -> C:
        """A copy of ``obj``: a config, the parsed flags, or a dict (unknown keys refused)."""
        if isinstance(obj, cls):
            return dataclasses.replace(obj)
        d = vars(obj) if isinstance(obj, argparse.Namespace) else dict(obj)
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(obj, argparse.Namespace) and set(d) - names:
            raise TypeError(f"unknown training setting(s) {sorted(set(d) - names)}")
        return cls(**{k: v for k, v in d.items() if k in names})

    def filled(self: C, recipe: dict[str, Any], modes: tuple[str, ...]) -> C:
        """A copy with each ``None`` setting that ``recipe`` has taken from it, checked:
        the ranges the fields declare, and ``modes`` the task supports."""
        c = dataclasses.replace(self)
        for k, v in recipe.items():
            if getattr(c, k) is None:
                setattr(c, k, list(v) if isinstance(v, list) else v)
        c.modes, c.seeds = _modes(c.modes), parse_seeds(c.seeds)
        unsupported = [m for m in c.modes if m not in modes]
        if unsupported:
            raise ValueError(f"--modes: {', '.join(unsupported)} not available for this task; "
                             f"choose from {', '.join(modes)}")
        check_ranges(c)
        if not math.isfinite(c.lr):  # ranges refuse NaN; inf is "> 0" but trains nothing
            raise ValueError(f"--lr must be a finite number > 0, got {c.lr!r}")
        return c

    def loss_options(self) -> dict[str, Any]:
        """The loss options set on the command line; the others keep the preset's values."""
        return {k: getattr(self, k) for k in LOSS_FLAGS if getattr(self, k) is not None}

    def run_settings(self, mode: str, seed: int) -> dict[str, Any]:
        """The settings of one ``(mode, seed)`` run, as ``config.json`` records them."""
        d = dataclasses.asdict(self)
        del d["modes"], d["seeds"]
        return {**d, "mode": mode, "seed": seed}
