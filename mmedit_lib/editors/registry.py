"""The editor registry: a flat table of names -> (hparams dataclass, apply function, what the method supports).

    >>> sorted(EDITORS)
    ['balancedit', 'ft-last', 'ft-vision', 'grace', 'ike', 'ke', 'mend', 'mend-vision', 'serac', 't-patcher', 'unedited', 'unike']
    >>> editor = make_editor("ft-last", steps=10)
    >>> editor.hparams.steps
    10
    >>> make_editor("mend").hparams.steps, make_editor("mend", backbone="tiny-blip2-opt").hparams.steps
    (100000, 800)

Each method is a plain `apply(backbone, request, hparams, prepared) -> Edit` (ROME-style); methods that train
something first (MEND, SERAC, UniKE's memory...) add `prepare(backbone, train, hparams) -> prepared`, given the
train split as cases (never the eval cases); `Editor.prepare` caches what it returns on disk (`prepared.py`).
Hparams: the dataclass holds the paper's defaults; `hparams/<backbone>.yaml` the values a backbone needs
instead, each with its reason; explicit overrides win over both.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Callable

import yaml

from .balancedit import BalancEditHparams, apply_balancedit
from .base import Edit, EditRequest, NoEdit
from .ft import FTHparams, FTVisionHparams, apply_ft
from .grace import GRACEHparams, apply_grace
from .ike import IKEHparams, apply_ike, prepare_ike
from .ke import KEHparams, apply_ke, prepare_ke
from .mend import MENDHparams, MENDVisionHparams, apply_mend, prepare_mend
from .serac import SERACHparams, apply_serac, prepare_serac
from .tpatcher import TPatcherHparams, apply_tpatcher, prepare_tpatcher
from .unike import PREPARE_FIELDS as UNIKE_PREPARE_FIELDS, UniKEHparams, apply_unike, prepare_unike

HPARAMS_DIR = Path(__file__).with_name("hparams")


@dataclasses.dataclass(frozen=True)
class EditorSpec:
    name: str
    hparams: type
    apply: Callable[..., Edit]
    prepare: Callable[..., Any] | None = None
    sequential: bool = True  # edits can stay applied while more are made (sequential editing)
    changes_model: bool = True  # False only for the unedited baseline
    summary: str = ""
    prepare_fields: tuple[str, ...] | None = None  # hparams `prepare` reads (None: all of them)


@dataclasses.dataclass
class NoHparams:
    """The unedited baseline has no hyperparameters."""


def _ft(bb, req, hp, prepared):
    return apply_ft(bb, req, hp)


EDITORS: dict[str, EditorSpec] = {s.name: s for s in [
    EditorSpec("unedited", NoHparams, lambda bb, req, hp, prepared: NoEdit(), changes_model=False,
               summary="no edit: the papers' Base / Backbone Model row"),
    EditorSpec("ft-last", FTHparams, _ft,
               summary="fine-tune the language model's last decoder layer (MMEdit, UniKE)"),
    EditorSpec("ft-vision", FTVisionHparams, _ft, summary="fine-tune the ViT's last block (MMEdit's FT vision block)"),
    EditorSpec("ke", KEHparams, apply_ke, prepare_ke,
               summary="Knowledge Editor: a BiLSTM hypernetwork predicts the update from the gradient"),
    EditorSpec("mend", MENDHparams, apply_mend, prepare_mend,
               summary="MEND: editor networks on the gradient factors of the last three FFNs"),
    EditorSpec("mend-vision", MENDVisionHparams, apply_mend, prepare_mend,
               summary="MEND on the vision module: the last ViT block's and Q-Former layer's FFN"),
    EditorSpec("t-patcher", TPatcherHparams, apply_tpatcher, prepare_tpatcher,
               summary="T-Patcher: one trained patch neuron per target token in the last FFN",
               prepare_fields=("layers", "memory_size", "memory_cases", "seed")),
    EditorSpec("ike", IKEHparams, apply_ike, prepare_ike, sequential=False,
               summary="IKE: k retrieved demonstrations and the new fact before every query",
               prepare_fields=("kinds",)),
    EditorSpec("serac", SERACHparams, apply_serac, prepare_serac,
               summary="SERAC: edit memory, scope classifier, counterfactual model",
               prepare_fields=("classifier_hidden", "classifier_epochs", "classifier_lr", "cf_steps", "cf_batch",
                               "cf_lr", "counterfactual", "cf_layers", "small_model", "seed")),
    EditorSpec("unike", UniKEHparams, apply_unike, prepare_unike,
               summary="UniKE: extra FFN key-value pairs + latent in-context memory, collaborating via ζ and α",
               prepare_fields=UNIKE_PREPARE_FIELDS),
    EditorSpec("grace", GRACEHparams, apply_grace,
               summary="GRACE: a key-value codebook at the last FFN output; values replace the output within ε"),
    EditorSpec("balancedit", BalancEditHparams, apply_balancedit,
               summary="BalancEdit: codebook of fine-tuned layer copies; radius from positive and black-image "
                       "negative samples"),
]}


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
        fields = dataclasses.asdict(self.hparams)
        if self.spec.prepare_fields is not None:
            fields = {k: fields[k] for k in self.spec.prepare_fields}
        return {"editor": self.name, "hparams": fields, "backbone_sha256": state_hash(backbone.model),
                "train": records_digest(records_of(train))}

    def prepare(self, backbone, train, cache_dir=None) -> None:
        """Build (or load from `cache_dir`) what the method trains on `train`, the train split as cases."""
        if self.spec.prepare is None:
            return
        from .prepared import cache_path, load_or_build
        key = self.prepare_key(backbone, train)
        path = cache_path(cache_dir, self.name, backbone.name, key) if cache_dir is not None else None
        self.prepared, self.prepare_meta = load_or_build(
            path, key, lambda: self.spec.prepare(backbone, train, self.hparams))

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
    cls = get_spec(name).hparams
    values = {**(backbone_hparams(backbone).get(name, {}) if backbone else {}), **overrides}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{name} has no hparam(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    defaults = cls()
    typed = {}
    for key, value in values.items():
        default = getattr(defaults, key)
        if isinstance(default, tuple):
            value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
            kinds = {type(v) for v in default}
            if kinds and not all(type(v) in kinds for v in value):
                raise ValueError(f"{name}.{key} takes a list of {'/'.join(sorted(k.__name__ for k in kinds))}, "
                                 f"got {value!r}")
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif type(default) is not type(value):
            raise ValueError(f"{name}.{key} takes {type(default).__name__}, got {value!r}")
        typed[key] = value
    hparams = cls(**typed)
    if hasattr(hparams, "check"):  # value checks (choices, ranges): a bad value fails here, before any run starts
        hparams.check()
    return hparams


def sequential_problem(name: str, hparams) -> str | None:
    """Why editor `name` with `hparams` cannot keep several edits at once (its registry entry, else the hparams'
    own `sequential_problem()`); None when it can."""
    if not get_spec(name).sequential:
        return "keeps one edit at a time (the registry's `sequential=False`)"
    return getattr(hparams, "sequential_problem", lambda: None)()


def make_editor(name: str, backbone: str | None = None, **overrides) -> Editor:
    return Editor(get_spec(name), make_hparams(name, backbone, **overrides))
