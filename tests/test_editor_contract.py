"""The editor contract (`editors.contract`), for every registered editor and every dtype a backbone loads in
(float32, bfloat16, float16): bit-exact restore, nothing left behind, every weight finite, the edit takes,
deterministic for a seed, sequential editing as declared. A new editor joins these tests by being registered."""
import dataclasses

import pytest
import torch

from mmedit_lib.backbones.backbone import state_hash
from mmedit_lib.editors.base import WeightEdit
from mmedit_lib.editors.contract import check_contract
from mmedit_lib.editors.registry import EDITORS, make_editor, make_hparams
from mmedit_lib.editors.spec import QUICK_CASES
from mmedit_lib.runners.cases import load_cases

from conftest import SHIPPED

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cases(smoke_world, shipped):
    out = {}
    for name in SHIPPED:
        world, _ = smoke_world(name)
        out[name] = load_cases(shipped(name), world, "vqa", n=QUICK_CASES, seed=0)
    return out


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("editor_name", sorted(EDITORS))
def test_every_editor_keeps_the_contract(editor_name, name, dtype, shipped_as, cases):
    """`editors.contract.check_contract`: prepare on 3 cases with the spec's `quick` hparams (seconds: the contract
    is about restoring and taking effect, not about how well the editor learned), then edit, restore, repeat."""
    editor = make_editor(editor_name, backbone=name, **EDITORS[editor_name].quick_hparams(QUICK_CASES))
    check_contract(editor, shipped_as(name, dtype), cases[name], rng_independence=dtype == "float32")


@pytest.mark.parametrize("editor_name", sorted(EDITORS))
def test_every_editor_has_a_hparams_dataclass_with_defaults_and_refuses_unknown_fields(editor_name):
    hp = make_hparams(editor_name)
    assert dataclasses.is_dataclass(hp)
    with pytest.raises(ValueError, match="no hparam"):
        make_hparams(editor_name, not_a_field=1)
    if not dataclasses.fields(hp):
        return
    field = dataclasses.fields(hp)[0]
    with pytest.raises(ValueError, match="takes"):
        make_hparams(editor_name, **{field.name: object()})


# ---- the contract can fail: editors that break one promise each ------------------------------------------------
@dataclasses.dataclass
class BrokenHparams:
    scale: float = 0.5
    undeclared: int = 1  # read by `prepare` below without being marked prepare_field


def _ffn_out(bb):
    return bb.model.get_submodule(bb.site("ffn_out", -1))


def _ascend(bb, request, hp, prepared):
    """Moves the last FFN against the edit (its target gets less likely); restores exactly."""
    weight = _ffn_out(bb).weight
    edit, flag = WeightEdit({"w": weight}), weight.requires_grad
    with torch.enable_grad():
        weight.requires_grad_(True)
        grad, = torch.autograd.grad(bb.loss([request.query]), weight)
        weight.requires_grad_(flag)
    with torch.no_grad():
        weight.add_(hp.scale * grad.sign())
    return edit


def _forgets_weights(bb, request, hp, prepared):
    edit = _ascend(bb, request, dataclasses.replace(hp, scale=-hp.scale), prepared)
    edit.restore = lambda: setattr(edit, "restored", True)  # claims to restore, restores nothing
    return edit


def _leaves_hook(bb, request, hp, prepared):
    edit = _ascend(bb, request, dataclasses.replace(hp, scale=-hp.scale), prepared)
    _ffn_out(bb).register_forward_hook(lambda m, i, o: o)
    return edit


def _leaves_memory(bb, request, hp, prepared):
    edit = _ascend(bb, request, dataclasses.replace(hp, scale=-hp.scale), prepared)
    bb.attached["my_memory"] = "an entry nobody removes"
    return edit


def _reads_undeclared(bb, train, hp):
    return {"n": hp.undeclared}


PREPARED = iter(range(1, 1000))


def _prepare_from_outside(bb, train, hp):
    return {"scale": next(PREPARED) / 10}  # what it builds depends on how often it ran before


def _prepare_nothing(bb, train, hp):
    return {}


def _scaled_ascent(bb, request, hp, prepared):
    return _ascend(bb, request, dataclasses.replace(hp, scale=-prepared["scale"]), prepared)


@pytest.mark.parametrize("apply, prepare, message", [
    (_ascend, None, "did not take"),
    (_forgets_weights, None, "not bit-exact"),
    (_leaves_hook, None, "hook was left"),
    (_leaves_memory, None, "my_memory was left attached"),
    (lambda bb, request, hp, prepared: _ascend(bb, request, dataclasses.replace(hp, scale=-hp.scale), prepared),
     _reads_undeclared, "prepare reads undeclared"),
    (_scaled_ascent, _prepare_from_outside, "prepare is not repeatable"),
    (_leaves_hook, _prepare_nothing, "hook was left"),  # caught by the repeatability check's own edits too
], ids=["no-effect", "no-restore", "hook", "slot", "prepare-key", "repeatable", "hook-after-prepare"])
def test_the_contract_names_the_promise_an_editor_breaks(apply, prepare, message, shipped, cases):
    from mmedit_lib.editors.registry import Editor
    from mmedit_lib.editors.spec import EditorSpec
    bb = shipped("tiny-blip2-opt")
    spec = EditorSpec("broken", BrokenHparams, apply, prepare, label="Broken", summary="breaks the contract")
    before, weights = state_hash(bb.model), {k: v.clone() for k, v in bb.model.state_dict().items()}
    hooks = {m: set(m._forward_hooks) for m in bb.model.modules()}
    flags = [p.requires_grad for p in bb.model.parameters()]
    try:
        with pytest.raises(AssertionError, match=message):
            check_contract(Editor(spec, BrokenHparams()), bb, cases["tiny-blip2-opt"],
                           rng_independence=prepare is not None)
    finally:  # undo what the broken editors left, for the tests that follow
        bb.attached.pop("my_memory", None)
        for module, kept in hooks.items():
            for key in set(module._forward_hooks) - kept:
                del module._forward_hooks[key]
        bb.model.load_state_dict(weights)
    assert state_hash(bb.model) == before and [p.requires_grad for p in bb.model.parameters()] == flags
