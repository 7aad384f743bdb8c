import pytest
import torch
from PIL import Image
from transformers import Blip2ForConditionalGeneration, LlavaForConditionalGeneration

from mmedit_lib.backbones.architectures import DECODER_SITES, architecture_of
from mmedit_lib.backbones.backbone import Backbone, Query, state_hash
from mmedit_lib.backbones.configs import tiny_blip2_config, tiny_llava_config
from mmedit_lib.backbones.registry import BACKBONES, load_backbone, save_tiny_backbone
from mmedit_lib.backbones.tokenizer import build_word_tokenizer
from mmedit_lib.world.corpus import vocabulary
from mmedit_lib.world.world import World

FAMILIES = ["opt", "llama"]
KINDS = ["opt", "llama", "llava"]  # BLIP-2 + OPT, BLIP-2 + LLaMA (MiniGPT-4), LLaVA (LLaMA)


def random_backbone(family: str, n_layers: int = 2, seed: int = 0) -> Backbone:
    """A tiny random backbone: "opt" / "llama" a BLIP-2 with that decoder, "llava" a LLaVA."""
    from transformers import BlipImageProcessorPil
    tok = build_word_tokenizer(vocabulary(World(0)))
    torch.manual_seed(seed)
    if family == "llava":
        model = LlavaForConditionalGeneration(tiny_llava_config(len(tok), n_layers))
    else:
        model = Blip2ForConditionalGeneration(tiny_blip2_config(family, len(tok), n_layers))
        with torch.no_grad():
            model.query_tokens.normal_(0, 0.02)
    proc = BlipImageProcessorPil(size={"height": 64, "width": 64}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return Backbone(f"random-{family}", model, tok, proc, model.config.text_config.model_type)


def image(seed: int) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    return Image.fromarray(torch.randint(0, 255, (64, 64, 3), generator=g, dtype=torch.uint8).numpy())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_layers", [2, 5])
def test_every_site_resolves_and_carries_its_declared_widths(kind, n_layers):
    """Each site of the architecture's table is a module, and a forward pass shows the widths the table declares on
    the sides it declares them (the pyvene-style table is checked against the model, not trusted)."""
    bb = random_backbone(kind, n_layers)
    modules = dict(bb.model.named_modules())
    seen, handles = {}, []
    for name, site in bb.sites.items():
        for layer in ([None] if "{i}" not in site.path else [0, -1]):
            resolved = bb.site_info(name, layer)
            assert resolved.path in modules, (name, resolved.path)
            if name == "layers":
                continue

            def hook(module, args, kwargs, output, key=(name, layer)):
                seen[key] = (args[0] if args else kwargs.get("hidden_states"), output)
            handles.append(modules[resolved.path].register_forward_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            bb.logits(bb.encode([Query(image(1), bb.vqa_prompt("what color is the circle ?"), "red")]))
    finally:
        for handle in handles:
            handle.remove()
    config = bb.model.config
    for (name, layer), (inputs, output) in seen.items():
        site = bb.sites[name]
        for side, tensor in (("input", inputs), ("output", output)):
            width = site.width(config, side)
            if width is not None:
                assert isinstance(tensor, torch.Tensor) and tensor.shape[-1] == width, (name, side)
    assert len(seen) == 2 * sum("{i}" in s.path for n, s in bb.sites.items() if n != "layers") + sum(
        "{i}" not in s.path for n, s in bb.sites.items() if n != "layers")
    last = n_layers - 1
    assert bb.site("ffn_out", -1).endswith(f".{last}." + ("fc2" if kind == "opt" else "mlp.down_proj"))
    assert isinstance(modules[bb.site("ffn_out", 0)], torch.nn.Linear)


def test_the_vision_sites_count_only_the_blocks_the_language_model_reads():
    """BLIP-2 reads its ViT's last block; LLaVA-1.5 the penultimate one (`vision_feature_layer=-2`), so its last read
    block is block n-2, and editing block n-1 changes no logit."""
    blip2, llava = random_backbone("opt"), random_backbone("llava")
    assert blip2.site("vision_block", -1) == "vision_model.encoder.layers.2"  # 3 ViT blocks
    assert blip2.site("qformer_block", -1) == "qformer.encoder.layer.1"  # 2 Q-Former layers
    assert llava.site("vision_block", -1) == "model.vision_tower.encoder.layers.2"  # 4 CLIP blocks, 3 read
    assert llava.stack_depth("vision_block") == 3 and "qformer_block" not in llava.sites
    q = Query(image(2), llava.vqa_prompt("what shape is it ?"), "circle")
    with torch.no_grad():
        before = llava.logits(llava.encode([q]))
        unread = llava.model.get_submodule("model.vision_tower.encoder.layers.3.mlp.fc2").weight
        unread.add_(1.0)
        llava._image_cache.clear()
        assert torch.equal(llava.logits(llava.encode([q])), before)
        read = llava.module("vision_ffn_out", -1).weight
        read.add_(1.0)
        assert not torch.equal(llava.logits(llava.encode([q])), before)


def test_decoder_sites_are_shared_by_decoder_class():
    """MiniGPT-4's BLIP-2 and LLaVA share the LLaMA rows: one table per decoder, prefixed per architecture."""
    llama, llava = random_backbone("llama"), random_backbone("llava")
    for name in DECODER_SITES["LlamaConfig"]:
        if name == "layers":
            continue
        a, b = llama.site(name, 0), llava.site(name, 0)
        assert a.removeprefix("language_model.model.") == b.removeprefix("model.language_model.")
    assert architecture_of(llava.model.config).key == "llava" and llava.gated_ffn and not random_backbone("opt").gated_ffn


def test_unknown_site_is_a_clear_error():
    with pytest.raises(KeyError, match="no site 'ffn_gate' in BLIP-2 with a opt decoder"):
        random_backbone("opt").site("ffn_gate", 0)
    with pytest.raises(IndexError, match="out of range for the 2 language layers"):
        random_backbone("opt").site("ffn_out", 2)


@pytest.mark.parametrize("kind", KINDS)
def test_our_inputs_match_the_models_own_forward(kind):
    bb = random_backbone(kind)
    q = Query(image(1), bb.vqa_prompt("what color is the circle ?"), "red")
    batch = bb.encode([q])
    assert (batch.input_ids == bb.image_token_id).sum() == bb.n_image_tokens
    with torch.no_grad():
        ours = bb.logits(batch)
        theirs = bb.model(pixel_values=batch.pixel_values, input_ids=batch.input_ids,
                          attention_mask=batch.attention_mask).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("start", [0, 1, -1])
def test_logits_from_a_layer_on_are_the_logits_bit_for_bit(kind, start):
    """`logits_above` reruns only the layers from `start` on (T-Patcher's and UniKE's patch fitting): the same bits
    as the full pass, with and without a hook at or above `start` that changes the output; a hook below `start`
    makes it the full pass itself."""
    bb = random_backbone(kind, n_layers=3)
    batch = bb.encode([Query(image(3), bb.vqa_prompt("what color is it ?"), "red"),
                       Query(None, "nq question: who wrote it ?", "someone")])
    with torch.no_grad():
        assert torch.equal(bb.logits_above(batch, start)(), bb.logits(batch))
        shift = lambda module, inputs, output: output + 0.5
        handle = bb.module("ffn_out", -1).register_forward_hook(shift)
        try:
            run = bb.logits_above(batch, start)
            assert torch.equal(run(), bb.logits(batch))
        finally:
            handle.remove()
        if start % 3 > 0:
            handle = bb.module("ffn_out", 0).register_forward_hook(shift)
            try:
                run = bb.logits_above(batch, start)
                base = bb.logits(batch)
            finally:
                handle.remove()
            assert not torch.equal(run(), base)  # the full pass, now without the hook


@pytest.mark.parametrize("kind", KINDS)
def test_the_loss_from_a_layer_on_trains_what_the_full_loss_trains(kind):
    """`loss_above` (FT's, GRACE's and BalancEdit's steps): the loss of the full pass, bit for bit, and so its
    gradient and every Adam step; `fit_edit` with `paths` in the last layer ends at the same weights as without."""
    from mmedit_lib.editors.base import fit_edit
    bb = random_backbone(kind, n_layers=3)
    query = Query(image(3), bb.vqa_prompt("what color is it ?"), "red")
    assert bb.layer_of(bb.site("ffn_out", -1)) == 2 and bb.layer_of(bb.site("vision_block", -1)) is None
    weight = bb.module("ffn_out", -1).weight
    start = weight.detach().clone()
    ends = []
    for paths in ([], [bb.site("ffn_out", -1)]):
        with torch.no_grad():
            weight.copy_(start)
        weight.requires_grad_(True)
        if paths:
            assert torch.equal(bb.loss_above([query], -1)(), bb.loss([query]))
        fit_edit(bb, query, [weight], lr=1e-2, steps=5, stop_at_loss=0.0, paths=paths)
        weight.requires_grad_(False)
        ends.append(weight.detach().clone())
    assert not torch.equal(ends[0], start) and torch.equal(ends[0], ends[1])


@pytest.mark.parametrize("kind", KINDS)
def test_text_only_queries_run_the_language_model_alone(kind):
    bb = random_backbone(kind)
    q = Query(None, "nq question: what is the capital of france ?", "paris")
    batch = bb.encode([q])
    assert bb.image_token_id not in batch.input_ids and batch.pixel_values is None
    with torch.no_grad():
        ours = bb.logits(batch)
        hidden = bb.language_model(input_ids=batch.input_ids).last_hidden_state
        alone = bb.model.get_submodule(bb.arch.lm_head)(hidden)
    torch.testing.assert_close(ours, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", KINDS)
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


@pytest.mark.parametrize("family", KINDS)
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


def test_real_llava_loader_reads_a_local_folder_in_the_llava_hf_layout(tmp_path):
    """llava-1.5-7b loads by path from a folder as llava-hf's is laid out (LlavaForConditionalGeneration weights,
    a CLIPImageProcessor, a tokenizer with `<image>`); here a tiny random LLaVA stands in. Its queries are written
    in LLaVA-1.5's conversation: `<s>USER: ` + the image's patch tokens + `\n` + the question + ` ASSISTANT:`."""
    from transformers import CLIPImageProcessor
    bb = random_backbone("llava", seed=3)
    bb.model.save_pretrained(tmp_path)
    bb.tokenizer.save_pretrained(tmp_path)
    CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(tmp_path)
    loaded = load_backbone("llava-1.5-7b", path=tmp_path)
    assert loaded.arch.key == "llava" and loaded.prompt_format.name == "llava-1.5"
    assert state_hash(loaded.model) == state_hash(bb.model)
    q = Query(image(5), loaded.vqa_prompt("what color is the circle ?"), "red")
    ids = loaded.encode([q]).input_ids[0].tolist()
    head = [loaded.tokenizer.bos_token_id] + loaded._ids("USER: ")
    assert ids[:len(head)] == head and ids[len(head):len(head) + 16] == [loaded.image_token_id] * 16
    assert loaded.question_of(q.prompt) == "what color is the circle ?" and q.prompt.endswith("ASSISTANT:")
    with torch.no_grad():
        batch = loaded.encode([q])
        theirs = loaded.model(input_ids=batch.input_ids, pixel_values=batch.pixel_values,
                              attention_mask=batch.attention_mask).logits
        torch.testing.assert_close(loaded.logits(batch), theirs, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="holds a LlavaForConditionalGeneration but tiny-blip2-opt is a blip2"):
        load_backbone("tiny-blip2-opt", path=tmp_path)


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
    projection = bb.model.language_projection.weight  # the projector is on the image side too
    with torch.no_grad():
        first = bb.image_features(pixels)
        projection.add_(1.0)
        moved = bb.image_features(pixels)
        projection.sub_(1.0)
    assert not torch.equal(moved, first)
    handle = bb.model.vision_model.register_forward_hook(lambda *a: None)  # a trace hook: computed afresh
    try:
        with torch.no_grad():
            assert bb._image_cache_key(pixels) is None
    finally:
        handle.remove()


def test_every_patch_learns_its_quadrants_slot_and_the_images_labels():
    """stage1_patch_labels: patch p of a 4x4 grid gets the slot labels of its quadrant (row-major 2x2, "all") and the
    image's background, count, landmark and glyph (LLaVA's default, "landmark", the last two); "none" (BLIP-2's)
    adds no term and an unknown choice is refused."""
    from mmedit_lib.backbones.train import ARCHITECTURE_DEFAULTS, TrainConfig, VisionHeads, _per_patch_labels
    labels = {"present": torch.tensor([[1, 0, 1, 1]]), "color": torch.tensor([[4, -100, 2, 0]]),
              "shape": torch.tensor([[1, -100, 3, 2]]), "size": torch.tensor([[0, -100, 1, 1]]),
              "background": torch.tensor([2]), "count": torch.tensor([3]), "entity": torch.tensor([7]),
              "glyph": torch.full((1, 36), -100)}
    per_patch = _per_patch_labels(labels, 16)
    quadrant_of = [0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]
    assert per_patch["color"][0].tolist() == [[4, -100, 2, 0][q] for q in quadrant_of]
    assert per_patch["present"][0].tolist() == [[1, 0, 1, 1][q] for q in quadrant_of]
    assert per_patch["count"][0].tolist() == [3] * 16 and per_patch["entity"][0].tolist() == [7] * 16
    assert per_patch["glyph"].shape == (1, 16, 36)
    assert TrainConfig.for_family("llama", "llava").stage1_patch_labels == "landmark" == ARCHITECTURE_DEFAULTS[
        "llava"]["stage1_patch_labels"]
    assert TrainConfig.for_family("llama").stage1_patch_labels == "none"

    torch.manual_seed(0)
    heads = {k: VisionHeads(8, 10, dense=True, patch_labels=k) for k in ("none", "landmark", "all")}
    for h in heads.values():
        h.load_state_dict(heads["none"].state_dict())
    batch = {**labels, "glyph": torch.randint(0, 2, (1, 36)), "patch": torch.zeros(1, 16, dtype=torch.long),
             "patch_shape": torch.zeros(1, 16, dtype=torch.long)}
    query, patches = torch.randn(1, 7, 8), torch.randn(1, 16, 8)
    none, landmark, every = (heads[k].loss(query, patches, batch) for k in ("none", "landmark", "all"))
    assert none < landmark < every
    with pytest.raises(ValueError, match="stage1_patch_labels is one of none, landmark, all"):
        VisionHeads(8, 10, dense=True, patch_labels="everything")
