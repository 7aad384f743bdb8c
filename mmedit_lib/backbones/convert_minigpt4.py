"""MiniGPT-4's checkpoint layout -> transformers' `Blip2ForConditionalGeneration` with a LLaMA (Vicuna) decoder.

    $ python -m mmedit_lib convert-minigpt4 --checkpoint eva_vit_g.pth --checkpoint blip2_pretrained_flant5xxl.pth \\
          --checkpoint pretrained_minigpt4.pth --vicuna /models/vicuna-7b --out /models/minigpt4-7b
    >>> state, report = convert_state(minigpt4_state, vicuna_state)             # doctest: +SKIP
    >>> config = minigpt4_config(minigpt4_state, vicuna_config)                  # doctest: +SKIP

MiniGPT-4 (Zhu et al., 2023) is BLIP-2's frozen vision side (EVA ViT-g `visual_encoder.*` and its `ln_vision`,
the Q-Former `Qformer.bert.*` with its `query_tokens`) feeding Vicuna through one trained linear layer,
`llama_proj`. The released files split this: EVA ViT-g and the Q-Former come from BLIP-2's checkpoints, `llama_proj`
from MiniGPT-4's, Vicuna from a Hugging Face LLaMA folder; pass them merged (`--blip2`, `--eva`, `--minigpt4` are
read in that order, later files winning) and this module renames every tensor. The mapping:

| MiniGPT-4 / LAVIS | Blip2ForConditionalGeneration |
|---|---|
| `visual_encoder.cls_token`, `.pos_embed`, `.patch_embed.proj` | `vision_model.embeddings.class_embedding`, `.position_embedding`, `.patch_embedding` |
| `visual_encoder.blocks.i.norm1/norm2`, `.attn.proj`, `.mlp.fc1/fc2` | `vision_model.encoder.layers.i.layer_norm1/layer_norm2`, `.self_attn.projection`, `.mlp.fc1/fc2` |
| `visual_encoder.blocks.i.attn.qkv.weight`, `.attn.q_bias`, `.attn.v_bias` | `...self_attn.qkv.weight`, `...self_attn.qkv.bias` = [q_bias, 0, v_bias] (EVA has no key bias) |
| `ln_vision` | `vision_model.post_layernorm` |
| `query_tokens` | `query_tokens` |
| `Qformer.bert.embeddings.LayerNorm` | `qformer.layernorm` |
| `Qformer.bert.encoder.layer.i.{attention,crossattention}.self.*` | `qformer.encoder.layer.i.{attention,crossattention}.attention.*` |
| `Qformer.bert.encoder.layer.i.*.output.*`, `.intermediate_query`, `.output_query` | the same names under `qformer.encoder.layer.i` |
| `llama_proj` | `language_projection` |
| Vicuna `model.*`, `lm_head.weight` (or `llama_model.*`) | `language_model.model.*`, `language_model.lm_head.weight` |

EVA's own file (`eva_vit_g.pth`, unprefixed names) is read as `visual_encoder.*`, and only its first 39 blocks
are kept, as BLIP-2 builds it. Dropped, and listed in the report: the Q-Former's text branch (`intermediate`, `output` of each layer, word and
position embeddings, `cls`), which BLIP-2's image path never runs and MiniGPT-4 deletes; EVA's classifier `head`
and final `norm` (BLIP-2 drops EVA's last block and norm and uses `ln_vision`). Any other key is an error, so nothing
is silently lost. `<image>` is appended to the vocabulary (embedding and LM-head rows initialised to the mean;
`Backbone` replaces those embeddings with the projected Q-Former outputs, so they are never read).
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

_BLOCK = re.compile(r"^visual_encoder\.blocks\.(\d+)\.(.+)$")
_QLAYER = re.compile(r"^Qformer\.bert\.encoder\.layer\.(\d+)\.(.+)$")
_VISION_BLOCK_NAMES = {"norm1": "layer_norm1", "norm2": "layer_norm2", "attn.proj": "self_attn.projection",
                       "attn.qkv": "self_attn.qkv", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
_VISION_TOP = {"visual_encoder.cls_token": "vision_model.embeddings.class_embedding",
               "visual_encoder.pos_embed": "vision_model.embeddings.position_embedding",
               "visual_encoder.patch_embed.proj.weight": "vision_model.embeddings.patch_embedding.weight",
               "visual_encoder.patch_embed.proj.bias": "vision_model.embeddings.patch_embedding.bias",
               "ln_vision.weight": "vision_model.post_layernorm.weight",
               "ln_vision.bias": "vision_model.post_layernorm.bias",
               "query_tokens": "query_tokens",
               "Qformer.bert.embeddings.LayerNorm.weight": "qformer.layernorm.weight",
               "Qformer.bert.embeddings.LayerNorm.bias": "qformer.layernorm.bias",
               "llama_proj.weight": "language_projection.weight", "llama_proj.bias": "language_projection.bias"}
_DROPPED = (re.compile(r"^Qformer\.bert\.encoder\.layer\.\d+\.(intermediate|output)\.(dense|LayerNorm)\."),
            re.compile(r"^Qformer\.bert\.embeddings\.(word_embeddings|position_embeddings|position_ids)"),
            re.compile(r"^Qformer\.cls\."), re.compile(r"^visual_encoder\.(head|norm|fc_norm)\."))
IMAGE_TOKEN = "<image>"


class ConversionError(ValueError):
    """A key the converter does not know, or a layout it cannot map."""


def _vision_block(index: str, rest: str, tensor, out: dict, biases: dict) -> None:
    if rest in ("attn.q_bias", "attn.v_bias"):
        biases.setdefault(index, {})[rest[5]] = tensor
        return
    if rest.startswith(("gamma_1", "gamma_2")):
        raise ConversionError(f"visual_encoder.blocks.{index}.{rest}: EVA layer scale has no place in "
                              f"Blip2VisionModel (BLIP-2's EVA ViT-g is built without it)")
    for source, target in _VISION_BLOCK_NAMES.items():
        if rest.startswith(source + "."):
            out[f"vision_model.encoder.layers.{index}.{target}{rest[len(source):]}"] = tensor
            return
    raise ConversionError(f"unknown EVA block key visual_encoder.blocks.{index}.{rest}")


def _qformer_layer(index: str, rest: str, tensor, out: dict) -> None:
    rest = re.sub(r"^(attention|crossattention)\.self\.", r"\1.attention.", rest)
    known = ("attention.attention.", "attention.output.", "crossattention.attention.", "crossattention.output.",
             "intermediate_query.dense.", "output_query.dense.", "output_query.LayerNorm.")
    if not rest.startswith(known):
        raise ConversionError(f"unknown Q-Former key Qformer.bert.encoder.layer.{index}.{rest}")
    out[f"qformer.encoder.layer.{index}.{rest}"] = tensor


def eva_prefixed(state: dict) -> dict:
    """EVA ViT-g's own file (`eva_vit_g.pth`: `cls_token`, `blocks.*`...) under the `visual_encoder.` names BLIP-2
    gives it; any other checkpoint as it is."""
    if "cls_token" in state or any(k.startswith("blocks.") for k in state):
        return {f"visual_encoder.{k}": v for k, v in state.items()}
    return state


def convert_state(minigpt4: dict, vicuna: dict | None = None,
                  vision_layers: int | None = None) -> tuple[dict, dict]:
    """(state dict for Blip2ForConditionalGeneration, report {"dropped": [...], "vocab": n}) from the merged
    MiniGPT-4/BLIP-2 tensors and Vicuna's (HF LLaMA names; or `llama_model.*` inside `minigpt4`). `vision_layers`:
    keep EVA's first blocks only (BLIP-2 and MiniGPT-4 use 39 of EVA ViT-g's 40: the second-last block's output)."""
    required = ("visual_encoder.patch_embed.proj.weight", "visual_encoder.pos_embed", "ln_vision.weight",
                "query_tokens", "Qformer.bert.encoder.layer.0.intermediate_query.dense.weight", "llama_proj.weight")
    missing = [k for k in required if k not in minigpt4]
    if missing:
        raise ConversionError(f"missing {', '.join(missing)}: pass every checkpoint (EVA ViT-g, BLIP-2's Q-Former, "
                              f"MiniGPT-4's llama_proj)")
    out, biases, dropped = {}, {}, []
    language = {k[len("llama_model."):]: v for k, v in minigpt4.items() if k.startswith("llama_model.")}
    language.update(vicuna or {})
    for key, tensor in minigpt4.items():
        if key.startswith("llama_model."):
            continue
        block = _BLOCK.match(key)
        if any(p.match(key) for p in _DROPPED) or (block and vision_layers is not None
                                                    and int(block[1]) >= vision_layers):
            dropped.append(key)
        elif key in _VISION_TOP:
            out[_VISION_TOP[key]] = tensor
        elif m := _BLOCK.match(key):
            _vision_block(m[1], m[2], tensor, out, biases)
        elif m := _QLAYER.match(key):
            _qformer_layer(m[1], m[2], tensor, out)
        else:
            raise ConversionError(f"unknown MiniGPT-4 key {key}")
    for index, qv in sorted(biases.items(), key=lambda kv: int(kv[0])):
        if set(qv) != {"q", "v"}:
            raise ConversionError(f"visual_encoder.blocks.{index}: q_bias and v_bias come together")
        out[f"vision_model.encoder.layers.{index}.self_attn.qkv.bias"] = torch.cat(
            [qv["q"], torch.zeros_like(qv["q"]), qv["v"]])
    if not language:
        raise ConversionError("no Vicuna weights: pass the Vicuna folder (or llama_model.* tensors)")
    for key, tensor in language.items():
        if not (key.startswith("model.") or key == "lm_head.weight"):
            raise ConversionError(f"unknown Vicuna key {key}")
        out[f"language_model.{key}"] = tensor
    if "language_model.lm_head.weight" not in out:  # tied embeddings
        out["language_model.lm_head.weight"] = out["language_model.model.embed_tokens.weight"]
    vocab = out["language_model.model.embed_tokens.weight"].shape[0]
    for key in ("language_model.model.embed_tokens.weight", "language_model.lm_head.weight"):  # the <image> row
        table = out[key]
        out[key] = torch.cat([table, table.mean(0, keepdim=True)])
    return out, {"dropped": sorted(dropped), "vocab": vocab}


