"""Your own editors and benchmarks, from outside the package: modules named in `$MMEDIT_PLUGINS`.

    $ MMEDIT_PLUGINS=my_editor,my_benchmark PYTHONPATH=. python -m mmedit_lib run --editor mine --task my-task

A plugin module defines `SPEC` / `SPECS` (`editors.spec.EditorSpec`) and/or `BENCHMARK` / `BENCHMARKS`
(`data.benchmarks.Benchmark`); the editor and benchmark registries import the modules this names and register what
they define, so nothing inside the package changes. A module that cannot be imported is an error, never skipped.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

PLUGINS_ENV = "MMEDIT_PLUGINS"


def plugin_names(names: str | None = None) -> list[str]:
    """The module names in `names` (default `$MMEDIT_PLUGINS`), comma-separated.

        >>> plugin_names("a, b.c,")
        ['a', 'b.c']
    """
    text = os.environ.get(PLUGINS_ENV, "") if names is None else names
    return [n.strip() for n in text.split(",") if n.strip()]


def plugin_modules(names: str | None = None) -> list[ModuleType]:
    """The plugin modules, imported (ImportError naming the one that cannot be)."""
    modules = []
    for name in plugin_names(names):
        try:
            modules.append(importlib.import_module(name))
        except ImportError as error:
            raise ImportError(f"${PLUGINS_ENV} names {name!r}, which cannot be imported: {error}") from error
    return modules


def defined(module: ModuleType, one: str, many: str) -> tuple:
    """What a module defines under `many` (a sequence) or `one` (a single object), or ()."""
    return tuple(getattr(module, many, ())) or ((getattr(module, one),) if hasattr(module, one) else ())


def load(one: str, many: str, register, names: str | None = None) -> list[str]:
    """`register` each object the plugin modules define under `one` / `many` (e.g. "SPEC" / "SPECS"); the modules
    imported, by name."""
    modules = plugin_modules(names)
    for module in modules:
        for item in defined(module, one, many):
            register(item)
    return [m.__name__ for m in modules]
