"""Training is deterministic (single thread), and the shipped backbones are what their reports say."""
import json

import pytest
import torch

from mmedit_lib.backbones.registry import BACKBONES, default_path
from mmedit_lib.backbones.report import evaluate_backbone
from mmedit_lib.backbones.train import TrainConfig, train_tiny_backbone
from mmedit_lib.world.world import World

from conftest import SHIPPED

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("family, architecture", [("opt", "blip2"), ("llama", "blip2"), ("llama", "llava")])
def test_same_seed_gives_the_same_losses_step_for_step(family, architecture):
    cfg = TrainConfig.for_family(family, architecture, seed=1, n_images=200, n_examples=3000, stage1_steps=5,
                                 stage1_batch=8, max_stage2_steps=20,
                                 stage2_tokens_per_batch=512)  # OPT's: fused AdamW, offsets; LLaVA's patch labels
    _, _, first = train_tiny_backbone(family, cfg, architecture)
    _, _, second = train_tiny_backbone(family, cfg, architecture)
    assert len(first["stage2_loss"]) == 40  # 20 steps in each of the two phases
    assert first["stage1_loss"] == second["stage1_loss"]
    assert first["stage2_loss"] == second["stage2_loss"]
    _, _, other_seed = train_tiny_backbone(family, TrainConfig(**{**cfg.__dict__, "seed": 2}), architecture)
    assert other_seed["stage2_loss"] != first["stage2_loss"]


@pytest.mark.parametrize("share", [0.0, 0.5])
def test_opt_position_offsets_shift_whole_examples_within_the_table(share, monkeypatch):
    """A shifted example keeps consecutive positions and ends inside OPT's table; share 0 shifts nothing."""
    import mmedit_lib.backbones.train as train
    seen = []
    real_init = train._init_model

    def recording_init(*args):
        model = real_init(*args)
        model.language_model.model.register_forward_pre_hook(
            lambda module, a, kw: seen.append((kw["position_ids"].clone(), kw["attention_mask"].clone())),
            with_kwargs=True)
        return model

    cfg = TrainConfig.for_family("opt", n_images=200, n_examples=3000, stage1_steps=5, stage1_batch=8,
                                 max_stage2_steps=20, stage2_tokens_per_batch=512, opt_position_offsets=share)
    monkeypatch.setattr(train, "_init_model", recording_init)
    train_tiny_backbone("opt", cfg)
    starts = torch.cat([positions[:, 0] for positions, _ in seen])
    for positions, mask in seen:
        steps = positions[:, 1:] - positions[:, :-1]
        assert bool((steps[mask[:, 1:].bool()] == 1).all())  # consecutive over the real tokens
        assert int(positions.max()) < 1024
    if share:
        assert 0.3 < float((starts > 0).float().mean()) < 0.7
        assert int(starts.max()) > 500
    else:
        assert int(starts.max()) == 0


def test_position_offsets_are_refused_for_the_llama_decoder_and_checked():
    with pytest.raises(ValueError, match="rotary"):
        train_tiny_backbone("llama", TrainConfig(max_stage1_steps=0, opt_position_offsets=0.5))
    with pytest.raises(ValueError, match="share"):
        train_tiny_backbone("opt", TrainConfig(max_stage1_steps=0, opt_position_offsets=1.5))


def test_prompt_targets_are_the_text_tokens_and_answers_are_flagged():
    from mmedit_lib.backbones.configs import BOS_ID, EOS_ID, IMAGE_ID, PAD_ID
    from mmedit_lib.backbones.train import prompt_and_answer_targets
    ids = torch.tensor([[IMAGE_ID, IMAGE_ID, BOS_ID, 10, 11, 12, EOS_ID, PAD_ID]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0]])
    answers = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 0]], dtype=torch.bool)
    selected, is_answer = prompt_and_answer_targets(ids, mask, answers)
    # next tokens: <image> <s> 10 11 12 </s> <pad>: only the text after <s> is a target
    assert selected.tolist() == [[False, False, True, True, True, True, False]]
    assert is_answer.tolist() == [False, False, True, True]


def test_prompt_loss_changes_the_training_but_the_log_keeps_the_answer_loss():
    cfg = dict(seed=1, n_images=200, n_examples=3000, stage1_steps=5, stage1_batch=8, max_stage2_steps=5,
               stage2_tokens_per_batch=512)
    _, _, answers_only = train_tiny_backbone("opt", TrainConfig(**cfg))
    _, _, with_prompt = train_tiny_backbone("opt", TrainConfig(**cfg, prompt_loss_weight=0.5))
    # the first step sees the same weights and batch: the same answer loss is logged
    assert with_prompt["stage2_loss"][0] == pytest.approx(answers_only["stage2_loss"][0], abs=1e-5)
    assert with_prompt["stage2_loss"][1:] != answers_only["stage2_loss"][1:]
    with pytest.raises(ValueError, match="negative"):
        train_tiny_backbone("opt", TrainConfig(max_stage1_steps=0, prompt_loss_weight=-1.0))