def minigpt4_config(minigpt4: dict, text_config, vision_heads: int = 16, qformer_heads: int = 12,
                    vision_layers: int | None = None):
    """The Blip2Config for `minigpt4`'s tensors (sizes read from them; head counts are not in the weights:
    EVA ViT-g has 16, the Q-Former 12) and Vicuna's LlamaConfig, with `<image>` as the token after the vocabulary."""
    from transformers import Blip2Config, Blip2QFormerConfig, Blip2VisionConfig
    patch = minigpt4["visual_encoder.patch_embed.proj.weight"]
    d_vit, _, p, _ = patch.shape
    n_patches = minigpt4["visual_encoder.pos_embed"].shape[1] - 1
    blocks = {int(m[1]) for k in minigpt4 if (m := _BLOCK.match(k))
              and (vision_layers is None or int(m[1]) < vision_layers)}
    layers = {int(m[1]) for k in minigpt4 if (m := _QLAYER.match(k))}
    cross = sorted({int(m[1]) for k in minigpt4 if (m := _QLAYER.match(k)) and m[2].startswith("crossattention")})
    frequency = cross[1] - cross[0] if len(cross) > 1 else 1
    q_hidden = minigpt4["query_tokens"].shape[-1]
    vision = Blip2VisionConfig(hidden_size=d_vit, intermediate_size=minigpt4["visual_encoder.blocks.0.mlp.fc1.weight"]
                               .shape[0], num_hidden_layers=len(blocks), num_attention_heads=vision_heads,
                               image_size=int(round(n_patches ** 0.5)) * p, patch_size=p, qkv_bias=True,
                               layer_norm_eps=1e-6)
    qformer = Blip2QFormerConfig(hidden_size=q_hidden, num_hidden_layers=len(layers),
                                 num_attention_heads=qformer_heads,
                                 intermediate_size=minigpt4["Qformer.bert.encoder.layer.0.intermediate_query.dense."
                                                            "weight"].shape[0],
                                 encoder_hidden_size=d_vit, cross_attention_frequency=frequency)
    text = text_config.to_dict() if hasattr(text_config, "to_dict") else dict(text_config)
    text["vocab_size"] = text["vocab_size"] + 1
    return Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=text,
                       num_query_tokens=minigpt4["query_tokens"].shape[1], image_token_index=text["vocab_size"] - 1)


