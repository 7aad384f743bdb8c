"""What the baseline editors add beyond the contract: contexts that leave scored positions alone, routing, the
prepare cache, per-backbone hparams, and locality across rewritten queries."""
import pytest
import torch

from mmedit_lib.backbones.backbone import Query
from mmedit_lib.editors.registry import make_editor, make_hparams
from mmedit_lib.editors.routing import InContextRouter, RouterEdit
from mmedit_lib.metrics.protocols import locality_score
from mmedit_lib.runners.cases import TrainSplit, load_cases


def test_paper_defaults_live_in_the_dataclass_and_the_backbone_file_overrides_them():
    assert make_hparams("mend").steps == 100000 and make_hparams("mend").lr == 1e-6  # MEND's own values
    tiny = make_hparams("mend", "tiny-blip2-opt")
    assert tiny.steps == 800 and tiny.lr == 1e-4
    assert make_hparams("mend", "tiny-blip2-opt", steps=7).steps == 7  # explicit overrides win
    full = make_hparams("mend", "blip2-opt-2.7b")  # the full-size file: EasyEdit's TRAINING/MEND/blip2.yaml
    assert (full.steps, full.layers, full.rank) == (50000, (9, 10, 11), 1920)


def test_locality_compares_rewritten_queries_on_their_common_trailing_positions():
    assert locality_score(torch.tensor([1, 2, 3]), torch.tensor([9, 2, 3])) == pytest.approx(2 / 3)
    assert locality_score(torch.tensor([5, 1, 2, 3]), torch.tensor([2, 4])) == 0.5
    with pytest.raises(ValueError, match="differ in shape"):
        locality_score(torch.zeros(3, 10), torch.zeros(3, 1))


@pytest.mark.slow
def test_a_context_is_read_but_not_scored(shipped, smoke_world):
    bb = shipped("tiny-blip2-opt")
    world, _ = smoke_world("tiny-blip2-opt")
    case = load_cases(bb, world, "vqa", n=1)[0]
    plain = case.probes["rel"]
    with_context = Query(plain.image, plain.prompt, plain.target, context="new fact : what is it ? red prompt :")
    with torch.no_grad():
        a, b = bb.query_logits([plain, with_context])
    assert a.sequence.shape == b.sequence.shape and a.target.shape == b.target.shape
    assert torch.equal(a.sequence[:bb.n_image_tokens], b.sequence[:bb.n_image_tokens])  # image positions
    assert not torch.equal(a.target, b.target)  # ... while the answer does read the context


@pytest.mark.slow
def test_routing_edits_nest_and_restore_in_reverse_order(shipped, smoke_world):
    bb = shipped("tiny-blip2-opt")
    world, _ = smoke_world("tiny-blip2-opt")
    query = load_cases(bb, world, "vqa", n=1)[0].probes["rel"]
    first = RouterEdit(bb, InContextRouter(bb, "new fact : a b prompt :"))
    second = RouterEdit(bb, InContextRouter(bb, "new fact : c d prompt :"))
    assert bb.router is second.router
    with pytest.raises(RuntimeError, match="reverse order"):
        first.restore()
    second.restore()
    first.restore()
    assert bb.router is None and bb.greedy([query]) == bb._greedy([query], 12)


@pytest.mark.slow
def test_serac_sends_in_scope_queries_to_the_counterfactual_model_and_keeps_the_rest(shipped, smoke_world):
    bb = shipped("tiny-blip2-opt")
    world, _ = smoke_world("tiny-blip2-opt")
    train = TrainSplit.load(bb, world, ["vqa"])
    editor = make_editor("serac", "tiny-blip2-opt", cf_steps=5, classifier_epochs=20)
    editor.prepare(bb, train)
    case = load_cases(bb, world, "vqa", n=1)[0]
    with editor.edit(bb, case.request):
        routes = bb.router.route([case.probes["rel"], case.probes["t_loc"]])
    assert routes[0][0] is not bb and routes[0][1].context.startswith("new fact :")
    assert routes[1][0] is bb and routes[1][1] is case.probes["t_loc"]


@pytest.mark.slow
def test_prepare_artefacts_are_cached_by_their_parameters(shipped, smoke_world, tmp_path):
    bb = shipped("tiny-blip2-opt")
    world, _ = smoke_world("tiny-blip2-opt")
    train = TrainSplit.load(bb, world, ["vqa"])
    first = make_editor("t-patcher", "tiny-blip2-opt", memory_cases=4)
    first.prepare(bb, train, cache_dir=tmp_path)
    again = make_editor("t-patcher", "tiny-blip2-opt", memory_cases=4, lr=0.5)  # lr is not read by prepare
    again.prepare(bb, train, cache_dir=tmp_path)
    assert not first.prepare_meta["cached"] and again.prepare_meta["cached"]
    assert again.prepare_meta["prepare_seconds"] == first.prepare_meta["prepare_seconds"]
    assert torch.equal(again.prepared["memory"][-1], first.prepared["memory"][-1])
    other = make_editor("t-patcher", "tiny-blip2-opt", memory_cases=5)
    other.prepare(bb, train, cache_dir=tmp_path)
    assert not other.prepare_meta["cached"] and len(list(tmp_path.glob("t-patcher/*.pt"))) == 2
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.slow
def test_an_editor_that_needs_prepare_refuses_to_edit_without_it(shipped, smoke_world):
    bb = shipped("tiny-blip2-opt")
    world, _ = smoke_world("tiny-blip2-opt")
    case = load_cases(bb, world, "vqa", n=1)[0]
    with pytest.raises(RuntimeError, match="needs prepare"):
        make_editor("mend").edit(bb, case.request)
