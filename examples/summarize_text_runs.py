"""The study table of ``examples/hf_text_classification.py`` runs: mean ± std over seeds.

    python examples/summarize_text_runs.py runs/fortunes-hf
    python examples/summarize_text_runs.py runs/study-fortunes runs/study-fortunes-sharp

Every figure is recomputed from each run's saved dev and test logits (``predictions.pt``):
test accuracy, ECE raw and after temperature scaling fitted on dev (``labelemb.calibration``).
The p-values compare test accuracy with ``ce``: Welch's t-test over seeds (as ``labelemb
report`` does) and a paired t-test over the seeds both have (the same seed is the same initial
weights, tokenizer and data order for every loss).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from scipy.stats import ttest_ind, ttest_rel

from labelemb.calibration import calibration_metrics, fit_temperature
from labelemb.report.summary import mean_std

MODES = ("ce", "ls", "ols", "emb")
NAMES = {"ce": "cross-entropy", "ls": "label smoothing 0.1", "ols": "online label smoothing",
         "emb": "label embedding"}


def run_figures(run: Path) -> dict[str, float]:
    """Accuracy, raw and calibrated ECE (fractions) of one finished run, from its logits."""
    p = torch.load(run / "predictions.pt", weights_only=True)
    test = (p["test_logits"], p["test_labels"])
    temperature = fit_temperature(p["dev_logits"], p["dev_labels"])
    raw = calibration_metrics(*test)
    calibrated = calibration_metrics(*test, temperature=temperature)
    # No training time: on this shared machine wall time measures the other jobs as much.
    return {"accuracy": 1 - raw["error"], "ece": raw["ece"], "ece_cal": calibrated["ece"],
            "temperature": temperature}


def mode_of(result: dict, folder: str) -> str:
    """The loss, then the loss options the run changed (``emb soft_target_temperature=0.5``)."""
    options = (result.get("settings") or {}).get("loss_options") or {}
    return " ".join([result.get("mode", folder), *(f"{k}={v}" for k, v in sorted(options.items()))])


def collect(roots: list[Path]) -> dict[str, dict[int, dict[str, float]]]:
    """``{mode: {seed: figures}}`` for every finished run under each of ``roots``; a mode
    with one seed in two folders is an error (two studies would be pooled)."""
    out: dict[str, dict[int, dict[str, float]]] = {}
    for root in roots:
        for done in sorted(root.glob("*/seed-*/result.json")):
            mode = mode_of(json.loads(done.read_text(encoding="utf-8")), done.parent.parent.name)
            seed = int(done.parent.name.removeprefix("seed-"))
            if seed in out.get(mode, {}):
                raise SystemExit(f"error: {mode} seed {seed} is in two folders; one per study")
            out.setdefault(mode, {})[seed] = run_figures(done.parent)
    return out


def _pm(values: list[float], scale: float = 100.0) -> str:
    mean, std = mean_std([scale * v for v in values])
    return f"{mean:.2f}" + ("" if std is None else f" ± {std:.2f}")


def table(runs: dict[str, dict[int, dict[str, float]]]) -> str:
    lines = ["| loss | test accuracy (%) | vs CE (points) | p Welch | p paired | ECE (%) "
             "| ECE calibrated (%) | T | n |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base = runs.get("ce", {})
    for mode in [m for m in MODES if m in runs] + sorted(set(runs) - set(MODES)):
        seeds = sorted(runs[mode])
        col = {k: [runs[mode][s][k] for s in seeds] for k in runs[mode][seeds[0]]}
        paired = [s for s in seeds if s in base]
        delta = welch = p = ""
        if mode != "ce" and len(paired) > 1:
            a = [runs[mode][s]["accuracy"] for s in paired]
            b = [base[s]["accuracy"] for s in paired]
            delta = f"{100 * (sum(a) - sum(b)) / len(a):+.2f}"
            every_ce = [base[s]["accuracy"] for s in base]
            welch = f"{ttest_ind(col['accuracy'], every_ce, equal_var=False).pvalue:.3f}"
            p = f"{ttest_rel(a, b).pvalue:.3f}"
        name = f" ({NAMES[mode]})" if mode in NAMES else ""
        lines.append(f"| `{mode}`{name} | {_pm(col['accuracy'])} | {delta} "
                     f"| {welch} | {p} | {_pm(col['ece'])} | {_pm(col['ece_cal'])} "
                     f"| {_pm(col['temperature'], 1.0)} | {len(seeds)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="--out folders of hf_text_classification.py")
    print(table(collect([Path(r) for r in p.parse_args(argv).runs])), end="")


if __name__ == "__main__":
    main()
