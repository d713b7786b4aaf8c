"""Transformers' own common model tests (``ModelTesterMixin``, ``ConfigTester``), taken from
the source package of the *installed* transformers version.

``scripts/setup.sh --dev`` unpacks that package's ``tests/`` into
``~/.cache/labelemb/transformers-<version>/tests`` (``$LABELEMB_TRANSFORMERS_TESTS`` overrides
the folder). :func:`load` imports it as the package ``transformers_upstream_tests``; without
it, the calling test module is skipped, naming the command that fetches it.

The source package lacks three modules ``test_modeling_common`` and
``test_configuration_common`` import; they are stood in for here, each with what our use
needs:

* ``exporters.test_export.ExportTesterMixin``: an empty mixin. Its ``torch.export`` / ONNX
  tests do not run.
* ``generation.test_utils.GenerationTesterMixin``: an empty class, so that the mixin's
  ``test_generation_tester_mixin_inheritance`` checks a model that cannot ``generate`` does
  not inherit it. A generative model's tester needs the real one (not in the package).
* ``utils.test_configuration_utils.config_common_kwargs``: ``{}``; ``ConfigTester`` reads it
  only for configs without sub-configs.

Use::

    from transformers_suite import load
    suite = load()   # or pytest.skip(...) of the calling module
    class MyTest(suite.ModelTesterMixin, unittest.TestCase): ...
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path

import pytest
import transformers

__all__ = ["PACKAGE", "VERSION", "suite_dir", "load"]

VERSION = transformers.__version__
#: the import name of the source package's tests/ (not ``tests``: that is ours)
PACKAGE = "transformers_upstream_tests"
FETCH = "scripts/setup.sh --dev"


def suite_dir() -> Path:
    """The unpacked ``tests/`` of the installed version's source package."""
    override = os.environ.get("LABELEMB_TRANSFORMERS_TESTS")
    if override:
        return Path(override)
    return Path.home() / ".cache" / "labelemb" / f"transformers-{VERSION}" / "tests"


def _stand_in(name: str, **attributes: object) -> None:
    """Registers ``PACKAGE.name`` (and its parent packages) with ``attributes``."""
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        full = ".".join([PACKAGE, *parts[:i]])
        module = sys.modules.setdefault(full, types.ModuleType(full))
        if i < len(parts):
            module.__path__ = []  # a package
    vars(module).update(attributes)


def load() -> types.SimpleNamespace:
    """``ModelTesterMixin``, ``ConfigTester`` and the suite's helpers (``ids_tensor``,
    ``random_attention_mask``, ``floats_tensor``, ``_config_zero_init``), or a skip of the
    calling module when the suite is not fetched."""
    folder = suite_dir()
    if not (folder / "test_modeling_common.py").is_file():
        pytest.skip(f"transformers {VERSION}'s own tests are not in {folder}: run {FETCH}",
                    allow_module_level=True)
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(folder)]
        sys.modules[PACKAGE] = package
        _stand_in("exporters.test_export", ExportTesterMixin=type("ExportTesterMixin", (), {}))
        _stand_in("generation.test_utils",
                  GenerationTesterMixin=type("GenerationTesterMixin", (), {}))
        _stand_in("utils.test_configuration_utils", config_common_kwargs={})
    modeling = importlib.import_module(f"{PACKAGE}.test_modeling_common")
    configuration = importlib.import_module(f"{PACKAGE}.test_configuration_common")
    return types.SimpleNamespace(
        ModelTesterMixin=modeling.ModelTesterMixin, ConfigTester=configuration.ConfigTester,
        ids_tensor=modeling.ids_tensor, random_attention_mask=modeling.random_attention_mask,
        floats_tensor=modeling.floats_tensor, _config_zero_init=modeling._config_zero_init,
        modeling=modeling, configuration=configuration)
