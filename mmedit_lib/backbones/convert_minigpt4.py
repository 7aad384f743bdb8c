"""MiniGPT-4's checkpoint layout -> transformers' `Blip2ForConditionalGeneration` with a LLaMA (Vicuna) decoder.

    $ python -m mmedit_lib convert-minigpt4 --checkpoint eva_vit_g.pth --checkpoint blip2_pretrained_flant5xxl.pth \\
          --checkpoint pretrained_minigpt4.pth --vicuna /models/vicuna-7b --out /models/minigpt4-7b
    >>> state, report = convert_state(minigpt4_state, vicuna_state)             # doctest: +SKIP
    >>> config = minigpt4_config(minigpt4_state, vicuna_config)                  # doctest: +SKIP

MiniGPT-4 (Zhu et al., 2023) is BLIP-2's frozen vision side (EVA ViT-g `visual_encoder.*` and its `ln_vision`,
the Q-Former `Qformer.bert.*` with its `query_tokens`) feeding Vicuna through one trained linear layer,
`llama_proj`. The released files split this: EVA ViT-g and the Q-Former come from BLIP-2's checkpoints, `llama_proj`
from MiniGPT-4's, Vicuna from a Hugging Face LLaMA folder; pass the three files (`--checkpoint`, repeated; read in
that order, later files winning) and the folder, and this module renames every tensor. The mapping:

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
are kept, as BLIP-2 builds it. EVA's block norms have eps 1e-6 and `ln_vision` (LAVIS's `LayerNorm(num_features)`)
the default 1e-5; Blip2VisionConfig has one `layer_norm_eps`, so it is written as the blocks' 1e-6 and the vision
config carries `post_layernorm_eps: 1e-5`, which `registry.load_backbone` gives `post_layernorm` (both exact).

The real files carry more than MiniGPT-4 runs (MiniGPT-4 loads them with `strict=False`). These are dropped and listed
in the report, each with its reason (`DROPPED`): the Q-Former's text branch and heads, which MiniGPT-4 deletes
(`intermediate`, `output` of each layer, word and position embeddings, `cls`); the other BLIP-2 models' projections
and stage-1 heads (`t5_proj` of `blip2_pretrained_flant5xxl.pth`, `opt_proj`, `vision_proj`, `text_proj`, `itm_head`,
`temp`); EVA's classifier `head` and final norms and its blocks past `vision_layers`; the `rotary_emb.inv_freq`
buffers that transformers < 4.31 saved in LLaMA folders (recomputed from the config). Any other key is an error, so
nothing is silently lost. The Vicuna tokenizer is loaded and checked before any weight file is read (a LLaMA folder
with only `tokenizer.model` needs `sentencepiece` and `protobuf`); its pad token is its eos token, as MiniGPT-4 and
EasyEdit set it. `<image>` is appended to the vocabulary (embedding and LM-head rows initialised to the mean;
`Backbone` replaces those embeddings with the projected Q-Former outputs, so they are never read).
"""
from __future__ import annotations

import json
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
# (pattern, reason): the keys of the real files that MiniGPT-4's image -> Vicuna path never reads.
DROPPED = (
    (re.compile(r"^Qformer\.bert\.encoder\.layer\.\d+\.(intermediate|output)\.(dense|LayerNorm)\."),
     "the Q-Former's text-branch feed-forward (MiniGPT-4 and Blip2T5 delete it; queries use *_query)"),
    (re.compile(r"^Qformer\.bert\.embeddings\.(word_embeddings|position_embeddings|position_ids)"),
     "the Q-Former's text embeddings (MiniGPT-4 deletes them; queries have no positions)"),
    (re.compile(r"^Qformer\.cls\."), "the Q-Former's language-model head (MiniGPT-4 deletes it)"),
    (re.compile(r"^t5_proj\."), "Blip2T5's projection into FlanT5 (MiniGPT-4 projects with llama_proj)"),
    (re.compile(r"^opt_proj\."), "Blip2OPT's projection into OPT (MiniGPT-4 projects with llama_proj)"),
    (re.compile(r"^(vision_proj|text_proj|itm_head)\.|^temp$"),
     "BLIP-2's stage-1 contrastive / matching heads (not on the image -> language-model path)"),
    (re.compile(r"^visual_encoder\.(head|norm|fc_norm)\."),
     "EVA's classifier and final norm (BLIP-2 uses ln_vision on the kept blocks' output)"),
    (re.compile(r"^(llama_model\.)?model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$"),
     "a rotary buffer saved by transformers < 4.31 (recomputed from the config)"),
)
IMAGE_TOKEN = "<image>"


