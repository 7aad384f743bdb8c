"""Tiny checkpoints in the layouts of the real MiniGPT-4 files, written to a folder.

    >>> files = write_real_layouts(tmp_path)            # doctest: +SKIP
    >>> files["eva"], files["blip2"], files["minigpt4"], files["vicuna"]  # doctest: +SKIP

Our own generator; the key names and shape rules follow the upstream module definitions (read, not copied):

- `eva_vit_g.pth` (LAVIS `eva_vit.py`, `create_eva_vit_g`): a flat state dict, EVA ViT-g's own names (`cls_token`,
  `pos_embed` with `(img/patch)**2 + 1` rows, `patch_embed.proj` a conv of kernel = stride = patch, `blocks.i.norm1`,
  `.attn.qkv` (3d x d, no bias) with `.attn.q_bias` / `.attn.v_bias`, `.attn.proj`, `.norm2`, `.mlp.fc1`
  (`int(d * 4.3637)` wide), `.mlp.fc2`; no layer scale), one block more than BLIP-2 builds (EVA-CLIP-g has 40,
  `create_eva_vit_g` 39).
- `blip2_pretrained_flant5xxl.pth` (LAVIS `blip2_t5.py`, `runner_base._save_checkpoint`): `{"model", "optimizer",
  "config", "scaler", "epoch"}`, the model's state dict without the parameters that do not train (the frozen EVA
  and FlanT5), so: `query_tokens`, `ln_vision` (not frozen), the Q-Former `Qformer.bert.*` without what Blip2T5
  deletes (`cls`, word/position embeddings, each layer's text-branch `intermediate`/`output`) but with the
  `position_ids` buffer (buffers are kept), cross-attention every 2nd layer (`layer_num % 2 == 0`, keys and values
  from the vision width), and `t5_proj` (Q-Former width -> T5 width).
- `pretrained_minigpt4.pth` (MiniGPT-4 `mini_gpt4.py`): `{"model": {llama_proj.weight, llama_proj.bias}, ...}`.
- a 2023-era Vicuna folder: `config.json` as transformers 4.28 wrote it, `pytorch_model.bin` with the
  `model.layers.N.self_attn.rotary_emb.inv_freq` buffers, and the tokenizer as `tokenizer.model` only (a real
  SentencePiece model trained here on a few lines) with `tokenizer_config.json` / `special_tokens_map.json`.

Weights are drawn at scales that keep every activation of order one (as trained weights do), so float32 comparisons
at 1e-5 mean something.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import torch

D_VIT, VIT_HEADS, PATCH, IMAGE, EVA_BLOCKS = 32, 4, 14, 28, 3  # BLIP-2 keeps EVA_BLOCKS - 1
VIT_FFN = int(D_VIT * 4.3637)  # create_eva_vit_g's mlp_ratio
D_Q, Q_HEADS, Q_FFN, Q_LAYERS, N_QUERY, Q_MAX_POSITIONS = 24, 4, 48, 4, 4, 16
D_T5 = 20
EVA_STREAM_STD = 3.0  # EVA's residual stream (embeddings) is wider than 1; its norms' eps then matters less
D_LLM, LLM_HEADS, LLM_FFN, LLM_LAYERS, VOCAB = 40, 4, 80, 2, 48

_SENTENCES = ["the cat sat on the mat", "a dog runs in the park", "what colour is the sky today",
              "red green blue yellow black white", "how many people are in the picture", "two three four five six",
              "is there a bus on the street", "yes no maybe", "question short answer"]


class _Draw:
    """Seeded draws: `w(out, in)` a linear weight (std 1/sqrt(in)), `ln(d)` a LayerNorm (weight, bias) near (1, 0),
    `b(d)` a small bias, `r(*shape)` N(0, 1)."""

    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)

    def r(self, *shape, std=1.0):
        return torch.randn(*shape, generator=self.g) * std

    def w(self, out, fan_in):
        return self.r(out, fan_in, std=fan_in ** -0.5)

    def b(self, d):
        return self.r(d, std=0.1)

    def ln(self, d):
        return 1 + self.r(d, std=0.1), self.r(d, std=0.1)


def eva_vit_g_state(seed: int = 0) -> dict:
    """`eva_vit_g.pth`'s state dict: EVA's own (unprefixed) names, EVA_BLOCKS blocks."""
    d = _Draw(seed)
    n = (IMAGE // PATCH) ** 2
    s = {"cls_token": d.r(1, 1, D_VIT, std=EVA_STREAM_STD), "pos_embed": d.r(1, n + 1, D_VIT, std=EVA_STREAM_STD),
         "patch_embed.proj.weight": d.r(D_VIT, 3, PATCH, PATCH, std=EVA_STREAM_STD * (3 * PATCH * PATCH) ** -0.5),
         "patch_embed.proj.bias": d.b(D_VIT)}
    for i in range(EVA_BLOCKS):
        p = f"blocks.{i}."
        s[p + "norm1.weight"], s[p + "norm1.bias"] = d.ln(D_VIT)
        s[p + "attn.q_bias"], s[p + "attn.v_bias"] = d.b(D_VIT), d.b(D_VIT)
        s[p + "attn.qkv.weight"] = d.w(3 * D_VIT, D_VIT)
        s[p + "attn.proj.weight"], s[p + "attn.proj.bias"] = d.w(D_VIT, D_VIT), d.b(D_VIT)
        s[p + "norm2.weight"], s[p + "norm2.bias"] = d.ln(D_VIT)
        s[p + "mlp.fc1.weight"], s[p + "mlp.fc1.bias"] = d.w(VIT_FFN, D_VIT), d.b(VIT_FFN)
        s[p + "mlp.fc2.weight"], s[p + "mlp.fc2.bias"] = d.w(D_VIT, VIT_FFN), d.b(D_VIT)
    return s


def blip2_t5_state(seed: int = 1) -> dict:
    """The `model` of `blip2_pretrained_flant5xxl.pth`: Blip2T5's state dict less its frozen parameters."""
    d = _Draw(seed)
    s = {"query_tokens": d.r(1, N_QUERY, D_Q)}
    s["ln_vision.weight"], s["ln_vision.bias"] = d.ln(D_VIT)
    s["Qformer.bert.embeddings.LayerNorm.weight"], s["Qformer.bert.embeddings.LayerNorm.bias"] = d.ln(D_Q)
    s["Qformer.bert.embeddings.position_ids"] = torch.arange(Q_MAX_POSITIONS)[None]
    for i in range(Q_LAYERS):
        p = f"Qformer.bert.encoder.layer.{i}."
        for part, width in [("attention", D_Q)] + ([("crossattention", D_VIT)] if i % 2 == 0 else []):
            s[f"{p}{part}.self.query.weight"], s[f"{p}{part}.self.query.bias"] = d.w(D_Q, D_Q), d.b(D_Q)
            s[f"{p}{part}.self.key.weight"], s[f"{p}{part}.self.key.bias"] = d.w(D_Q, width), d.b(D_Q)
            s[f"{p}{part}.self.value.weight"], s[f"{p}{part}.self.value.bias"] = d.w(D_Q, width), d.b(D_Q)
            s[f"{p}{part}.output.dense.weight"], s[f"{p}{part}.output.dense.bias"] = d.w(D_Q, D_Q), d.b(D_Q)
            s[f"{p}{part}.output.LayerNorm.weight"], s[f"{p}{part}.output.LayerNorm.bias"] = d.ln(D_Q)
        s[p + "intermediate_query.dense.weight"], s[p + "intermediate_query.dense.bias"] = d.w(Q_FFN, D_Q), d.b(Q_FFN)
        s[p + "output_query.dense.weight"], s[p + "output_query.dense.bias"] = d.w(D_Q, Q_FFN), d.b(D_Q)
        s[p + "output_query.LayerNorm.weight"], s[p + "output_query.LayerNorm.bias"] = d.ln(D_Q)
    s["t5_proj.weight"], s["t5_proj.bias"] = d.w(D_T5, D_Q), d.b(D_T5)
    return s


