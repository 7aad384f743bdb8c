"""The editor contract, checked for one editor on one backbone: what every editor of the package keeps, and what
a new one must keep to join it.

    >>> editor = make_editor("grace", backbone="tiny-blip2-opt", **EDITORS["grace"].quick_hparams())  # doctest: +SKIP
    >>> check_contract(editor, bb, cases)       # AssertionError naming the first broken promise   # doctest: +SKIP

What it checks, generically (nothing here names an editor):
- `prepare` (on `cases`, given as the train split) reads only the hparams its spec declares (`prepare_field`: the
  prepared-artefact key), leaves every weight finite, and builds the same thing whatever random draws came before
  it in the process (the edit it gives is the same);
- an edit leaves every weight and the edited model's logits finite, and its target more likely than before
  (`changes_model` editors; the unedited baseline changes nothing at all);
- `restore()` is bit-exact (`state_hash` of every parameter and buffer), and nothing is left behind: the same
  modules, the same hooks, the same `requires_grad` flags, no gradients, every attribute of the backbone object
  the very object it was before, and nothing left in `bb.attached` (a router, codebook or memory the edit
  attached is gone);
- the same seed gives the same edit (weights and logits);
- a sequential editor keeps two stacked edits and restores them, in reverse order, bit-exactly.
"""
from __future__ import annotations

import dataclasses

import torch

from ..backbones.backbone import state_hash


def hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


def _logits(bb, query) -> torch.Tensor:
    with torch.no_grad():
        return bb.target_logits([query])[0][0].clone()


def _loss(bb, query) -> float:
    with torch.no_grad():
        return float(bb.loss([query]))


def recording(hparams):
    """(a copy of `hparams` that records which of its fields are read, the set they are recorded in).

        >>> import dataclasses
        >>> @dataclasses.dataclass
        ... class H:
        ...     a: int = 1
        ...     b: int = 2
        >>> copy, read = recording(H())
        >>> copy.a, sorted(read)
        (1, ['a'])
    """
    read: set[str] = set()
    names = {f.name for f in dataclasses.fields(hparams)}

    class Recording(type(hparams)):
        def __getattribute__(self, attr):
            if attr in names:
                read.add(attr)
            return object.__getattribute__(self, attr)

    copy = Recording.__new__(Recording)
    for name in names:
        object.__setattr__(copy, name, getattr(hparams, name))
    return copy, read


class _Snapshot:
    """What must be as it was once an edit is restored."""

    def __init__(self, bb):
        self.weights = state_hash(bb.model)
        self.modules = [n for n, _ in bb.model.named_modules()]
        self.hooks = hook_count(bb.model)
        self.flags = [p.requires_grad for p in bb.model.parameters()]
        self.attributes = dict(vars(bb))
        self.attached = dict(bb.attached)

    def left_behind(self, bb) -> str | None:
        """What differs from the snapshot (None: nothing)."""
        if state_hash(bb.model) != self.weights:
            return "restore() is not bit-exact"
        if [n for n, _ in bb.model.named_modules()] != self.modules:
            return "a module was left in the model"
        if hook_count(bb.model) != self.hooks:
            return "a hook was left installed"
        if [p.requires_grad for p in bb.model.parameters()] != self.flags:
            return "requires_grad flags were changed"
        if any(p.grad is not None for p in bb.model.parameters()):
            return "gradients were left on the backbone"
        changed = sorted(k for k in set(vars(bb)) | set(self.attributes)
                         if vars(bb).get(k, self) is not self.attributes.get(k, self))
        if changed:
            return f"the backbone's {', '.join(changed)} {'was' if len(changed) == 1 else 'were'} left changed"
        left = sorted(k for k in set(bb.attached) | set(self.attached)
                      if bb.attached.get(k, self) is not self.attached.get(k, self))
        if left:
            return f"{', '.join(left)} {'was' if len(left) == 1 else 'were'} left attached to the backbone"
        return None


