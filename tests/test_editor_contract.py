"""The editor contract, for every registered editor and every dtype a backbone loads in (float32, bfloat16,
float16): bit-exact restore, nothing left behind, every weight finite, deterministic for a seed, sequential editing
as declared. A new editor joins these tests by being registered."""
import dataclasses

import pytest
import torch

from mmedit_lib.backbones.backbone import state_hash
from mmedit_lib.editors.registry import EDITORS, make_editor, make_hparams
from mmedit_lib.runners.cases import load_cases

from conftest import TINY

pytestmark = pytest.mark.slow


def hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


@pytest.fixture(scope="module")
def cases(smoke_world, shipped):
    out = {}
    for name in TINY:
        world, _ = smoke_world(name)
        out[name] = load_cases(shipped(name), world, "vqa", n=3, seed=0)
    return out


# prepare on 3 cases in seconds: the contract is about restoring, not about how well the editor learned
QUICK = {"mend": {"steps": 5, "norm_cases": 3}, "mend-vision": {"steps": 5, "norm_cases": 3},
         "ke": {"steps": 5}, "serac": {"cf_steps": 2, "classifier_epochs": 1}, "t-patcher": {"memory_cases": 3},
         "unike": {"memory_triplets": 3, "encoder_epochs": 1, "patch_memory_cases": 3, "steps": 5}}


def output(bb, query):
    with torch.no_grad():
        return bb.target_logits([query])[0][0].clone()


def finite(model) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("editor_name", sorted(EDITORS))
def test_every_editor_keeps_the_contract(editor_name, name, dtype, shipped_as, cases):
    bb = shipped_as(name, dtype)
    editor = make_editor(editor_name, backbone=name, **QUICK.get(editor_name, {}))
    editor.prepare(bb, cases[name])
    assert finite(bb.model), "prepare left a non-finite weight"
    before, modules, n_hooks = state_hash(bb.model), [n for n, _ in bb.model.named_modules()], hooks(bb.model)
    flags = [p.requires_grad for p in bb.model.parameters()]
    request = cases[name][0].request

    def edited_hash():
        torch.manual_seed(0)
        edit = editor.edit(bb, request)
        after = state_hash(bb.model)
        assert finite(bb.model), "the edit left a non-finite weight"
        logits = output(bb, request.query)
        assert bool(torch.isfinite(logits).all()), "the edited model's logits are not finite"
        edit.restore()
        return after, logits

    first, logits = edited_hash()
    assert state_hash(bb.model) == before, "restore() is not bit-exact"
    assert [n for n, _ in bb.model.named_modules()] == modules and hooks(bb.model) == n_hooks
    assert bb.router is None, "a routing edit was left installed"
    assert bb.codebook is None and bb.forward_batch is None, "a codebook edit was left installed"
    assert bb.latent_memory is None, "a latent memory edit was left installed"
    assert [p.requires_grad for p in bb.model.parameters()] == flags
    assert all(p.grad is None for p in bb.model.parameters())
    second, logits_again = edited_hash()
    assert first == second and torch.equal(logits, logits_again), "not deterministic for a seed"
    spec = EDITORS[editor_name]
    unedited = output(bb, request.query)
    assert torch.equal(unedited, logits) != spec.changes_model, \
        "the edit changed nothing" if spec.changes_model else "it changed the model"

    if spec.sequential:  # weights, hooks or routers: two stacked edits, restored in reverse order
        edits = [editor.edit(bb, c.request) for c in cases[name][:2]]
        assert (not torch.equal(output(bb, request.query), unedited)) == spec.changes_model
        for edit in reversed(edits):
            edit.restore()
        assert state_hash(bb.model) == before and hooks(bb.model) == n_hooks and bb.router is None \
            and bb.codebook is None and bb.latent_memory is None, \
            "stacked edits do not restore bit-exactly"
        assert torch.equal(output(bb, request.query), unedited)


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
