"""Saved models that load without ``import labelemb``: a loader module in the model's folder.

Transformers finds a model type it does not know through the config's ``auto_map``: each
Auto class named there is imported from a module file in the model's folder (run only with
``trust_remote_code=True``, as for any model with its own code). The module
:func:`write_loader` writes holds no code of its own, only imports from the installed
labelemb, so the folder loads with the installed version; without labelemb installed,
Transformers names the missing package.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["LOADER", "write_loader"]

#: the loader module's name (``LOADER.py`` in the model's folder)
LOADER = "labelemb_loader"


def write_loader(folder: str | os.PathLike, auto_classes: dict[str, type]) -> dict[str, str]:
    """Writes ``folder/LOADER.py`` importing each class of ``auto_classes`` (Auto class name,
    e.g. ``"AutoConfig"``, to the labelemb class it loads) and returns the config's
    ``auto_map`` for them."""
    lines = sorted({f"from {cls.__module__} import {cls.__name__}  # noqa: F401\n"
                    for cls in auto_classes.values()})
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    (path / f"{LOADER}.py").write_text(
        '"""Loads this model from the installed labelemb (pip install labelemb[hf])."""\n\n'
        + "".join(lines))
    return {auto: f"{LOADER}.{cls.__name__}" for auto, cls in auto_classes.items()}