def _edited_logits(editor, bb, request) -> torch.Tensor:
    torch.manual_seed(0)
    with editor.edit(bb, request):
        return _logits(bb, request.query)


def check_contract(editor, bb, cases, rng_independence: bool = True) -> None:
    """AssertionError naming the first promise `editor` (a registry `Editor`) breaks on `bb`; `cases` (at least 2)
    are its train split and the edit requests. `rng_independence`: also prepare a second time after other random
    draws and check that the edit is the same (the cost of a second prepare)."""
    assert len(cases) >= 2, "the contract needs at least two cases (two stacked edits)"
    spec, read = editor.spec, set()

    def prepare(backbone, train, hparams):  # the spec's prepare, given a copy of the hparams that records reads
        copy, fields = recording(hparams)
        try:
            return spec.prepare(backbone, train, copy)
        finally:
            read.update(fields)

    if spec.prepare is not None:
        editor.spec = dataclasses.replace(spec, prepare=prepare)
    try:
        editor.prepare(bb, cases)
    finally:
        editor.spec = spec
    if spec.prepare is not None and hasattr(editor.hparams, "seed"):
        read.add("seed")  # Editor.prepare seeds the RNG with it
    undeclared = sorted(read - set(spec.prepare_fields))
    assert not undeclared, (f"prepare reads {', '.join(undeclared)}, which its hparams do not mark prepare_field: "
                            f"a prepared artefact would be reused when they change")
    assert finite(bb.model), "prepare left a non-finite weight"
    query = cases[0].request.query
    unedited_logits, unedited_loss = _logits(bb, query), _loss(bb, query)
    before = _Snapshot(bb)  # after a forward pass, which fills the backbone's own lazy caches
    if rng_independence and spec.prepare is not None:  # prepare again after other draws: the same edit
        first, torch_state = editor.prepared, torch.random.get_rng_state()
        torch.manual_seed(12345)
        torch.rand(7)
        editor.prepare(bb, cases)
        torch.random.set_rng_state(torch_state)
        again = _edited_logits(editor, bb, cases[0].request)
        editor.prepared = first
        assert torch.equal(_edited_logits(editor, bb, cases[0].request), again), \
            "prepare is not repeatable: prepared again (after other random draws) it gives another edit"
        problem = before.left_behind(bb)
        assert problem is None, problem

    def edited():
        torch.manual_seed(0)
        edit = editor.edit(bb, cases[0].request)
        try:
            weights = state_hash(bb.model)
            assert finite(bb.model), "the edit left a non-finite weight"
            logits, loss = _logits(bb, query), _loss(bb, query)
            assert bool(torch.isfinite(logits).all()), "the edited model's logits are not finite"
        finally:
            edit.restore()
        return weights, logits, loss

    weights, logits, loss = edited()
    problem = before.left_behind(bb)
    assert problem is None, problem
    weights_again, logits_again, _ = edited()
    assert weights == weights_again and torch.equal(logits, logits_again), "not deterministic for a seed"
    if spec.changes_model:
        assert not torch.equal(logits, unedited_logits), "the edit changed nothing"
        assert loss < unedited_loss, f"the edit did not take: target loss {unedited_loss:.4f} -> {loss:.4f}"
    else:
        assert torch.equal(logits, unedited_logits), "it changed the model"

    if spec.sequential:  # two stacked edits, restored in reverse order
        edits = [editor.edit(bb, c.request) for c in cases[:2]]
        try:
            assert torch.equal(_logits(bb, query), unedited_logits) != spec.changes_model, \
                "two stacked edits changed nothing" if spec.changes_model else "it changed the model"
        finally:
            for edit in reversed(edits):
                edit.restore()
        problem = before.left_behind(bb)
        assert problem is None, f"stacked edits: {problem}"
        assert torch.equal(_logits(bb, query), unedited_logits), "stacked edits: the logits are not the unedited ones"