def _load_tensors(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("model", state) if isinstance(state, dict) else state


def convert_folder(checkpoints: list[Path], vicuna_dir: Path, out_dir: Path, vision_heads: int = 16,
                   qformer_heads: int = 12, vision_layers: int | None = 39) -> dict:
    """Write a Hugging Face folder (weights, config, Vicuna's tokenizer with `<image>`, BLIP-2's image processor)
    that `load_backbone("minigpt4-7b", path=out_dir)` loads. Returns the conversion report."""
    from transformers import AutoConfig, AutoTokenizer, Blip2ForConditionalGeneration, BlipImageProcessorPil
    merged: dict = {}
    for path in checkpoints:
        merged.update(eva_prefixed(_load_tensors(Path(path))))
    vicuna = {}
    for path in sorted(Path(vicuna_dir).glob("*.safetensors")) or sorted(Path(vicuna_dir).glob("*.bin")):
        vicuna.update(_load_tensors(path))
    state, report = convert_state(merged, vicuna, vision_layers)
    config = minigpt4_config(merged, AutoConfig.from_pretrained(vicuna_dir, local_files_only=True), vision_heads,
                             qformer_heads, vision_layers)
    with torch.device("meta"):
        model = Blip2ForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ConversionError(f"converted weights do not fit Blip2ForConditionalGeneration: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    tokenizer = AutoTokenizer.from_pretrained(vicuna_dir, local_files_only=True)
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    if tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) != config.image_token_index:
        raise ConversionError(f"the tokenizer gives {IMAGE_TOKEN} id {tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)}, "
                              f"the weights {config.image_token_index}: is the Vicuna folder's vocabulary its own?")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    size = config.vision_config.image_size
    BlipImageProcessorPil(size={"height": size, "width": size}, image_mean=[0.48145466, 0.4578275, 0.40821073],
                       image_std=[0.26862954, 0.26130258, 0.27577711], do_convert_rgb=True).save_pretrained(out_dir)
    return report