class ConversionError(ValueError):
    """A key the converter does not know, or a layout it cannot map."""


def drop_reason(key: str, vision_layers: int | None = None) -> str | None:
    """Why `key` is dropped, or None if it must be mapped.

    >>> drop_reason("t5_proj.weight")
    "Blip2T5's projection into FlanT5 (MiniGPT-4 projects with llama_proj)"
    """
    for pattern, reason in DROPPED:
        if pattern.match(key):
            return reason
    block = _BLOCK.match(key)
    if block and vision_layers is not None and int(block[1]) >= vision_layers:
        return f"an EVA block past the {vision_layers} BLIP-2 keeps (it reads the second-last block's output)"
    return None


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
    """(state dict for Blip2ForConditionalGeneration, report {"dropped": {key: reason}, "vocab": n}) from the merged
    MiniGPT-4/BLIP-2 tensors and Vicuna's (HF LLaMA names; or `llama_model.*` inside `minigpt4`). `vision_layers`:
    keep EVA's first blocks only (BLIP-2 and MiniGPT-4 use 39 of EVA ViT-g's 40: the second-last block's output)."""
    required = ("visual_encoder.patch_embed.proj.weight", "visual_encoder.pos_embed", "ln_vision.weight",
                "query_tokens", "Qformer.bert.encoder.layer.0.intermediate_query.dense.weight", "llama_proj.weight")
    missing = [k for k in required if k not in minigpt4]
    if missing:
        raise ConversionError(f"missing {', '.join(missing)}: pass every checkpoint (EVA ViT-g, BLIP-2's Q-Former, "
                              f"MiniGPT-4's llama_proj)")
    out, biases, dropped = {}, {}, {}
    language = {k[len("llama_model."):]: v for k, v in minigpt4.items() if k.startswith("llama_model.")}
    language.update(vicuna or {})
    for key, tensor in minigpt4.items():
        if key.startswith("llama_model."):
            continue
        if reason := drop_reason(key, vision_layers):
            dropped[key] = reason
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
        if reason := drop_reason(key):
            dropped[key] = reason
        elif key.startswith("model.") or key == "lm_head.weight":
            out[f"language_model.{key}"] = tensor
        else:
            raise ConversionError(f"unknown Vicuna key {key}")
    if "language_model.lm_head.weight" not in out:  # tied embeddings
        out["language_model.lm_head.weight"] = out["language_model.model.embed_tokens.weight"]
    vocab = out["language_model.model.embed_tokens.weight"].shape[0]
    for key in ("language_model.model.embed_tokens.weight", "language_model.lm_head.weight"):  # the <image> row
        table = out[key]
        out[key] = torch.cat([table, table.mean(0, keepdim=True)])
    return out, {"dropped": dict(sorted(dropped.items())), "vocab": vocab}


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
                               layer_norm_eps=1e-6, post_layernorm_eps=1e-5)  # EVA's blocks, ln_vision: docstring
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
    return state.get("model", state) if isinstance(state, dict) else state  # LAVIS's runner: {"model": ..., ...}


