"""What crosses the editor boundary: an `EditRequest` in, an `Edit` handle out whose `restore()` is bit-exact.

    >>> editor = make_editor("ft-last", steps=10)                       # doctest: +SKIP
    >>> editor.prepare(backbone, train_records, image_root)            # doctest: +SKIP
    >>> with editor.edit(backbone, request) as edit:                    # doctest: +SKIP
    ...     answers = backbone.greedy([request.query])
    >>> # leaving the block restored the backbone bit-exactly

`WeightEdit` saves the exact tensors it is about to change (clones, same dtype/device) and copies them back.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import torch

from ..backbones.backbone import Query
from .float32 import Float32Adam


@dataclasses.dataclass
class EditRequest:
    """One edit: the query whose answer must become `query.target`, and the record it came from (rephrases...)."""
    query: Query
    record: Any = None
    case_id: str = ""
    # A training rephrase of the edit prompt, templated like `query.prompt` (BalancEdit's positive sample): the
    # record's own (OKEDIT `train_rephrase`, MMEdit `rephrased_questions_train`) or the world's; "" when none.
    train_prompt: str = ""


class Edit:
    """A handle on an applied edit; `restore()` undoes it bit-exactly. Usable as a context manager."""
    restored: bool = False

    def restore(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "Edit":
        return self

    def __exit__(self, *exc) -> None:
        if not self.restored:
            self.restore()


def attached(bb, slot: str):
    """What an edit attached to `bb` in `slot` (None when nothing is)."""
    return bb.attached.get(slot)


def set_attached(bb, slot: str, value) -> None:
    """Attach `value` in `slot` (None: detach)."""
    if value is None:
        bb.attached.pop(slot, None)
    else:
        bb.attached[slot] = value


@contextlib.contextmanager
def set_aside(bb, slot: str):
    """`slot` is empty while inside and holds what it held on exit, whatever happens (an editor reading or
    training the layer an attached codebook rewrites)."""
    previous = attached(bb, slot)
    set_attached(bb, slot, None)
    try:
        yield
    finally:
        set_attached(bb, slot, previous)


class SlotEdit(Edit):
    """An edit that attaches `value` to the backbone in `slot` (`bb.attached`: "router", "codebook",
    "latent_memory", or a new editor's own) until `restore()`, which puts the previous value back; edits in a slot
    nest and must be restored in reverse order.

        >>> edit = SlotEdit(bb, "router", router, "routing")         # doctest: +SKIP
        >>> edit.restore()                                          # doctest: +SKIP

    `first_hooks` (a callable giving a context manager) is entered only by the first edit of a stack, when the slot
    was empty: the hooks it installs read the slot, so every later edit shares them; the first edit removes them.
    """

    def __init__(self, bb, slot: str, value, name: str, first_hooks=None):
        self.bb, self.slot, self.value, self.name = bb, slot, value, name
        self.previous = attached(bb, slot)
        self._hooks = first_hooks() if first_hooks is not None and self.previous is None else None
        if self._hooks is not None:
            self._hooks.__enter__()
        set_attached(bb, slot, value)
        self.restored = False

    def restore(self) -> None:
        if attached(self.bb, self.slot) is not self.value:
            raise RuntimeError(f"{self.name} edits must be restored in reverse order of application")
        set_attached(self.bb, self.slot, self.previous)
        if self._hooks is not None:
            self._hooks.__exit__(None, None, None)
        self.restored = True


class WeightEdit(Edit):
    def __init__(self, params: dict[str, torch.nn.Parameter]):
        self._params = params
        self._saved = {name: p.detach().clone() for name, p in params.items()}
        self._requires_grad = {name: p.requires_grad for name, p in params.items()}
        self.restored = False

    def restore(self) -> None:
        with torch.no_grad():
            for name, p in self._params.items():
                p.copy_(self._saved[name])
                p.grad = None
                p.requires_grad_(self._requires_grad[name])
        self.restored = True


class NoEdit(Edit):
    """The unedited backbone (the papers' "Base" / "Backbone Model" row): nothing to undo."""

    def restore(self) -> None:
        self.restored = True


def records_of(train) -> list:
    """The records of a train split (`runners.cases.TrainSplit`) or of a list of cases, without loading images.

    What `prepare` is given: a sequence of cases (`.request`, `.probes`), images loaded when a case is read.
    """
    return train.records if hasattr(train, "records") else [c.request.record for c in train]


def fit_edit(bb, query, params, lr: float, steps: int, stop_at_loss: float, paths=()) -> None:
    """Adam on `params` against the edit's loss `bb.loss([query])`, at most `steps` steps, stopping once the loss
    is below `stop_at_loss` (what FT, GRACE's values and BalancEdit's layer copies are trained with). The loss is
    float32 (`Backbone.loss`) and the steps are taken in float32 whatever the dtype of `params` (`Float32Adam`).
    `paths`: the modules what is trained lives in or acts through (hooked); when every one is in a decoder layer,
    each step runs from the lowest of those layers on (`Backbone.loss_above`: the same loss, bit for bit)."""
    optimizer = Float32Adam(params, lr=lr)
    layers = [bb.layer_of(path) for path in paths]
    loss_of = (bb.loss_above([query], min(layers)) if layers and None not in layers
               else lambda: bb.loss([query]))
    for _ in range(steps):
        loss = loss_of()
        if loss.item() < stop_at_loss:
            break
        optimizer.step_on(loss)


@contextlib.contextmanager
def frozen(model: torch.nn.Module):
    """Every parameter has requires_grad False inside (an editor turns on what it trains); on exit the flags
    are restored and no gradient is left behind."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
            p.grad = None