def minigpt4_state(seed: int = 2) -> dict:
    """The `model` of `pretrained_minigpt4.pth`: the one layer MiniGPT-4 trains."""
    d = _Draw(seed)
    return {"llama_proj.weight": d.w(D_LLM, D_Q), "llama_proj.bias": d.b(D_LLM)}


def vicuna_state(seed: int = 3) -> dict:
    """A 2023 `pytorch_model.bin`: LLaMA names, with transformers < 4.31's persistent `inv_freq` buffers."""
    d = _Draw(seed)
    head = D_LLM // LLM_HEADS
    inv_freq = 1.0 / (10000 ** (torch.arange(0, head, 2).float() / head))
    s = {"model.embed_tokens.weight": d.r(VOCAB, D_LLM), "model.norm.weight": d.ln(D_LLM)[0],
         "lm_head.weight": d.w(VOCAB, D_LLM)}
    for i in range(LLM_LAYERS):
        p = f"model.layers.{i}."
        s.update({p + f"self_attn.{x}_proj.weight": d.w(D_LLM, D_LLM) for x in "qkvo"})
        s[p + "self_attn.rotary_emb.inv_freq"] = inv_freq.clone()
        s[p + "mlp.gate_proj.weight"], s[p + "mlp.up_proj.weight"] = d.w(LLM_FFN, D_LLM), d.w(LLM_FFN, D_LLM)
        s[p + "mlp.down_proj.weight"] = d.w(D_LLM, LLM_FFN)
        s[p + "input_layernorm.weight"], s[p + "post_attention_layernorm.weight"] = d.ln(D_LLM)[0], d.ln(D_LLM)[0]
    return s


