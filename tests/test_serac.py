"""SERAC's two readings of the counterfactual model (editors/serac.py): "copy" trains some of the backbone's
language-model layers and shares the rest with it; "small" is EasyEdit's BLIP-2 reading, a separate small language
model reading the backbone's Q-Former through a new projection. Either way the backbone is never written."""
import pytest
import torch

from mmedit_lib.backbones.backbone import state_hash
from mmedit_lib.editors.registry import make_editor, make_hparams
from mmedit_lib.editors.serac import counterfactual_gib, counterfactual_model, trained_names
from mmedit_lib.runners.cases import load_cases

QUICK = {"cf_steps": 3, "classifier_epochs": 1}


@pytest.fixture(scope="module")
def opt(shipped):
    return shipped("tiny-blip2-opt")


@pytest.fixture(scope="module")
def cases(opt, smoke_world):
    world, _ = smoke_world("tiny-blip2-opt")
    return load_cases(opt, world, "vqa", n=3, seed=0)


def in_scope(bb, router, query):
    """The (backbone, query) the router sends `query` to."""
    return router.route([query])[0]


def test_copy_of_one_layer_trains_that_layer_and_shares_everything_else(opt, cases):
    hp = make_hparams("serac", "tiny-blip2-opt", cf_layers=[-1], **QUICK)
    names = trained_names(opt, hp)
    last = f"{opt.site('layers')}.{opt.n_layers - 1}."
    assert names and all(n.startswith(last) for n in names)
    model, trained = counterfactual_model(opt, hp)
    own = {n for n, p in model.named_parameters() if p.data_ptr() != opt.model.get_parameter(n).data_ptr()}
    assert own == set(trained) == set(names)  # only the trained layer is the copy's own memory
    everything = trained_names(opt, make_hparams("serac", "tiny-blip2-opt"))
    assert counterfactual_gib(opt, hp) < counterfactual_gib(opt, make_hparams("serac", "tiny-blip2-opt")) / 2
    assert len(everything) > len(names)

    reference, flags = state_hash(opt.model), [p.requires_grad for p in opt.model.parameters()]
    assert all(flags)  # a loaded backbone's weights require grad: the shared ones must get none
    editor = make_editor("serac", backbone="tiny-blip2-opt", cf_layers=[-1], **QUICK)
    editor.prepare(opt, cases)
    assert [p.requires_grad for p in opt.model.parameters()] == flags
    assert all(p.grad is None for p in opt.model.parameters())
    assert set(editor.prepared.cf_weights) == set(names)
    assert state_hash(opt.model) == reference  # training the copy's own layer never wrote the shared ones
    edit = editor.edit(opt, cases[0].request)
    cf, _ = in_scope(opt, opt.router, cases[0].request.query)
    shared = [(a.data_ptr(), b.data_ptr()) for a, b in zip(cf.model.vision_model.parameters(),
                                                           opt.model.vision_model.parameters())]
    assert cf is not opt and all(a == b for a, b in shared)  # the copy reads the backbone's own ViT weights
    edit.restore()
    assert opt.router is None and state_hash(opt.model) == reference


def test_small_counterfactual_is_a_separate_language_model_on_the_backbones_qformer(opt, cases, tmp_path):
    from transformers import OPTConfig, OPTForCausalLM
    text = opt.model.config.text_config
    small = OPTForCausalLM(OPTConfig(vocab_size=len(opt.tokenizer), hidden_size=16, num_hidden_layers=1, ffn_dim=32,
                                     num_attention_heads=2, word_embed_proj_dim=16, max_position_embeddings=256,
                                     pad_token_id=text.pad_token_id, bos_token_id=text.bos_token_id,
                                     eos_token_id=text.eos_token_id))
    small.save_pretrained(tmp_path / "small")
    reference = state_hash(opt.model)
    editor = make_editor("serac", backbone="tiny-blip2-opt", counterfactual="small", small_model=str(tmp_path / "small"),
                         **QUICK)
    flags = [p.requires_grad for p in opt.model.parameters()]
    editor.prepare(opt, cases)
    assert state_hash(opt.model) == reference
    assert [p.requires_grad for p in opt.model.parameters()] == flags
    assert all(p.grad is None for p in opt.model.parameters())
    assert {n.split(".")[0] for n in editor.prepared.cf_weights} == {"language_model", "language_projection"}
    edit = editor.edit(opt, cases[0].request)
    cf, query = in_scope(opt, opt.router, cases[0].request.query)
    assert cf.model.language_model.config.hidden_size == 16 and cf.n_layers == 1
    assert cf.model.qformer is opt.model.qformer and cf.model.query_tokens is opt.model.query_tokens
    assert cf.stop_ids == opt.stop_ids  # answers end as the backbone's do
    with torch.no_grad():
        logits, target = opt.target_logits([cases[0].request.query])[0]
    assert torch.isfinite(logits).all() and logits.shape[-1] >= len(opt.tokenizer)
    answer = opt.greedy([cases[0].request.query])
    assert isinstance(answer[0], str)
    edit.restore()
    assert opt.router is None and state_hash(opt.model) == reference


def test_the_readings_refuse_what_they_cannot_build(monkeypatch):
    monkeypatch.delenv("MMEDIT_SERAC_SMALL", raising=False)
    with pytest.raises(ValueError, match="MMEDIT_SERAC_SMALL"):
        make_hparams("serac", counterfactual="small")
    with pytest.raises(ValueError, match="counterfactual is one of"):
        make_hparams("serac", counterfactual="tiny")
    with pytest.raises(ValueError, match="read only with counterfactual='small'"):
        make_hparams("serac", small_model="random:opt-125m")
    monkeypatch.setenv("MMEDIT_SERAC_SMALL", "/models/opt-125m")
    assert make_hparams("serac", counterfactual="small").small_model == "/models/opt-125m"  # in the prepare key


def test_the_full_size_files_take_easyedits_readings():
    blip2, minigpt4 = make_hparams("serac", "blip2-opt-2.7b", small_model="random:opt-125m"), \
        make_hparams("serac", "minigpt4-7b")
    assert blip2.counterfactual == "small" and blip2.cf_lr == 1e-5  # EasyEdit SERAC/blip2.yaml: small_name opt-125m
    assert minigpt4.counterfactual == "copy" and minigpt4.cf_layers == (-1,)  # SERAC/minigpt4.yaml: layer 31 only


def test_the_shipped_small_architecture_is_opt_125m():
    from mmedit_lib.editors.serac import small_language_model
    with torch.device("meta"):
        lm = small_language_model("random:opt-125m", torch.bfloat16, 0)
    assert sum(p.numel() for p in lm.parameters()) == 125_239_296  # facebook/opt-125m's parameter count
    with pytest.raises(ValueError, match="known: random:opt-125m"):
        small_language_model("random:opt-13b", torch.bfloat16, 0)