def vicuna_weight_files(folder: Path) -> list[Path]:
    """The weight files of a Hugging Face LLaMA folder: those its index names (`*.index.json`), else
    `model*.safetensors`, else `pytorch_model*.bin` (2023-era folders); never other `.bin`s (`training_args.bin`)."""
    folder = Path(folder)
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).is_file():
            names = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
            return [folder / name for name in names]
    files = sorted(folder.glob("model*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise ConversionError(f"no Vicuna weights in {folder} (model*.safetensors or pytorch_model*.bin)")
    return files


def vicuna_tokenizer(folder: Path, vocab_size: int):
    """Vicuna's tokenizer with `<image>` appended as id `vocab_size` and pad = eos (MiniGPT-4 and EasyEdit pad with
    eos), checked against the config's `vocab_size`; read before any weight, so a bad folder fails in seconds.

    >>> tokenizer = vicuna_tokenizer(Path("/models/vicuna-7b"), 32000)      # doctest: +SKIP
    """
    from transformers import AutoTokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as error:  # transformers raises OSError, ValueError, ImportError... for a missing/broken file
        files = sorted(p.name for p in Path(folder).iterdir()) if Path(folder).is_dir() else []
        raise ConversionError(f"the Vicuna tokenizer in {folder} does not load ({type(error).__name__}: {error}); "
                              f"files there: {files} (a tokenizer.model needs sentencepiece and protobuf)") from error
    if tokenizer.eos_token is None:
        raise ConversionError(f"the Vicuna tokenizer in {folder} has no eos token (MiniGPT-4 pads and ends with it)")
    if len(tokenizer) != vocab_size:
        raise ConversionError(f"the Vicuna tokenizer in {folder} has {len(tokenizer)} tokens, its config.json "
                              f"vocab_size {vocab_size}: is the tokenizer this model's own?")
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    if tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) != vocab_size:
        raise ConversionError(f"the tokenizer gives {IMAGE_TOKEN} id {tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)}, "
                              f"the weights {vocab_size}: is the Vicuna folder's vocabulary its own?")
    return tokenizer


def convert_folder(checkpoints: list[Path], vicuna_dir: Path, out_dir: Path, vision_heads: int = 16,
                   qformer_heads: int = 12, vision_layers: int | None = 39) -> dict:
    """Write a Hugging Face folder (weights, config, Vicuna's tokenizer with `<image>`, BLIP-2's image processor)
    that `load_backbone("minigpt4-7b", path=out_dir)` loads. Returns the conversion report. The tokenizer and the
    file lists are checked first; only then is any weight read."""
    from transformers import AutoConfig, Blip2ForConditionalGeneration, BlipImageProcessorPil
    try:
        text_config = AutoConfig.from_pretrained(vicuna_dir, local_files_only=True)
    except Exception as error:
        raise ConversionError(f"no usable config.json in the Vicuna folder {vicuna_dir}: {error}") from error
    tokenizer = vicuna_tokenizer(Path(vicuna_dir), text_config.vocab_size)
    missing = [str(p) for p in checkpoints if not Path(p).is_file()]
    if missing:
        raise ConversionError(f"no such checkpoint: {', '.join(missing)}")
    weight_files = vicuna_weight_files(Path(vicuna_dir))
    merged: dict = {}
    for path in checkpoints:
        merged.update(eva_prefixed(_load_tensors(Path(path))))
    vicuna = {}
    for path in weight_files:
        vicuna.update(_load_tensors(path))
    state, report = convert_state(merged, vicuna, vision_layers)
    if report["vocab"] != text_config.vocab_size:
        raise ConversionError(f"Vicuna's embedding has {report['vocab']} rows, its config.json vocab_size "
                              f"{text_config.vocab_size}")
    config = minigpt4_config(merged, text_config, vision_heads, qformer_heads, vision_layers)
    with torch.device("meta"):
        model = Blip2ForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ConversionError(f"converted weights do not fit Blip2ForConditionalGeneration: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    size = config.vision_config.image_size
    BlipImageProcessorPil(size={"height": size, "width": size}, image_mean=[0.48145466, 0.4578275, 0.40821073],
                          image_std=[0.26862954, 0.26130258, 0.27577711], do_convert_rgb=True).save_pretrained(out_dir)
    return report
