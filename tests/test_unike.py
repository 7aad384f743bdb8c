"""UniKE's pieces: the latent attention is the layer's own attention over the retrieved states, α's two readings,
the contrastive losses, and every ablation switch restores the backbone bit-exactly."""
import pytest
import torch
import torch.nn.functional as F

from mmedit_lib.backbones.backbone import state_hash
from mmedit_lib.editors.disentangle import (DisentangleConfig, semantic_loss, train_encoders, truthfulness_loss,
                                            zeta_direction)
from mmedit_lib.editors.knowledge_memory import LayerMemory, error_triplets, extract_states
from mmedit_lib.editors.latent_ike import (LatentConfig, LatentStore, installed_stores, latent_knowledge,
                                           latent_shift, mix)
from mmedit_lib.editors.registry import make_editor
from mmedit_lib.runners.cases import load_cases

from conftest import TINY

QUICK = {"memory_triplets": 4, "encoder_epochs": 1, "patch_memory_cases": 3, "steps": 3}


def test_mix_weights_the_knowledge_by_alpha_or_as_printed():
    h_input, h_know = torch.zeros(2, 3), torch.ones(2, 3)
    assert torch.equal(mix(h_input, h_know, 0.25, "knowledge"), torch.full((2, 3), 0.25))
    assert torch.equal(mix(h_input, h_know, 0.25, "literal"), torch.full((2, 3), 0.75))
    with pytest.raises(ValueError, match="reading"):
        mix(h_input, h_know, 0.25, "eq2")


def test_truthfulness_loss_is_low_when_the_spaces_separate_and_high_when_they_mix():
    pos = torch.tensor([[1.0, 0.0]]).repeat(4, 1) + 0.01 * torch.arange(4.0)[:, None]
    neg = -pos
    assert truthfulness_loss(pos, neg, 0.1) < 0.01
    assert truthfulness_loss(pos, pos.clone(), 0.1) > 0.5


def test_semantic_loss_prefers_each_examples_own_pair():
    sem = torch.eye(4)
    assert semantic_loss(sem, sem, sem, 0.1) < semantic_loss(sem, sem.roll(1, 0), sem.roll(1, 0), 0.1)


def test_encoders_learn_and_zeta_treatments_differ():
    g = torch.Generator().manual_seed(0)
    sem = torch.randn(64, 8, generator=g)
    memory = LayerMemory(sem, sem + 1.0, sem - 1.0)  # truthfulness is a shared offset
    enc = train_encoders(memory, DisentangleConfig(lr=1e-2, epochs=20, batch_size=32))
    assert enc.losses[-1][0] < enc.losses[0][0] and enc.losses[-1][1] < enc.losses[0][1]
    truthful = zeta_direction(enc, memory, "truthful")
    assert zeta_direction(enc, memory, "none") is None
    assert torch.allclose(zeta_direction(enc, memory, "random").norm(), truthful.norm())
    assert torch.allclose(truthful, torch.full((8,), 2.0), atol=0.5)  # W_ζ maps ζ back to the offset pos − neg
    assert not torch.allclose(zeta_direction(enc, memory, "semantic"), truthful)
    with pytest.raises(ValueError, match="treatment"):
        zeta_direction(enc, memory, "sideways")


@pytest.mark.parametrize("name", TINY)
def test_one_retrieved_state_gives_the_layers_attention_over_that_state(name, shipped):
    bb = shipped(name)
    layer, d = bb.n_layers - 1, bb.model.config.text_config.hidden_size
    g = torch.Generator().manual_seed(0)
    h_pre, h_pos = torch.randn(5, d, generator=g), torch.randn(1, d, generator=g)
    with torch.no_grad():
        h_know, h_bar = latent_knowledge(bb, layer, h_pre, LatentStore(torch.randn(1, d, generator=g), h_pos), 40)
        attn = bb.module("attn", layer)
        expected = bb.module("attn_out", layer)(attn.v_proj(h_pos)).expand(5, -1)  # softmax over one key is 1
    assert torch.allclose(h_know, expected, atol=1e-5) and torch.allclose(h_bar, h_pos.expand(5, -1))


@pytest.fixture(scope="module")
def unike_cases(smoke_world, shipped):
    return {name: load_cases(shipped(name), smoke_world(name)[0], "vqa", n=4, seed=0) for name in TINY}


@pytest.mark.slow
@pytest.mark.parametrize("name", TINY)
def test_knowledge_memory_keeps_three_states_per_error_at_each_layer(name, shipped, unike_cases):
    bb = shipped(name)
    triplets = error_triplets(unike_cases[name])
    memory = extract_states(bb, triplets, (0, bb.n_layers - 1), progress=False)
    d = bb.model.config.text_config.hidden_size
    for layer in (0, bb.n_layers - 1):
        assert memory[layer].h_sem.shape == memory[layer].h_pos.shape == (len(triplets), d)
        assert not torch.equal(memory[layer].h_pos, memory[layer].h_neg)


@pytest.mark.slow
@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("variant", [
    {"external": "none", "zeta": "none"},                       # only intrinsic
    {"intrinsic": False, "alpha_mode": "fixed"},                # only Latent-IKE
    {"external": "vanilla", "zeta": "none", "ike_k": 2},        # intrinsic + vanilla IKE
    {"zeta": "random", "alpha_mode": "fixed", "alpha_reading": "literal", "n_layers": 2, "top_k": 2},
])
def test_every_ablation_edits_and_restores_bit_exactly(name, variant, shipped, unike_cases):
    bb = shipped(name)
    editor = make_editor("unike", backbone=name, **QUICK, **variant)
    editor.prepare(bb, unike_cases[name])
    request = unike_cases[name][0].request
    before = state_hash(bb.model)
    with torch.no_grad():
        unedited = bb.target_logits([request.query])[0][0].clone()
    edit = editor.edit(bb, request)
    with torch.no_grad():
        edited = bb.target_logits([request.query])[0][0].clone()
    edit.restore()
    assert not torch.equal(edited, unedited)
    assert state_hash(bb.model) == before and bb.router is None
    assert sum(len(m._forward_hooks) for m in bb.model.modules()) == 0
    with torch.no_grad():
        assert torch.equal(bb.target_logits([request.query])[0][0], unedited)