def _runner_checkpoint(model: dict, arch: str, epoch: int) -> dict:
    """What LAVIS's (and MiniGPT-4's) runner saves: the trainable state and the training state around it."""
    params = [v for v in model.values() if v.is_floating_point()]
    return {"model": model, "optimizer": torch.optim.AdamW(params, lr=1e-4).state_dict(),
            "config": {"model": {"arch": arch}, "run": {"max_epoch": epoch + 1}},
            "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                       "_growth_tracker": 0},
            "epoch": epoch}


def sentencepiece_model(vocab_size: int = VOCAB) -> bytes:
    """A real SentencePiece BPE model (LLaMA's ids: <unk> 0, <s> 1, </s> 2, no pad) of exactly `vocab_size` pieces."""
    import sentencepiece as spm
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(_SENTENCES * 4), model_writer=out, vocab_size=vocab_size,
                                   model_type="bpe", unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                                   character_coverage=1.0, num_threads=1, minloglevel=2)
    return out.getvalue()


def _added(token: str) -> dict:
    return {"__type": "AddedToken", "content": token, "lstrip": False, "normalized": True, "rstrip": False,
            "single_word": False}


def write_vicuna_tokenizer(folder: Path, vocab_size: int = VOCAB) -> None:
    """`tokenizer.model` and the 2023 `tokenizer_config.json` / `special_tokens_map.json` beside it (no
    tokenizer.json: transformers builds the fast tokenizer from the SentencePiece model)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(sentencepiece_model(vocab_size))
    special = {"bos_token": _added("<s>"), "eos_token": _added("</s>"), "unk_token": _added("<unk>")}
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"add_bos_token": True, "add_eos_token": False, **special, "clean_up_tokenization_spaces": False,
         "model_max_length": 2048, "pad_token": None, "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer"}))
    (folder / "special_tokens_map.json").write_text(json.dumps(special))


def vicuna_config() -> dict:
    """config.json as transformers 4.28 wrote it for Vicuna-7B (sizes tiny)."""
    return {"architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
            "hidden_size": D_LLM, "initializer_range": 0.02, "intermediate_size": LLM_FFN,
            "max_position_embeddings": 64, "model_type": "llama", "num_attention_heads": LLM_HEADS,
            "num_hidden_layers": LLM_LAYERS, "pad_token_id": 0, "rms_norm_eps": 1e-06, "tie_word_embeddings": False,
            "torch_dtype": "float32", "transformers_version": "4.28.0.dev0", "use_cache": True, "vocab_size": VOCAB}


def write_vicuna_folder(folder: Path, state: dict | None = None, tokenizer: bool = True) -> Path:
    """A 2023-era Vicuna folder: config.json, pytorch_model.bin (with inv_freq), tokenizer.model."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(vicuna_config(), indent=2))
    torch.save(vicuna_state() if state is None else state, folder / "pytorch_model.bin")
    if tokenizer:
        write_vicuna_tokenizer(folder)
    return folder


def write_real_layouts(root: Path) -> dict:
    """Every file, under `root`; returns their paths by name (eva, blip2, minigpt4, vicuna)."""
    root.mkdir(parents=True, exist_ok=True)
    files = {"eva": root / "eva_vit_g.pth", "blip2": root / "blip2_pretrained_flant5xxl.pth",
             "minigpt4": root / "pretrained_minigpt4.pth"}
    torch.save(eva_vit_g_state(), files["eva"])
    torch.save(_runner_checkpoint(blip2_t5_state(), "blip2_t5", 9), files["blip2"])
    torch.save(_runner_checkpoint(minigpt4_state(), "mini_gpt4", 3), files["minigpt4"])
    files["vicuna"] = write_vicuna_folder(root / "vicuna-7b")
    return files
