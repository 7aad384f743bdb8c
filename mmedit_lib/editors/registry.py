"""The editor registry: a flat table of names -> (hparams dataclass, apply function, what the method supports).

    >>> sorted(EDITORS)
    ['ft-last', 'ft-vision', 'unedited']
    >>> editor = make_editor("ft-last", steps=10)
    >>> editor.hparams.steps
    10

Each method is a plain `apply(backbone, request, hparams, prepared) -> Edit` (ROME-style); methods that train
something first (MEND, SERAC, UniKE's memory...) add `prepare(backbone, train_records, image_root, hparams) ->
prepared`, given the train split's records (never the eval cases).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from .base import Edit, EditRequest, NoEdit
from .ft import FTHparams, FTVisionHparams, apply_ft


@dataclasses.dataclass(frozen=True)
class EditorSpec:
    name: str
    hparams: type
    apply: Callable[..., Edit]
    prepare: Callable[..., Any] | None = None
    sequential: bool = True  # edits can stay applied while more are made (sequential editing)
    changes_model: bool = True  # False only for the unedited baseline
    summary: str = ""


@dataclasses.dataclass
class NoHparams:
    """The unedited baseline has no hyperparameters."""


EDITORS: dict[str, EditorSpec] = {
    "unedited": EditorSpec("unedited", NoHparams, lambda bb, req, hp, prepared: NoEdit(), changes_model=False,
                           summary="no edit: the papers' Base / Backbone Model row"),
    "ft-last": EditorSpec("ft-last", FTHparams, lambda bb, req, hp, prepared: apply_ft(bb, req, hp),
                          summary="fine-tune the language model's last decoder layer (MMEdit, UniKE)"),
    "ft-vision": EditorSpec("ft-vision", FTVisionHparams, lambda bb, req, hp, prepared: apply_ft(bb, req, hp),
                            summary="fine-tune the ViT's last block (MMEdit's FT vision block)"),
}


class Editor:
    """A registered method with its hparams (and whatever `prepare` built)."""

    def __init__(self, spec: EditorSpec, hparams):
        self.spec, self.hparams, self.prepared = spec, hparams, None

    @property
    def name(self) -> str:
        return self.spec.name

    def prepare(self, backbone, train_records: list, image_root=None) -> None:
        if self.spec.prepare is not None:
            self.prepared = self.spec.prepare(backbone, train_records, image_root, self.hparams)

    def edit(self, backbone, request: EditRequest) -> Edit:
        return self.spec.apply(backbone, request, self.hparams, self.prepared)


def get_spec(name: str) -> EditorSpec:
    if name not in EDITORS:
        raise ValueError(f"unknown editor {name!r}; known: {', '.join(sorted(EDITORS))}")
    return EDITORS[name]


def make_hparams(name: str, **overrides):
    """The method's hparams dataclass with overrides; ValueError naming the fields on an unknown one."""
    cls = get_spec(name).hparams
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"{name} has no hparam(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    defaults = cls()
    typed = {}
    for key, value in overrides.items():
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
    return cls(**typed)


def make_editor(name: str, **overrides) -> Editor:
    return Editor(get_spec(name), make_hparams(name, **overrides))
