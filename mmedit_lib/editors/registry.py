"""The editor registry: a flat table of names -> (hparams dataclass, apply function, what the method supports).

    >>> sorted(EDITORS)
    ['balancedit', 'ft-last', 'ft-vision', 'grace', 'ike', 'ke', 'mend', 'mend-vision', 'serac', 't-patcher', 'unedited', 'unike']
    >>> editor = make_editor("ft-last", steps=10)
    >>> editor.hparams.steps
    10
    >>> make_editor("mend").hparams.steps, make_editor("mend", backbone="tiny-blip2-opt").hparams.steps
    (100000, 800)

Each method is one module with a `SPEC` (`spec.EditorSpec`): its hparams dataclass, a plain
`apply(backbone, request, hparams, prepared) -> Edit` (ROME-style), and for methods that train something first
(MEND, SERAC, UniKE's memory...) `prepare(backbone, train, hparams) -> prepared`, given the train split as cases
(never the eval cases); `Editor.prepare` caches what it returns on disk (`prepared.py`), keyed by the hparams its
SPEC says `prepare` reads. The table is `BUILTIN`'s modules, then those `$MMEDIT_PLUGINS` names (`load_plugins`):
an editor of your own is one module on the Python path, nothing else to change.
Hparams: the dataclass holds the paper's defaults; `hparams/<backbone>.yaml` the values a backbone needs
instead, each with its reason; explicit overrides win over both.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Callable

import yaml

from .. import plugins
from ..plugins import defined
from .base import Edit, EditRequest
from .spec import EditorSpec

HPARAMS_DIR = Path(__file__).with_name("hparams")
# the package's editor modules, each with a SPEC (or SPECS); the table's order is the reports' row order
BUILTIN = ("unedited", "ft", "ke", "mend", "tpatcher", "ike", "serac", "unike", "grace", "balancedit")

EDITORS: dict[str, EditorSpec] = {}


def specs_of(module) -> tuple[EditorSpec, ...]:
    """The editor specs a module defines: `SPECS`, or `SPEC`, or none."""
    return defined(module, "SPEC", "SPECS")


def register(spec: EditorSpec) -> EditorSpec:
    """Add `spec` to the table (ValueError when another editor already has its name)."""
    if not isinstance(spec, EditorSpec):
        raise TypeError(f"register takes an EditorSpec, got {type(spec).__name__}")
    if spec.name in EDITORS and EDITORS[spec.name] is not spec:
        raise ValueError(f"two editors are named {spec.name!r}: {EDITORS[spec.name].apply.__module__} and "
                         f"{spec.apply.__module__}")
    EDITORS[spec.name] = spec
    return spec


def load_plugins(names: str | None = None) -> list[str]:
    """Import the modules `names` lists (default `$MMEDIT_PLUGINS`, see `plugins`), registering the SPECs they
    define; the modules imported (their benchmarks: `data.benchmarks.load_plugins`).

        >>> load_plugins("")
        []
    """
    return plugins.load("SPEC", "SPECS", register, names)


class SpecTable(Mapping):
    """editor -> one thing its spec says, read live (so an editor registered later is in it too).

        >>> SpecTable(lambda spec: spec.label)["ft-last"]
        'FT (last layer)'
    """

    def __init__(self, read: Callable[[EditorSpec], Any]):
        self._read = read

    def __getitem__(self, name: str):
        if name not in EDITORS:
            raise KeyError(f"unknown editor {name!r}; known: {', '.join(sorted(EDITORS))}")
        return self._read(EDITORS[name])

    def __iter__(self):
        return iter(list(EDITORS))

    def __len__(self) -> int:
        return len(EDITORS)


LABELS = SpecTable(lambda spec: spec.label)  # row names of MMEdit Table 2 and UniKE Table 1
SHORT_LABELS = SpecTable(lambda spec: spec.row_label)  # of UniKE Tables 2, 3, 5 and BalancEdit ("FT", "IKE", "Base")
SMOKE_HPARAMS = SpecTable(lambda spec: spec.smoke)  # CI's smoke runs train each prepare for seconds, not minutes


class Editor:
    """A registered method with its hparams (and whatever `prepare` built, with how long that took)."""

    def __init__(self, spec: EditorSpec, hparams):
        self.spec, self.hparams, self.prepared = spec, hparams, None
        self.prepare_meta: dict = {"prepare_seconds": 0.0, "cached": False}

    @property
    def name(self) -> str:
        return self.spec.name

    def prepare_key(self, backbone, train) -> dict:
        from ..backbones.backbone import state_hash
        from .base import records_of
        from .prepared import records_digest
        values = dataclasses.asdict(self.hparams)
        fields = {k: values[k] for k in self.spec.prepare_fields}
        return {"editor": self.name, "hparams": fields, "backbone_sha256": state_hash(backbone.model),
                "train": records_digest(records_of(train))}

    def prepare(self, backbone, train, cache_dir=None) -> None:
        """Build (or load from `cache_dir`) what the method trains on `train`, the train split as cases."""
        if self.spec.prepare is None:
            return
        from .prepared import cache_path, load_or_build
        key = self.prepare_key(backbone, train)
        path = cache_path(cache_dir, self.name, backbone.name, key) if cache_dir is not None else None
        self.prepared, self.prepare_meta = load_or_build(path, key, lambda: self._seeded_prepare(backbone, train))

    def _seeded_prepare(self, backbone, train):
        """`spec.prepare` from its own seed (the hparams' `seed`, else 0), the global RNG left as it was: what it
        builds does not depend on what ran before it in the process, nor what runs after on whether it was cached."""
        import torch
        cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(getattr(self.hparams, "seed", 0))
            return self.spec.prepare(backbone, train, self.hparams)

    def edit(self, backbone, request: EditRequest) -> Edit:
        if self.spec.prepare is not None and self.prepared is None:
            raise RuntimeError(f"{self.name} needs prepare(backbone, train) before it can edit")
        return self.spec.apply(backbone, request, self.hparams, self.prepared)


def get_spec(name: str) -> EditorSpec:
    if name not in EDITORS:
        raise ValueError(f"unknown editor {name!r}; known: {', '.join(sorted(EDITORS))}")
    return EDITORS[name]


@functools.lru_cache(maxsize=None)
def backbone_hparams(backbone: str) -> dict:
    """editor -> hparams for `backbone` from `hparams/<backbone>.yaml` (empty when the file does not exist)."""
    path = HPARAMS_DIR / f"{backbone}.yaml"
    if not path.exists():
        return {}
    table = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(table) - set(EDITORS))
    if unknown:
        raise ValueError(f"{path}: unknown editor(s) {', '.join(unknown)}")
    return table


def make_hparams(name: str, backbone: str | None = None, **overrides):
    """The method's hparams: paper defaults, then `backbone`'s hparams file, then `overrides` (ValueError naming
    the fields on an unknown one, a value of the wrong type, or one its `check()` refuses)."""
    from ..overrides import defaults_of, typed
    cls = get_spec(name).hparams
    values = {**(backbone_hparams(backbone).get(name, {}) if backbone else {}), **overrides}
    hparams = cls(**typed(name, defaults_of(cls), values))
    if hasattr(hparams, "check"):  # value checks (choices, ranges): a bad value fails here, before any run starts
        hparams.check()
    return hparams


def sequential_problem(name: str, hparams) -> str | None:
    """Why editor `name` with `hparams` cannot keep several edits at once (its registry entry, else the hparams'
    own `sequential_problem()`); None when it can."""
    if not get_spec(name).sequential:
        return f"keeps one edit at a time: {get_spec(name).one_at_a_time}"
    return getattr(hparams, "sequential_problem", lambda: None)()


def make_editor(name: str, backbone: str | None = None, **overrides) -> Editor:
    return Editor(get_spec(name), make_hparams(name, backbone, **overrides))


# the table: the package's editors, then the plugins' (last, so that a plugin can import this module whole)
for _module in BUILTIN:
    for _spec in specs_of(importlib.import_module(f".{_module}", __package__)):
        register(_spec)
load_plugins()
