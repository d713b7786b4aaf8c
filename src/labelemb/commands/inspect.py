"""``labelemb inspect RUN_DIR [--classes ...] [--top-k 5] [--out DIR]``: a heatmap of the
learned label embedding and the most similar labels of each class (or of chosen words)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..atomic import atomic_write_text
from ..report.nearest import TOP_K
from ..runs.progress import log, progress
from .options import add_flag
from .outputs import make_out_folder

__all__ = ["register", "run", "inspect_run", "HEATMAP_MAX", "ALL_ROWS_MAX"]

#: without --classes, the heatmap shows every class up to this many (fortunes has 40), else
#: the first 15
HEATMAP_MAX = 50
#: without --classes/--words, nearest labels of every class up to this many (always for a full
#: embedding, whose C x C matrix exists anyway), else of the first 20 labels
ALL_ROWS_MAX = 1000


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="heatmap of a learned label embedding and the most similar labels",
        description=(
            "Heatmap of softmax(E) row by row (class names on both axes) and the top-k most "
            "similar labels of each class: the other labels with the largest weights in "
            "softmax(e_i). For a compressed embedding over a vocabulary, pass --words: only "
            "those rows are computed."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="a run directory with embedding.safetensors (or the .safetensors file)")
    p.add_argument("--classes", "--words", nargs="+", default=None, metavar="NAME_OR_INDEX",
                   dest="classes",
                   help="classes (or vocabulary words) to show: names, or indices where no "
                        "class has that name (default: all classes, up to 50 in the heatmap)")
    add_flag(p, "--top-k", type=int, default=TOP_K, help="neighbours per label")
    p.add_argument("--hide-diagonal", action="store_true",
                   help="blank each label's weight on itself in the heatmap, so the colours "
                        "span the similarities between different labels")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="the folder to write into, made if missing; files of an earlier inspect "
                        "there are replaced (default: RUN_DIR/inspect)")
    p.set_defaults(func=run)


def _embedding_path(run_dir: Path) -> tuple[Path, dict]:
    from ..runs.rundir import CONFIG, EMBEDDING, RUN_FORMAT, is_complete, read_json

    if run_dir.is_file():
        return run_dir, {}
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no such run directory: {run_dir}; pass a run folder or "
                                "its embedding.safetensors")
    config: dict = {}
    if (run_dir / CONFIG).is_file():
        config = read_json(run_dir / CONFIG)
        if config.get("model_type") == "labelemb":
            # A labelemb.hf model's save_pretrained folder: it saves embedding.safetensors with
            # the category names beside the Transformers files, whose config.json this is.
            config = {"mode": config.get("loss", "?")}
        elif config.get("run_format") != RUN_FORMAT:
            raise ValueError(
                f"{run_dir / CONFIG} has run_format {config.get('run_format')!r}; this labelemb "
                f"reads run_format {RUN_FORMAT}"
            )
        if config.get("run_format") == RUN_FORMAT and not is_complete(run_dir):
            log(f"warning: {run_dir} has no result.json: the embedding is from an unfinished run")
    path = run_dir / EMBEDDING
    if not path.is_file():
        mode = config.get("mode", "?")
        raise FileNotFoundError(
            f"{run_dir} has no {EMBEDDING} (mode {mode!r}); only label-embedding modes save one"
        )
    return path, config


def inspect_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                classes: list[str] | None = None, top_k: int = TOP_K,
                hide_diagonal: bool = False) -> dict[str, Path]:
    """Write ``heatmap.png``, ``nearest.md`` and ``nearest.json`` into ``out`` (default
    ``RUN_DIR/inspect``); returns their paths under ``heatmap``, ``markdown``, ``json``."""
    from ..embedding import CompressedLabelEmbedding, load_embedding
    from ..report.curves import save_figure
    from ..report.heatmap import plot_heatmap
    from ..report.nearest import (class_names_of, nearest_labels, nearest_to_json,
                                  nearest_to_markdown, resolve_classes, softmax_rows,
                                  special_labels)

    if top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {top_k}")
    run_dir = Path(run_dir)
    emb_path, config = _embedding_path(run_dir)
    embedding = load_embedding(emb_path, frozen=False)
    C = embedding.num_classes
    names = class_names_of(embedding)
    if embedding.class_names is None and config.get("class_names"):
        if len(config["class_names"]) == C:
            names = [str(n) for n in config["class_names"]]
    compressed = isinstance(embedding, CompressedLabelEmbedding)
    out = Path(out) if out is not None else (run_dir.parent if run_dir.is_file()
                                             else run_dir) / "inspect"

    selected = resolve_classes(names, classes) if classes else None
    make_out_folder(out, "heatmap.png and nearest.md/.json")
    # Special tokens (<pad>, <unk>, <s>, </s> head a vocabulary) are never a neighbour, and
    # the default picks skip them.
    specials = special_labels(names)
    ordinary = sorted(set(range(C)) - set(specials))
    if selected is not None:
        shown = rows = selected
    else:
        shown = ordinary if len(ordinary) <= HEATMAP_MAX else ordinary[:15]
        if len(ordinary) > HEATMAP_MAX:
            log(f"inspect: {C} classes; the heatmap shows 15 (choose with --classes/--words): "
                + ", ".join(names[i] for i in shown))
        if not compressed or C <= ALL_ROWS_MAX:
            rows = ordinary
        else:
            rows = ordinary[:20]
            log(f"inspect: compressed embedding over {C} labels; nearest labels of 20 of them "
                "(choose words with --words)")

    def bar(it):
        return progress(it, total=len(it), desc="embedding rows")

    near = nearest_labels(embedding, rows, k=top_k, names=names, progress=bar, exclude=specials)
    k = max((len(ns) for ns in near.values()), default=0)  # top_k, or fewer where C is small
    probs = softmax_rows(embedding, shown)[:, shown]
    kind = "compressed" if compressed else "full"
    title = f"softmax(E), {kind} label embedding" + (f": {config['dataset']}"
                                                       if config.get("dataset") else "")
    fig = plot_heatmap(probs, [names[i] for i in shown], title=title,
                       hide_diagonal=hide_diagonal)
    heatmap = save_figure(fig, out / "heatmap", formats=("png",))[0]
    md = atomic_write_text(out / "nearest.md", nearest_to_markdown(near, names, k))
    js = atomic_write_text(out / "nearest.json", nearest_to_json(near, names))
    return {"heatmap": heatmap, "markdown": md, "json": js}


def run(args: argparse.Namespace) -> int:
    paths = inspect_run(args.run_dir, args.out, args.classes, args.top_k, args.hide_diagonal)
    print(paths["markdown"].read_text(encoding="utf-8"), end="")
    for p in paths.values():
        log(f"wrote {p}")
    return 0
