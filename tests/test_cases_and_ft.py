"""Edit cases are the backbone's own errors, valid MMEdit records; FT fixes them and restores bit-exactly."""
import pytest
import torch

from mmedit_lib.backbones.backbone import Query, state_hash
from mmedit_lib.data.loaders import load_image, load_records
from mmedit_lib.data.validate import validate_file
from mmedit_lib.editors.base import EditRequest
from mmedit_lib.editors.ft import FTHparams, apply_ft
from mmedit_lib.metrics.accuracy import normalize_answer
from mmedit_lib.world.world import World

from conftest import TINY

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", TINY)
def test_world_case_files_validate_without_problems(name, smoke_world):
    root, summary = smoke_world(name)
    for task in ("vqa", "caption", "okedit"):
        for split in ("train", "eval"):
            report = validate_file(root / task / f"{split}.json")
            assert report.ok, report.lines()
            assert report.n_records == summary["sizes"][f"{task}_{split}"]
    world = World(0)
    for kind, acc in summary["kind_accuracy"].items():
        is_competent = acc >= 1.0 / len(world.answers(kind)) + 0.20
        assert is_competent == (kind in summary["competent_kinds"]), kind


@pytest.mark.parametrize("name", TINY)
def test_vqa_cases_are_the_backbones_errors_on_competent_kinds(name, smoke_world, shipped):
    root, summary = smoke_world(name)
    bb = shipped(name)
    records = load_records(root / "vqa" / "eval.json")
    assert all(r.pred != r.alt for r in records)
    assert {r.extra["kind"] for r in records} <= set(summary["competent_kinds"])
    queries = [Query(load_image(r.image, root), bb.vqa_prompt(r.src)) for r in records[:10]]
    assert [normalize_answer(a) for a in bb.greedy(queries)] == [r.pred for r in records[:10]]
    okedit = load_records(root / "okedit" / "eval.json")
    assert all(r.pred == r.ground_truth != r.alt and r.hard_loc_a != r.ground_truth for r in okedit)
    assert all(len(r.rephrase_list) >= 5 and len(r.image_rephrase_list) >= 5 for r in okedit)


@pytest.mark.parametrize("name", TINY)
def test_ft_last_layer_fixes_edit_cases_and_restores_bit_exactly(name, smoke_world, shipped):
    root, _ = smoke_world(name)
    bb = shipped(name)
    records = load_records(root / "vqa" / "eval.json")[:20]
    before = state_hash(bb.model)
    fixed = 0
    for rec in records:
        q = Query(load_image(rec.image, root), bb.vqa_prompt(rec.src), rec.alt)
        with apply_ft(bb, EditRequest(q), FTHparams()):
            with torch.no_grad():
                ((logits, target),) = bb.target_logits([q])
            fixed += bool((logits.argmax(-1) == target).all())
            assert state_hash(bb.model) != before
        assert state_hash(bb.model) == before
        assert all(p.grad is None and p.requires_grad for p in bb.model.parameters())
    assert fixed >= 18, f"FT fixed {fixed}/20"
