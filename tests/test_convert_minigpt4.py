"""The MiniGPT-4 converter, on a tiny synthetic checkpoint written with the real key names of MiniGPT-4 / LAVIS
(EVA ViT-g `visual_encoder.*`, `ln_vision`, `Qformer.bert.*` with its text branch, `query_tokens`, `llama_proj`) and
of a Hugging Face Vicuna folder."""
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
    assert bb.family == "llama" and bb.num_query_tokens == N_QUERY and bb.image_token_id == VOCAB
    query = Query(torch.randn(3, IMAGE, IMAGE), bb.vqa_prompt("w1 w2"), "w3")
    logits, target_ids = bb.target_logits([query])[0]
    assert logits.shape == (1, VOCAB + 1) and target_ids.tolist() == [6]
    assert main(["convert-minigpt4", "--checkpoint", str(tmp_path / "eva_vit_g.pth"), "--vicuna", str(folder),
                 "--out", str(tmp_path / "bad")]) == 1  # the Q-Former is missing: one clear error, no folder
    assert not (tmp_path / "bad").exists()


def test_an_unknown_key_or_a_lone_bias_is_one_clear_error():
    source, (vicuna, _) = synthetic_minigpt4(), synthetic_vicuna()
    with pytest.raises(ConversionError, match="unknown MiniGPT-4 key opt_proj.weight"):
        convert_state({**source, "opt_proj.weight": torch.zeros(1)}, vicuna)
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