@pytest.fixture(scope="module")
def quick_unike(shipped, unike_cases):
    """(backbone, a unike Editor prepared on QUICK settings, its cases) for the first tiny backbone."""
    name = TINY[0]
    bb = shipped(name)
    editor = make_editor("unike", backbone=name, **QUICK)
    editor.prepare(bb, unike_cases[name])
    return bb, editor, unike_cases[name]


@pytest.mark.slow
def test_dynamic_alpha_is_a_similarity_in_zero_one_and_bad_switches_are_refused(quick_unike):
    bb, editor, cases = quick_unike
    name = bb.name
    layer = editor.prepared["layers"][-1]
    memory = editor.prepared["memory"][layer]
    alphas = []
    with latent_shift(bb, {layer: LatentStore(memory.h_sem, memory.h_pos)}, LatentConfig(top_k=2),
                      {layer: editor.prepared["encoders"][layer].semantic}, alphas), torch.no_grad():
        bb.target_logits([cases[1].request.query])
    values = torch.cat(alphas)
    assert values.min() >= 0 and values.max() <= 1 and values.std() > 0
    for switches, message in [({"external": "sideways"}, "external"), ({"alpha_mode": "learned"}, "alpha_mode"),
                              ({"zeta": "sideways"}, "zeta"), ({"alpha_reading": "eq2"}, "alpha_reading"),
                              ({"intrinsic": False, "external": "none"}, "edits nothing")]:
        with pytest.raises(ValueError, match=message):
            make_editor("unike", backbone=name, **QUICK, **switches)


def test_neighbour_agreement_is_one_when_the_kinds_separate_and_near_half_when_they_mix():
    from mmedit_lib.report.unike import neighbour_agreement
    g = torch.Generator().manual_seed(0)
    base = torch.randn(200, 8, generator=g)
    labels = torch.arange(200).numpy() < 100
    separated = base.clone()
    separated[:100, 0] += 20.0
    separated[100:, 0] -= 20.0
    assert neighbour_agreement(separated.numpy(), labels).mean() == 1.0
    assert 0.3 < neighbour_agreement(base.numpy(), labels).mean() < 0.7


@pytest.mark.slow
def test_explorer_and_alpha_probes_share_the_prepared_editor_and_leave_the_backbone_as_it_was(quick_unike):
    from mmedit_lib.report.unike import alpha_by_probe, live_scores, with_hparams
    bb, editor, cases = quick_unike
    before = state_hash(bb.model)
    live = with_hparams(editor, beta=0.5, top_k=2, alpha_mode="fixed", alpha=0.3)
    assert live.prepared is editor.prepared and live.hparams.top_k == 2 and editor.hparams.top_k == 40
    with pytest.raises(ValueError, match="n_layers"):
        with_hparams(editor, n_layers=2)
    scores = live_scores(bb, live, cases[:2])
    assert scores.loc["generality", "mean"] == pytest.approx((scores.loc["t_gen", "mean"] + scores.loc["m_gen", "mean"]) / 2)
    profile = alpha_by_probe(bb, editor, cases[:2])
    assert len(profile) == 10 and profile.alpha.between(0, 1).all()
    assert state_hash(bb.model) == before and sum(len(m._forward_hooks) for m in bb.model.modules()) == 0


@pytest.mark.slow
def test_sequential_edits_share_one_latent_shift_whose_memory_holds_every_edit(quick_unike):
    bb, editor, cases = quick_unike
    layers = editor.prepared["layers"]
    memory = editor.prepared["memory"][layers[-1]]
    shift_hooks = lambda: sum(len(bb.module("attn_out", layer)._forward_hooks) for layer in layers)  # noqa: E731
    with torch.no_grad():
        unedited = bb.target_logits([cases[0].request.query])[0][0].clone()
    first = editor.edit(bb, cases[0].request)
    second = editor.edit(bb, cases[1].request)
    store = installed_stores(bb)[layers[-1]]
    assert shift_hooks() == len(layers), "the second edit added a second shift instead of joining the memory"
    assert len(store.h_sem) == len(memory.h_sem) + 2 and torch.equal(store.h_sem[:len(memory.h_sem)], memory.h_sem)
    second.restore()
    assert len(installed_stores(bb)[layers[-1]].h_sem) == len(memory.h_sem) + 1
    first.restore()
    assert installed_stores(bb) is None and shift_hooks() == 0
    with torch.no_grad():
        assert torch.equal(bb.target_logits([cases[0].request.query])[0][0], unedited)


@pytest.mark.slow
def test_vanilla_unike_keeps_one_edit_at_a_time_and_says_why(quick_unike, unike_cases):
    bb, _, cases = quick_unike
    editor = make_editor("unike", backbone=bb.name, **QUICK, external="vanilla", ike_k=2)
    assert "text context" in editor.hparams.sequential_problem()
    editor.prepare(bb, cases)
    first = editor.edit(bb, cases[0].request)
    with pytest.raises(RuntimeError, match="one edit at a time"):
        editor.edit(bb, cases[1].request)
    first.restore()
    assert bb.router is None and installed_stores(bb) is None