@pytest.fixture(scope="module")
def corpora():
    """The training corpus by (world seed, sizes): the shipped backbones share one, built once here."""
    from mmedit_lib.backbones.train import Corpus
    cache = {}

    def get(cfg):
        key = (cfg.world_seed, cfg.n_images, cfg.n_examples)
        if key not in cache:
            cache[key] = Corpus.of(cfg)
        return cache[key]
    return get


@pytest.mark.alone  # 2 threads, as the log was written: run with nothing beside it (Makefile)
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_training_log_reproduces_its_first_50_steps(name, corpora):
    folder = default_path(name)
    log = json.loads((folder / "training_log.json").read_text())
    cfg = TrainConfig(**{**log["config"], "max_stage1_steps": 50, "max_stage2_steps": 0})
    threads = torch.get_num_threads()
    torch.set_num_threads(log["threads"])  # the same thread count gives the same reductions
    try:
        _, _, rerun = train_tiny_backbone(BACKBONES[name].family, cfg, BACKBONES[name].architecture, corpora(cfg))
    finally:
        torch.set_num_threads(threads)
    # Bit-identical on the machine that wrote the log; another CPU (other SIMD kernels) may differ in the last
    # float digits (seen: 17.806692 vs 17.806694 at step 7), so across machines the losses agree to 1e-5 relative.
    # Same-machine bit-exactness is test_same_seed_gives_the_same_losses_step_for_step.
    assert rerun["stage1_loss"] == pytest.approx(log["stage1_loss"][:50], rel=1e-5, abs=0)


@pytest.mark.alone  # 2 threads, as the report was measured: run with nothing beside it (Makefile)
@pytest.mark.parametrize("name", SHIPPED)
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


def bar_failures(r: dict) -> list[str]:
    """The requirements of the Foundation issue's bar that a report misses."""
    competent = [k for k, row in r["per_kind"].items() if row["exact"] >= row["chance"] + 0.20]
    checks = {"vqa_token_accuracy": 0.55 <= r["vqa_token_accuracy"] <= 0.90,
              "caption_token_accuracy": r["caption_token_accuracy"] >= 0.50,
              "text_qa_exact": r["text_qa_exact"] >= 0.95,
              "m_loc_pool_accuracy": r["m_loc_pool_accuracy"] >= 0.60,
              "same_on_rerender": r["same_on_rerender"] >= 0.80,
              "same_on_rephrase": r["same_on_rephrase"] >= 0.85,
              "in_context_following": min(r["in_context_following"].values()) >= 0.80,
              "training_seconds": r["training_seconds"] <= 600,
              "competent_kinds": len(competent) >= 8}  # OKEDIT needs at least 8 categories
    return [name for name, ok in checks.items() if not ok]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_backbones_meet_the_competence_bar(name):
    """The bar of the Foundation issue, read from the shipped report (re-measured by the test above)."""
    assert bar_failures(json.loads((default_path(name) / "report.json").read_text())) == []


@pytest.mark.parametrize("pairs, message", [
    (["nope=1"], "has no setting(s) nope"), (["stage2_epochs=fast"], "stage2_epochs takes float"), (["seed=3"], "use --seed"),
    (["opt_position_offsets=2"], "share of examples"), (["stage1_patch_labels=some"], "stage1_patch_labels is one of")])
def test_train_backbone_refuses_bad_overrides_before_training(pairs, message, tmp_path, capsys):
    from mmedit_lib.cli import main
    out = tmp_path / "bb"
    argv = ["train-backbone", "tiny-blip2-opt", "--out", str(out)]
    assert main(argv + [arg for pair in pairs for arg in ("--set", pair)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_train_backbone_overrides_reach_the_training_config(tmp_path):
    from mmedit_lib.cli import main
    out = tmp_path / "bb"
    sets = ["n_images=100", "n_examples=1000", "stage1_steps=3", "stage1_batch=8", "opt_position_scale=0",
            "opt_position_offsets=0.5"]
    assert main(["train-backbone", "tiny-blip2-opt", "--out", str(out), "--max-stage2-steps", "2", "--no-report"]
                + [arg for pair in sets for arg in ("--set", pair)]) == 0
    config = json.loads((out / "training_log.json").read_text())["config"]
    assert (config["opt_position_scale"], config["opt_position_offsets"], config["n_images"]) == (0.0, 0.5, 100)
