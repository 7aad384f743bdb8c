import pytest
import torch
from PIL import Image
from transformers import Blip2ForConditionalGeneration

from mmedit_lib.backbones.backbone import Backbone, Query, state_hash
from mmedit_lib.backbones.configs import tiny_blip2_config
from mmedit_lib.backbones.registry import BACKBONES, load_backbone, save_tiny_backbone
from mmedit_lib.backbones.sites import SITE_TABLE, site_path
from mmedit_lib.backbones.tokenizer import build_word_tokenizer
from mmedit_lib.world.corpus import vocabulary
from mmedit_lib.world.world import World

FAMILIES = ["opt", "llama"]


def random_backbone(family: str, n_layers: int = 2, seed: int = 0) -> Backbone:
    from transformers import BlipImageProcessorPil
    tok = build_word_tokenizer(vocabulary(World(0)))
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(tiny_blip2_config(family, len(tok), n_layers))
    with torch.no_grad():
        model.query_tokens.normal_(0, 0.02)
    proc = BlipImageProcessorPil(size={"height": 64, "width": 64}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return Backbone(f"random-{family}", model, tok, proc, family)


def image(seed: int) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    return Image.fromarray(torch.randint(0, 255, (64, 64, 3), generator=g, dtype=torch.uint8).numpy())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("n_layers", [2, 5])
def test_every_site_resolves_to_a_module(family, n_layers):
    bb = random_backbone(family, n_layers)
    modules = dict(bb.model.named_modules())
    for site, template in SITE_TABLE[family].items():
        for layer in ([None] if "{i}" not in template else [0, -1]):
            path = bb.site(site, layer)
            assert path in modules, (site, path)
    assert bb.site("vision_block", -1) == "vision_model.encoder.layers.2"  # 3 vision layers
    assert bb.site("qformer_block", -1) == "qformer.encoder.layer.1"  # 2 Q-Former layers
    assert site_path(family, "ffn_out", -1, n_layers).endswith(f".{n_layers - 1}." +
                                                                ("fc2" if family == "opt" else "mlp.down_proj"))
    assert isinstance(modules[site_path(family, "ffn_out", 0, n_layers)], torch.nn.Linear)


def test_unknown_site_is_a_clear_error():
    with pytest.raises(KeyError, match="no site 'ffn_gate' for decoder family 'opt'"):
        site_path("opt", "ffn_gate", 0, 2)


@pytest.mark.parametrize("family", FAMILIES)
def test_our_inputs_match_blip2_forward(family):
    bb = random_backbone(family)
    q = Query(image(1), bb.vqa_prompt("what color is the circle ?"), "red")
    batch = bb.encode([q])
    assert (batch.input_ids == bb.image_token_id).sum() == bb.num_query_tokens
    with torch.no_grad():
        ours = bb.logits(batch)
        theirs = bb.model(pixel_values=batch.pixel_values, input_ids=batch.input_ids,
                          attention_mask=batch.attention_mask).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_text_only_queries_run_the_language_model_alone(family):
    bb = random_backbone(family)
    q = Query(None, "nq question: what is the capital of france ?", "paris")
    batch = bb.encode([q])
    assert bb.image_token_id not in batch.input_ids and batch.pixel_values is None
    with torch.no_grad():
        ours = bb.logits(batch)
        alone = bb.model.language_model(input_ids=batch.input_ids).logits
    torch.testing.assert_close(ours, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_padding_and_batching_do_not_change_results(family):
    bb = random_backbone(family)
    queries = [Query(image(2), bb.vqa_prompt("how many objects are there ?"), "two"),
               Query(None, "nq question: what is the capital of a very long country name ?", "paris"),
               Query(image(3), "a photo of", "a big red circle on a gray background")]
    with torch.no_grad():
        together = bb.target_logits(queries)
        alone = [bb.target_logits([q])[0] for q in queries]
        greedy_together = bb.greedy(queries, max_new_tokens=5)
        greedy_alone = [bb.greedy([q], max_new_tokens=5)[0] for q in queries]
    for (lt, tt), (la, ta) in zip(together, alone):
        assert torch.equal(tt, ta)
        torch.testing.assert_close(lt, la, rtol=1e-4, atol=1e-4)
    assert greedy_together == greedy_alone


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_follows_the_argmax_chain(family):
    bb = random_backbone(family)
    q = Query(image(4), bb.vqa_prompt("what shape is the red object ?"))
    (answer,) = bb.greedy([q], max_new_tokens=4)
    ids = bb.tokenizer(answer, add_special_tokens=False)["input_ids"]
    # re-derive step by step without the cache
    prompt = q.prompt
    expected = []
    with torch.no_grad():
        for _ in range(len(ids)):
            logits = bb.logits(bb.encode([Query(q.image, prompt)]))
            nxt = int(logits[0, -1].argmax())
            if nxt == bb.tokenizer.eos_token_id:
                break
            expected.append(nxt)
            prompt = prompt + " " + bb.tokenizer.decode([nxt])
    assert ids == expected


def test_real_blip2_loader_reads_a_local_folder(tmp_path):
    """blip2-opt-2.7b loads by path (HF layout from save_pretrained); here a tiny random config stands in."""
    bb = random_backbone("opt", n_layers=2, seed=7)
    save_tiny_backbone(tmp_path, bb.model, bb.tokenizer)
    loaded = load_backbone("blip2-opt-2.7b", path=tmp_path)
    assert loaded.family == "opt" and loaded.vqa_template == BACKBONES["blip2-opt-2.7b"].vqa_template
    assert state_hash(loaded.model) == state_hash(bb.model)
    q = Query(image(5), loaded.vqa_prompt("what color is the circle ?"), "red")
    with torch.no_grad():
        torch.testing.assert_close(loaded.target_logits([q])[0][0], bb.target_logits([q])[0][0])


def test_real_blip2_without_a_path_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("MMEDIT_BLIP2_OPT_PATH", raising=False)
    with pytest.raises(FileNotFoundError, match="MMEDIT_BLIP2_OPT_PATH"):
        load_backbone("blip2-opt-2.7b")


def test_wrong_family_and_unknown_names_are_clear_errors(tmp_path):
    bb = random_backbone("llama")
    save_tiny_backbone(tmp_path, bb.model, bb.tokenizer)
    with pytest.raises(ValueError, match="holds a llama decoder but blip2-opt-2.7b expects opt"):
        load_backbone("blip2-opt-2.7b", path=tmp_path)
    with pytest.raises(KeyError, match="unknown backbone 'gpt-9'"):
        load_backbone("gpt-9")
    with pytest.raises(FileNotFoundError, match="config.json missing"):
        load_backbone("tiny-blip2-opt", path=tmp_path / "nothing")


@pytest.mark.parametrize("family", FAMILIES)
def test_training_init_places_positions_and_spreads_the_queries(family):
    """Without these two inits stage 1 never localized a slot in budget (see train.py); pin them."""
    from mmedit_lib.backbones.train import TrainConfig, _init_model, sincos_positions_1d, sincos_positions_2d
    cfg = TrainConfig.for_family(family)
    model = _init_model(family, 50, cfg)
    positions = model.vision_model.embeddings.position_embedding[0, 1:]
    assert torch.equal(positions, sincos_positions_2d(8, positions.shape[1]))
    assert model.query_tokens.std().item() > 0.5
    rows = [torch.nn.functional.normalize(q, dim=0) for q in model.query_tokens[0]]
    assert max((rows[i] @ rows[j]).abs().item() for i in range(8) for j in range(i)) < 0.5  # distinct queries
    if family == "opt":
        table = model.language_model.model.decoder.embed_positions.weight[2:]
        expected = sincos_positions_1d(table.shape[0], table.shape[1]) * cfg.opt_position_scale / 0.5 ** 0.5
        assert torch.allclose(table, expected)


def test_image_features_are_reused_bit_identically_only_while_the_image_side_is_untouched(shipped):
    bb = shipped("tiny-blip2-opt")
    size = bb.model.config.vision_config.image_size
    pixels = torch.rand(2, 3, size, size)
    bb._image_cache.clear()
    param = bb.model.vision_model.embeddings.patch_embedding.weight
    with torch.no_grad():
        first = bb.image_features(pixels)
        assert bb.image_features(pixels.clone()) is first  # the same bytes in another tensor: the kept features
        saved = param.clone()
        param.add_(1.0)  # an in-place change of the image side: recomputed
        changed = bb.image_features(pixels)
        param.copy_(saved)
        assert not torch.equal(changed, first)
        bb._image_cache.clear()
        assert torch.equal(bb.image_features(pixels), first)  # recomputing gives the same bits
        half = pixels.to(torch.bfloat16)  # pixels in a dtype numpy lacks (a half-precision real backbone) are keyed
        assert bb._image_cache_key(half) != bb._image_cache_key(pixels) == bb._image_cache_key(pixels.clone())
    flag = param.requires_grad
    param.requires_grad_(True)  # an editor training the image side: never kept, and the graph is there
    try:
        assert bb._image_cache_key(pixels) is None and bb.image_features(pixels).requires_grad
    finally:
        param.requires_grad_(flag)
    handle = bb.model.vision_model.register_forward_hook(lambda *a: None)  # a trace hook: computed afresh
    try:
        with torch.no_grad():
            assert bb._image_cache_key(pixels) is None
    finally:
        handle.remove()
