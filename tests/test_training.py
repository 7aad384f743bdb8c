"""Training is deterministic (single thread), and the shipped backbones are what their reports say."""
import json

import pytest
import torch

from mmedit_lib.backbones.registry import BACKBONES, default_path
from mmedit_lib.backbones.report import evaluate_backbone
from mmedit_lib.backbones.train import TrainConfig, train_tiny_backbone
from mmedit_lib.world.world import World

from conftest import TINY

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_same_seed_gives_the_same_losses_step_for_step(family):
    cfg = TrainConfig(seed=1, n_images=200, n_examples=3000, stage1_steps=5, stage1_batch=8, max_stage2_steps=50,
                      stage2_tokens_per_batch=512)
    _, _, first = train_tiny_backbone(family, cfg)
    _, _, second = train_tiny_backbone(family, cfg)
    assert len(first["stage2_loss"]) == 100  # 50 steps in each of the two phases
    assert first["stage1_loss"] == second["stage1_loss"]
    assert first["stage2_loss"] == second["stage2_loss"]
    _, _, other_seed = train_tiny_backbone(family, TrainConfig(**{**cfg.__dict__, "seed": 2}))
    assert other_seed["stage2_loss"] != first["stage2_loss"]


@pytest.mark.parametrize("name", TINY)
def test_shipped_training_log_reproduces_its_first_50_steps(name):
    folder = default_path(name)
    log = json.loads((folder / "training_log.json").read_text())
    cfg = TrainConfig(**{**log["config"], "max_stage1_steps": 50, "max_stage2_steps": 0})
    threads = torch.get_num_threads()
    torch.set_num_threads(log["threads"])  # the same thread count gives the same reductions
    try:
        _, _, rerun = train_tiny_backbone(BACKBONES[name].family, cfg)
    finally:
        torch.set_num_threads(threads)
    assert rerun["stage1_loss"] == log["stage1_loss"][:50]


@pytest.mark.parametrize("name", TINY)
def test_shipped_weights_reproduce_the_reported_accuracies(name, shipped):
    folder = default_path(name)
    reported = json.loads((folder / "report.json").read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(reported["threads"])
    try:
        measured = evaluate_backbone(shipped(name), World(reported["world_seed"]), n_per_kind=reported["n_per_kind"],
                                     seed=reported["report_seed"])
    finally:
        torch.set_num_threads(threads)
    for key in ("vqa_token_accuracy", "caption_token_accuracy", "text_qa_exact", "m_loc_pool_accuracy",
                "same_on_rerender", "same_on_rephrase"):
        assert measured[key] == pytest.approx(reported[key], abs=1e-6), key
    assert measured["in_context_following"] == pytest.approx(reported["in_context_following"], abs=1e-6)
    for kind, row in reported["per_kind"].items():
        assert measured["per_kind"][kind]["exact"] == pytest.approx(row["exact"], abs=1e-6), kind


@pytest.mark.xfail(strict=True, reason="Foundation I bar not met yet: E-VQA token accuracy ~47% (< 55%) and M-Loc "
                   "pool ~50% (< 60%) for both; tiny-blip2-opt text QA 69% and in-context following 8% at 40 "
                   "demos; 4-5 competent kinds (< 8 OKEDIT categories); tiny-minigpt4 trains in 634 s. Cause: stage 1 leaves shape and landmark identity "
                   "poorly decodable from the Q-Former. Strict: this test fails loudly once the bar is met.")
@pytest.mark.parametrize("name", TINY)
def test_shipped_backbones_meet_the_competence_bar(name):
    """The bar of the Foundation issue, read from the shipped report (re-measured by the test above)."""
    r = json.loads((default_path(name) / "report.json").read_text())
    assert 0.55 <= r["vqa_token_accuracy"] <= 0.90
    assert r["caption_token_accuracy"] >= 0.50
    assert r["text_qa_exact"] >= 0.95
    assert r["m_loc_pool_accuracy"] >= 0.60
    assert r["same_on_rerender"] >= 0.80
    assert r["same_on_rephrase"] >= 0.85
    assert min(r["in_context_following"].values()) >= 0.80
    assert r["training_seconds"] <= 600
    competent = [k for k, row in r["per_kind"].items() if row["exact"] >= row["chance"] + 0.20]
    assert len(competent) >= 8  # OKEDIT needs at least 8 categories
