"""The unedited baseline: the papers' Base / Backbone Model row, scored like any editor.

    >>> from mmedit_lib.editors.unedited import SPEC
    >>> SPEC.apply(None, None, NoHparams(), None).restored
    False
"""
from __future__ import annotations

import dataclasses

from .base import NoEdit
from .spec import EditorSpec


@dataclasses.dataclass
class NoHparams:
    """The unedited baseline has no hyperparameters."""


def apply_unedited(bb, request, hp: NoHparams, prepared=None) -> NoEdit:
    return NoEdit()


SPEC = EditorSpec("unedited", NoHparams, apply_unedited, label="Backbone Model", short_label="Base",
                  changes_model=False, summary="no edit: the papers' Base / Backbone Model row")
