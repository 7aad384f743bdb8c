"""The MiniGPT-4 converter, on a tiny synthetic checkpoint written with the real key names of MiniGPT-4 / LAVIS
(EVA ViT-g `visual_encoder.*`, `ln_vision`, `Qformer.bert.*` with its text branch, `query_tokens`, `llama_proj`) and
of a Hugging Face Vicuna folder; then the real files' own layouts (`tests/real_layouts.py`: `eva_vit_g.pth`, LAVIS's
Blip2T5 checkpoint with `t5_proj`, `pretrained_minigpt4.pth`, a 2023 Vicuna folder with `inv_freq` buffers and only
`tokenizer.model`), converted through the CLI and checked against the upstream equations."""
import pytest
import torch
from transformers import Blip2ForConditionalGeneration, LlamaConfig

from mmedit_lib.backbones.convert_minigpt4 import ConversionError, convert_state, eva_prefixed, minigpt4_config

D_VIT, VIT_FFN, DEPTH, PATCH, IMAGE = 32, 64, 2, 8, 16
D_Q, Q_FFN, Q_LAYERS, N_QUERY = 24, 48, 4, 4
D_LLM, LLM_FFN, LLM_LAYERS, VOCAB = 40, 80, 2, 30


def synthetic_minigpt4(seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    s = {"visual_encoder.cls_token": r(1, 1, D_VIT), "visual_encoder.pos_embed": r(1, (IMAGE // PATCH) ** 2 + 1, D_VIT),
         "visual_encoder.patch_embed.proj.weight": r(D_VIT, 3, PATCH, PATCH),
         "visual_encoder.patch_embed.proj.bias": r(D_VIT),
         "ln_vision.weight": r(D_VIT), "ln_vision.bias": r(D_VIT), "query_tokens": r(1, N_QUERY, D_Q),
         "Qformer.bert.embeddings.LayerNorm.weight": r(D_Q), "Qformer.bert.embeddings.LayerNorm.bias": r(D_Q),
         "Qformer.bert.embeddings.position_ids": torch.arange(16)[None],
         "Qformer.bert.embeddings.word_embeddings.weight": r(100, D_Q),  # the unused text branch
         "llama_proj.weight": r(D_LLM, D_Q), "llama_proj.bias": r(D_LLM)}
    for i in range(DEPTH):
        b = f"visual_encoder.blocks.{i}."
        s.update({b + "norm1.weight": r(D_VIT), b + "norm1.bias": r(D_VIT), b + "attn.qkv.weight": r(3 * D_VIT, D_VIT),
                  b + "attn.q_bias": r(D_VIT), b + "attn.v_bias": r(D_VIT), b + "attn.proj.weight": r(D_VIT, D_VIT),
                  b + "attn.proj.bias": r(D_VIT), b + "norm2.weight": r(D_VIT), b + "norm2.bias": r(D_VIT),
                  b + "mlp.fc1.weight": r(VIT_FFN, D_VIT), b + "mlp.fc1.bias": r(VIT_FFN),
                  b + "mlp.fc2.weight": r(D_VIT, VIT_FFN), b + "mlp.fc2.bias": r(D_VIT)})
    for i in range(Q_LAYERS):
        q = f"Qformer.bert.encoder.layer.{i}."
        parts = [("attention", D_Q)] + ([("crossattention", D_VIT)] if i % 2 == 0 else [])
        for name, d_in in parts:
            for proj, width in (("query", D_Q), ("key", d_in), ("value", d_in)):
                s[f"{q}{name}.self.{proj}.weight"], s[f"{q}{name}.self.{proj}.bias"] = r(D_Q, width), r(D_Q)
            s[f"{q}{name}.output.dense.weight"], s[f"{q}{name}.output.dense.bias"] = r(D_Q, D_Q), r(D_Q)
            s[f"{q}{name}.output.LayerNorm.weight"], s[f"{q}{name}.output.LayerNorm.bias"] = r(D_Q), r(D_Q)
        for branch in ("", "_query"):  # "" is the text branch, dropped
            s[f"{q}intermediate{branch}.dense.weight"] = r(Q_FFN, D_Q)
            s[f"{q}intermediate{branch}.dense.bias"] = r(Q_FFN)
            s[f"{q}output{branch}.dense.weight"], s[f"{q}output{branch}.dense.bias"] = r(D_Q, Q_FFN), r(D_Q)
            s[f"{q}output{branch}.LayerNorm.weight"], s[f"{q}output{branch}.LayerNorm.bias"] = r(D_Q), r(D_Q)
    return s


def synthetic_vicuna(seed=1) -> tuple[dict, LlamaConfig]:
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    s = {"model.embed_tokens.weight": r(VOCAB, D_LLM), "model.norm.weight": r(D_LLM), "lm_head.weight": r(VOCAB, D_LLM)}
    for i in range(LLM_LAYERS):
        b = f"model.layers.{i}."
        s.update({b + f"self_attn.{p}_proj.weight": r(D_LLM, D_LLM) for p in "qkvo"})
        s.update({b + "mlp.gate_proj.weight": r(LLM_FFN, D_LLM), b + "mlp.up_proj.weight": r(LLM_FFN, D_LLM),
                  b + "mlp.down_proj.weight": r(D_LLM, LLM_FFN), b + "input_layernorm.weight": r(D_LLM),
                  b + "post_attention_layernorm.weight": r(D_LLM)})
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=D_LLM, intermediate_size=LLM_FFN, num_hidden_layers=LLM_LAYERS,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64)
    return s, config


def converted():
    source, (vicuna, text_config) = synthetic_minigpt4(), synthetic_vicuna()
    state, report = convert_state(source, vicuna)
    config = minigpt4_config(source, text_config, vision_heads=4, qformer_heads=4)
    model = Blip2ForConditionalGeneration(config)
    result = model.load_state_dict(state, strict=True)
    return source, vicuna, model.eval(), report, result


def test_every_tensor_lands_in_blip2_with_llama_and_nothing_is_left_over():
    source, vicuna, model, report, result = converted()
    assert not result.missing_keys and not result.unexpected_keys
    config = model.config
    assert (config.vision_config.num_hidden_layers, config.qformer_config.num_hidden_layers) == (DEPTH, Q_LAYERS)
    assert config.qformer_config.cross_attention_frequency == 2 and config.num_query_tokens == N_QUERY
    assert config.vision_config.image_size == IMAGE and config.image_token_id == VOCAB
    assert report["vocab"] == VOCAB and all(".intermediate." in k or ".output." in k or "embeddings." in k
                                            for k in report["dropped"])
    params = dict(model.named_parameters())
    assert torch.equal(params["language_projection.weight"], source["llama_proj.weight"])
    assert torch.equal(params["qformer.encoder.layer.2.crossattention.attention.key.weight"],
                       source["Qformer.bert.encoder.layer.2.crossattention.self.key.weight"])
    assert torch.equal(params["language_model.model.layers.1.mlp.down_proj.weight"],
                       vicuna["model.layers.1.mlp.down_proj.weight"])
    assert torch.equal(params["language_model.model.embed_tokens.weight"][:VOCAB], vicuna["model.embed_tokens.weight"])


def test_the_vision_attention_is_evas_with_query_and_value_biases_and_no_key_bias():
    source, _, model, _, _ = converted()
    x = torch.randn(2, 5, D_VIT)
    b = "visual_encoder.blocks.1.attn."
    bias = torch.cat([source[b + "q_bias"], torch.zeros(D_VIT), source[b + "v_bias"]])
    q, k, v = torch.nn.functional.linear(x, source[b + "qkv.weight"], bias).chunk(3, dim=-1)  # EVA's attention
    heads = lambda t: t.view(2, 5, 4, D_VIT // 4).transpose(1, 2)  # noqa: E731
    attn = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) * (D_VIT // 4) ** -0.5, dim=-1) @ heads(v)
    expected = torch.nn.functional.linear(attn.transpose(1, 2).reshape(2, 5, D_VIT), source[b + "proj.weight"],
                                          source[b + "proj.bias"])
    with torch.no_grad():
        got = model.vision_model.encoder.layers[1].self_attn(x)[0]
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_the_cli_writes_a_folder_that_loads_as_minigpt4_7b_and_answers(tmp_path):
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from mmedit_lib.backbones.backbone import Query
    from mmedit_lib.backbones.registry import load_backbone
    from mmedit_lib.cli import main
    source, (vicuna, text_config) = synthetic_minigpt4(), synthetic_vicuna()
    eva = {k[len("visual_encoder."):]: v for k, v in source.items() if k.startswith("visual_encoder.")}
    torch.save(eva, tmp_path / "eva_vit_g.pth")  # EVA's own names, as eva_vit_g.pth has them
    torch.save({"model": {k: v for k, v in source.items() if not k.startswith("visual_encoder.")}},
               tmp_path / "minigpt4.pth")
    folder = tmp_path / "vicuna"
    folder.mkdir()
    save_file(vicuna, folder / "model.safetensors")
    text_config.pad_token_id, text_config.eos_token_id, text_config.bos_token_id = 0, 1, 2
    text_config.save_pretrained(folder)
    words = ["<pad>", "</s>", "<s>"] + [f"w{i}" for i in range(VOCAB - 4)] + ["<unk>"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", bos_token="<s>",
                            unk_token="<unk>").save_pretrained(folder)
    assert main(["convert-minigpt4", "--checkpoint", str(tmp_path / "eva_vit_g.pth"), "--checkpoint",
                 str(tmp_path / "minigpt4.pth"), "--vicuna", str(folder), "--out", str(tmp_path / "out"),
                 "--vision-heads", "4", "--qformer-heads", "4", "--vision-layers", str(DEPTH)]) == 0
    bb = load_backbone("minigpt4-7b", path=tmp_path / "out")
    assert bb.family == "llama" and bb.n_image_tokens == N_QUERY and bb.image_token_id == VOCAB
    query = Query(torch.randn(3, IMAGE, IMAGE), bb.vqa_prompt("w1 w2"), "w3")
    logits, target_ids = bb.target_logits([query])[0]
    assert logits.shape == (1, VOCAB + 1) and target_ids.tolist() == [6]
    assert main(["convert-minigpt4", "--checkpoint", str(tmp_path / "eva_vit_g.pth"), "--vicuna", str(folder),
                 "--out", str(tmp_path / "bad")]) == 1  # the Q-Former is missing: one clear error, no folder
    assert not (tmp_path / "bad").exists()


def test_an_unknown_key_or_a_lone_bias_is_one_clear_error():
    source, (vicuna, _) = synthetic_minigpt4(), synthetic_vicuna()
    with pytest.raises(ConversionError, match="unknown MiniGPT-4 key Qformer.bert.pooler.dense.weight"):
        convert_state({**source, "Qformer.bert.pooler.dense.weight": torch.zeros(1)}, vicuna)
    with pytest.raises(ConversionError, match="unknown MiniGPT-4 key opt_proj_extra.weight"):
        convert_state({**source, "opt_proj_extra.weight": torch.zeros(1)}, vicuna)
    with pytest.raises(ConversionError, match="unknown Vicuna key rotary_emb.inv_freq"):
        convert_state(source, {**vicuna, "rotary_emb.inv_freq": torch.zeros(1)})
    lone = {k: v for k, v in source.items() if k != "visual_encoder.blocks.0.attn.v_bias"}
    with pytest.raises(ConversionError, match="q_bias and v_bias"):
        convert_state(lone, vicuna)
    with pytest.raises(ConversionError, match="no Vicuna weights"):
        convert_state(source, {})


def test_evas_own_file_is_read_under_blip2s_names_and_its_last_block_is_dropped_as_blip2_does():
    source, (vicuna, text_config) = synthetic_minigpt4(), synthetic_vicuna()
    eva = {k[len("visual_encoder."):]: v for k, v in source.items() if k.startswith("visual_encoder.")}
    others = {k: v for k, v in source.items() if not k.startswith("visual_encoder.")}
    assert {**others, **eva_prefixed(eva)}.keys() == source.keys() and eva_prefixed(others) is others
    state, report = convert_state(source, vicuna, vision_layers=DEPTH - 1)
    config = minigpt4_config(source, text_config, vision_heads=4, qformer_heads=4, vision_layers=DEPTH - 1)
    assert config.vision_config.num_hidden_layers == DEPTH - 1
    assert f"visual_encoder.blocks.{DEPTH - 1}.attn.qkv.weight" in report["dropped"]
    result = Blip2ForConditionalGeneration(config).load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


# ---- the real files' layouts (tests/real_layouts.py) ----

def _layer_norm(x, weight, bias, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def _attention(q, k, v, heads):
    split = lambda t: t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    weights = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
    return (weights @ v).transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def reference_image_features(eva, blip2, minigpt4, pixels, kept_blocks, block_eps=1e-6, ln_vision_eps=1e-5):
    """EVA ViT-g -> ln_vision -> Q-Former (query path) -> llama_proj, from the upstream equations (LAVIS eva_vit.py,
    blip2.py, Qformer.py; MiniGPT-4 encode_img) on the fixtures' tensors, in plain torch."""
    import torch.nn.functional as F
    from real_layouts import PATCH, Q_HEADS, VIT_HEADS
    gelu = F.gelu  # nn.GELU / BERT's "gelu": the exact (erf) form
    x = F.conv2d(pixels, eva["patch_embed.proj.weight"], eva["patch_embed.proj.bias"], stride=PATCH)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([eva["cls_token"].expand(x.shape[0], -1, -1), x], dim=1) + eva["pos_embed"]
    for i in range(kept_blocks):
        b = lambda name: eva[f"blocks.{i}.{name}"]  # noqa: E731
        h = _layer_norm(x, b("norm1.weight"), b("norm1.bias"), block_eps)
        qkv_bias = torch.cat([b("attn.q_bias"), torch.zeros_like(b("attn.q_bias")), b("attn.v_bias")])
        q, k, v = F.linear(h, b("attn.qkv.weight"), qkv_bias).chunk(3, dim=-1)
        x = x + F.linear(_attention(q, k, v, VIT_HEADS), b("attn.proj.weight"), b("attn.proj.bias"))
        h = _layer_norm(x, b("norm2.weight"), b("norm2.bias"), block_eps)
        x = x + F.linear(gelu(F.linear(h, b("mlp.fc1.weight"), b("mlp.fc1.bias"))), b("mlp.fc2.weight"),
                         b("mlp.fc2.bias"))
    image = _layer_norm(x, blip2["ln_vision.weight"], blip2["ln_vision.bias"], ln_vision_eps)
    q = blip2["query_tokens"].expand(x.shape[0], -1, -1)
    q = _layer_norm(q, blip2["Qformer.bert.embeddings.LayerNorm.weight"],
                    blip2["Qformer.bert.embeddings.LayerNorm.bias"], 1e-12)
    layer = 0
    while f"Qformer.bert.encoder.layer.{layer}.attention.self.query.weight" in blip2:
        t = lambda name: blip2[f"Qformer.bert.encoder.layer.{layer}.{name}"]  # noqa: E731
        lin = lambda h, name: F.linear(h, t(name + ".weight"), t(name + ".bias"))  # noqa: E731
        post = lambda h, res, name: _layer_norm(lin(h, name + ".dense") + res, t(name + ".LayerNorm.weight"),  # noqa
                                                t(name + ".LayerNorm.bias"), 1e-12)
        a = _attention(lin(q, "attention.self.query"), lin(q, "attention.self.key"), lin(q, "attention.self.value"),
                       Q_HEADS)
        q = post(a, q, "attention.output")
        if f"Qformer.bert.encoder.layer.{layer}.crossattention.self.query.weight" in blip2:
            a = _attention(lin(q, "crossattention.self.query"), lin(image, "crossattention.self.key"),
                           lin(image, "crossattention.self.value"), Q_HEADS)
            q = post(a, q, "crossattention.output")
        q = post(gelu(lin(q, "intermediate_query.dense")), q, "output_query")
        layer += 1
    return F.linear(q, minigpt4["llama_proj.weight"], minigpt4["llama_proj.bias"])


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The real layouts (tests/real_layouts.py) converted through the CLI: (files, output folder, what it printed)."""
    import contextlib
    import io
    from mmedit_lib.cli import main
    from real_layouts import EVA_BLOCKS, Q_HEADS, VIT_HEADS, write_real_layouts
    root = tmp_path_factory.mktemp("real")
    files = write_real_layouts(root / "files")
    argv = ["convert-minigpt4", "--checkpoint", str(files["eva"]), "--checkpoint", str(files["blip2"]),
            "--checkpoint", str(files["minigpt4"]), "--vicuna", str(files["vicuna"]), "--out", str(root / "out"),
            "--vision-heads", str(VIT_HEADS), "--qformer-heads", str(Q_HEADS), "--vision-layers", str(EVA_BLOCKS - 1)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    return files, root / "out", printed.getvalue()


def test_the_real_files_convert_and_every_key_is_mapped_or_dropped_with_a_reason(real, tmp_path):
    from mmedit_lib.backbones.convert_minigpt4 import _load_tensors, convert_folder
    from real_layouts import EVA_BLOCKS, LLM_LAYERS, Q_HEADS, VIT_HEADS
    files, out, printed = real
    assert "Blip2T5's projection into FlanT5" in printed and "rotary buffer" in printed
    report = convert_folder([files["eva"], files["blip2"], files["minigpt4"]], files["vicuna"], tmp_path / "again",
                            VIT_HEADS, Q_HEADS, EVA_BLOCKS - 1)
    sources = {**eva_prefixed(_load_tensors(files["eva"])), **_load_tensors(files["blip2"]),
               **_load_tensors(files["minigpt4"]), **_load_tensors(files["vicuna"] / "pytorch_model.bin")}
    dropped = report["dropped"]
    last = f"visual_encoder.blocks.{EVA_BLOCKS - 1}."
    assert set(dropped) == ({"t5_proj.weight", "t5_proj.bias", "Qformer.bert.embeddings.position_ids"}
                            | {f"model.layers.{i}.self_attn.rotary_emb.inv_freq" for i in range(LLM_LAYERS)}
                            | {k for k in sources if k.startswith(last)})
    assert all(isinstance(reason, str) and len(reason) > 20 for reason in dropped.values())
    # everything else is mapped: one tensor each, but q_bias + v_bias -> one qkv.bias per kept block, plus <image>'s
    # rows appended in place; and the written model loads it all strictly
    from safetensors.torch import load_file
    written = load_file(str(out / "model.safetensors"))
    assert len(written) == len(sources) - len(dropped) - (EVA_BLOCKS - 1)
    from transformers import Blip2Config, Blip2ForConditionalGeneration
    result = Blip2ForConditionalGeneration(Blip2Config.from_pretrained(out)).load_state_dict(written, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_the_converted_image_features_are_the_upstream_computation(real):
    from mmedit_lib.backbones.registry import load_backbone
    from real_layouts import EVA_BLOCKS, IMAGE, blip2_t5_state, eva_vit_g_state, minigpt4_state
    _, out, _ = real
    bb = load_backbone("minigpt4-7b", path=out)
    pixels = torch.randn(2, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        got = bb.image_features(pixels)
    expected = reference_image_features(eva_vit_g_state(), blip2_t5_state(), minigpt4_state(), pixels, EVA_BLOCKS - 1)
    assert got.shape == expected.shape and expected.abs().max() > 1
    assert (got - expected).abs().max() <= 1e-5
    assert {layer.layer_norm1.eps for layer in bb.model.vision_model.encoder.layers} == {1e-6}  # EVA's blocks


def test_ln_vision_has_laviss_eps(real):
    """LAVIS's ln_vision is LayerNorm(num_features): eps 1e-5 (the old converter wrote 1e-6). On an input of small
    variance the two differ by percents, so this sees the eps itself."""
    from mmedit_lib.backbones.registry import load_backbone
    from real_layouts import D_VIT, blip2_t5_state
    _, out, _ = real
    norm = load_backbone("minigpt4-7b", path=out).model.vision_model.post_layernorm
    x = torch.randn(3, D_VIT, generator=torch.Generator().manual_seed(0)) * 1e-3
    blip2 = blip2_t5_state()
    with torch.no_grad():
        got = norm(x)
    assert torch.allclose(got, _layer_norm(x, blip2["ln_vision.weight"], blip2["ln_vision.bias"], 1e-5), atol=1e-5)
    assert not torch.allclose(got, _layer_norm(x, blip2["ln_vision.weight"], blip2["ln_vision.bias"], 1e-6),
                              atol=1e-2)


def test_a_sentencepiece_only_vicuna_pads_with_eos_and_batches_queries_of_unequal_length(real):
    from mmedit_lib.backbones.backbone import Query
    from mmedit_lib.backbones.registry import load_backbone
    from real_layouts import IMAGE, VOCAB
    files, out, _ = real
    assert sorted(p.name for p in files["vicuna"].iterdir() if p.name.startswith("tokenizer")) == [
        "tokenizer.model", "tokenizer_config.json"]
    bb = load_backbone("minigpt4-7b", path=out)
    assert bb.tokenizer.pad_token == bb.tokenizer.eos_token == "</s>" and bb.image_token_id == VOCAB
    image = torch.randn(3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(1))
    short = Query(image, bb.vqa_prompt("is there a bus"), "yes")
    long = Query(image, bb.vqa_prompt("how many people are in the picture today"), "two three")
    assert len(bb.tokenizer(long.prompt).input_ids) > len(bb.tokenizer(short.prompt).input_ids)
    (short_logits, short_ids), (long_logits, long_ids) = bb.target_logits([short, long])
    assert short_logits.shape[0] == len(short_ids) and long_logits.shape[0] == len(long_ids) > 0
    alone, _ = bb.target_logits([short])[0]  # left padding and its mask leave the short row's logits as they are
    assert torch.allclose(short_logits, alone, atol=1e-4)


def _count_loads(monkeypatch):
    import mmedit_lib.backbones.convert_minigpt4 as module

    def refuse(path):
        raise AssertionError(f"a weight file was read before the tokenizer was checked: {path}")
    monkeypatch.setattr(module, "_load_tensors", refuse)


@pytest.mark.parametrize("damage", ["missing", "garbage", "wrong vocabulary"])
def test_a_broken_tokenizer_fails_fast_with_one_clear_error_before_any_weight_is_read(tmp_path, monkeypatch, damage):
    from mmedit_lib.backbones.convert_minigpt4 import convert_folder
    from real_layouts import write_real_layouts, write_vicuna_tokenizer
    files = write_real_layouts(tmp_path / "files")
    folder = files["vicuna"]
    if damage == "missing":
        for p in folder.glob("tokenizer*"):
            p.unlink()
        (folder / "special_tokens_map.json").unlink()
    elif damage == "garbage":
        (folder / "tokenizer.model").write_bytes(b"not a sentencepiece model" * 10)
    else:
        write_vicuna_tokenizer(folder, vocab_size=40)
    _count_loads(monkeypatch)
    with pytest.raises(ConversionError, match=f"Vicuna tokenizer in {folder}"):
        convert_folder([files["eva"], files["blip2"], files["minigpt4"]], folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_sharded_folder_reads_only_its_indexed_files(tmp_path):
    import json
    from mmedit_lib.backbones.convert_minigpt4 import vicuna_weight_files
    from real_layouts import vicuna_state, write_vicuna_folder
    folder = write_vicuna_folder(tmp_path / "vicuna", tokenizer=False)
    (folder / "pytorch_model.bin").unlink()
    state = vicuna_state()
    keys = sorted(state)
    shards = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2],
              "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2:]}
    for name, part in shards.items():
        torch.save({k: state[k] for k in part}, folder / name)
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"weight_map": {k: name for name, part in shards.items() for k in part}}))
    (folder / "training_args.bin").write_bytes(b"a pickled TrainingArguments")
    assert [p.name for p in vicuna_weight_files(folder)] == sorted(shards)
    with pytest.raises(ConversionError, match="no Vicuna weights"):
        vicuna_weight_files(tmp_path)
