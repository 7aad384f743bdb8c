"""What each editor needs at full size, computed from parameter counts: the real architectures are built on
PyTorch's meta device (no memory), and each editor's own tensors (its trained layer, hypernetwork, memory,
counterfactual copy, codebook entries) are counted from the same hparams the tiny runs use.

    >>> counts = parameter_counts("blip2-opt-2.7b")                 # doctest: +SKIP
    >>> round(counts["total"] / 1e9, 2)                              # doctest: +SKIP
    3.84
    >>> editor_memory("blip2-opt-2.7b")                              # one row per editor, GiB  # doctest: +SKIP

The architectures (`full_size_config`) are BLIP-2's published ones: EVA ViT-g/14 at 224 px (BLIP-2 drops its last
block: 39 blocks of width 1408, 16 heads, MLP 6144), the Q-Former (BERT-base: 12 layers of 768, cross-attention
every other layer, 32 queries), and OPT-2.7b (32 layers of 2560, FFN 10240) or Vicuna-7B (LLaMA-7B: 32 layers of
4096, SwiGLU FFN 11008), each vocabulary plus the `<image>` token. What is counted (bytes in the model's float16 on
a GPU; hypernetworks, encoders and memories in float32, as they are trained):
- the frozen backbone;
- while an edit is made: the gradient and Adam's two moments of what the editor trains (KE and MEND: the update
  their hypernetwork forms);
- what each kept edit holds (FT, KE, MEND: a copy of every weight it changed, which restore() needs; GRACE: a key
  and a value; BalancEdit: a key and a copy of the edited layer; T-Patcher and UniKE: their extra neurons, and
  UniKE's latent entry; SERAC and IKE: only the edit's text);
- what `prepare` leaves resident (MEND's and KE's hypernetworks, SERAC's counterfactual model — the weights it
  trained: the language model or its `cf_layers` in the "copy" reading, the rest shared with the backbone; the
  small language model and its projection in the "small" one — and scope classifier, UniKE's knowledge memory, encoders and patch memory, T-Patcher's memory of FFN inputs, IKE's
  index).
Not counted: activations and gradients flowing through the frozen model during an edit or an evaluation, which
depend on sequence length (IKE's 32 demonstrations make its inputs ~30x longer); a GPU run records them in
`edit_peak_mb`.
"""
from __future__ import annotations


import pandas as pd
import torch

from ..editors.spec import FP16

GIB = 2 ** 30


def full_size_config(name: str):
    """The published config of a full-size backbone ("blip2-opt-2.7b" | "minigpt4-7b": Blip2Config; "llava-1.5-7b":
    LlavaConfig, llava-hf/llava-1.5-7b-hf's: CLIP ViT-L/14 at 336 px, a 1024 -> 4096 -> 4096 GELU projector,
    Vicuna-7B v1.5 with 32,064 ids, `<image>` = 32000, the penultimate vision layer)."""
    from transformers import (Blip2Config, Blip2QFormerConfig, Blip2VisionConfig, CLIPVisionConfig, LlamaConfig,
                              LlavaConfig, OPTConfig)
    if name == "llava-1.5-7b":
        vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                  num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768,
                                  hidden_act="quick_gelu")
        text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                           num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096)
        return LlavaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_index=32000,
                           vision_feature_layer=-2, vision_feature_select_strategy="default",
                           projector_hidden_act="gelu", image_seq_length=576)
    vision = Blip2VisionConfig(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39, num_attention_heads=16,
                               image_size=224, patch_size=14, qkv_bias=True)
    qformer = Blip2QFormerConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                                 encoder_hidden_size=1408, cross_attention_frequency=2)
    if name == "blip2-opt-2.7b":
        text = OPTConfig(vocab_size=50272 + 1, hidden_size=2560, num_hidden_layers=32, ffn_dim=10240,
                         num_attention_heads=32, max_position_embeddings=2048, word_embed_proj_dim=2560)
    elif name == "minigpt4-7b":
        text = LlamaConfig(vocab_size=32000 + 1, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                           num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=2048)
    else:
        raise ValueError(f"no full-size architecture for {name!r}; known: blip2-opt-2.7b, minigpt4-7b, llava-1.5-7b")
    return Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=text.to_dict(),
                       num_query_tokens=32, image_token_index=text.vocab_size - 1)


def meta_model(name: str):
    import transformers
    from ..backbones.architectures import architecture_of
    config = full_size_config(name)
    with torch.device("meta"):
        return getattr(transformers, architecture_of(config).model_class)(config)


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_counts(name: str) -> dict:
    """Parameters of the vision encoder, the bridge (BLIP-2's query tokens and Q-Former; none in LLaVA), the
    projection into the language model (BLIP-2's language projection, LLaVA's projector), the language model and
    all."""
    from ..backbones.architectures import architecture_of
    model = meta_model(name)
    arch = architecture_of(model.config)
    vision = model.get_submodule(arch.image_side[0])
    projection = model.get_submodule(arch.projector)
    language = model.get_submodule(arch.language_prefix)
    head = model.get_submodule(arch.lm_head)
    tied = head.weight is language.get_input_embeddings().weight
    total = _count(model)
    counts = {"vision": _count(vision), "projection": _count(projection),
              "language": _count(language) + (0 if tied else _count(head)), "total": total}
    return {"vision": counts["vision"], "qformer": total - sum(counts[k] for k in ("vision", "projection", "language")),
            **{k: counts[k] for k in ("projection", "language", "total")}}


def full_size_shape(name: str, answer_tokens: int = 8, train_records: int = 6346):
    """The sizes of full-size backbone `name` that the editors' memory rules read (`editors.spec.FullSize`),
    from its meta model (sites resolved by the backbone's architecture, as a loaded backbone resolves them)."""
    from ..backbones.architectures import architecture_of
    from ..editors.spec import FullSize
    model = meta_model(name)
    config = model.config
    arch = architecture_of(config)
    text = config.text_config
    n = text.num_hidden_layers

    def shape(site):
        return tuple(model.get_submodule(arch.site(config, site, -1).path).weight.shape)

    ffn = {site: shape(site) for site in ("ffn_in", "ffn_out")}
    sites = arch.sites(config)
    # MEND (vision module)'s Linears: the last vision block's FFN and the bridge's (the Q-Former's last query FFN;
    # LLaVA's projector)
    vision_ffns = {site: shape(site) for site in ("vision_ffn_in", "vision_ffn_out")}
    vision_ffns.update({site: shape(site) for site in (("qformer_ffn_in", "qformer_ffn_out")
                                                       if "qformer_ffn_in" in sites else ("bridge_in", "bridge_out"))})
    language = parameter_counts(name)["language"]
    return FullSize(gated_ffn="ffn_gate" in sites, d=text.hidden_size, n_layers=n,
                    layer=_count(model.get_submodule(arch.site(config, "layer", -1).path)),
                    vision_block=_count(model.get_submodule(arch.site(config, "vision_block", -1).path)),
                    language=language, bridge_hidden=sites["language_projection"].width(config, "input"),
                    ffn_linear=ffn, edited_ffns={f"{site}.{layer}": ffn[site] for site in ffn for layer in range(3)},
                    vision_ffns=vision_ffns, answer_tokens=answer_tokens, train_records=train_records)


def editor_memory(name: str, n_edits: int = 1, backbone_hparams: str | None = None, answer_tokens: int = 8,
                  train_records: int = 6346) -> pd.DataFrame:
    """One row per editor with a memory rule (its spec's `memory`): GiB of the backbone, what an edit trains and
    keeps to restore, what each kept edit adds, and what `prepare` leaves resident, with the editors' paper hparams
    (or `backbone_hparams`' yaml). `answer_tokens`: target tokens per edit (T-Patcher adds one neuron per token);
    `train_records`: the train split IKE indexes (6,346 in BalancEdit §4.5)."""
    from ..editors.registry import EDITORS, make_hparams
    sizes = full_size_shape(name, answer_tokens, train_records)
    weights = parameter_counts(name)["total"] * FP16
    out = []
    for editor, spec in EDITORS.items():
        if spec.memory is None:
            continue
        fixed = spec.architecture_only(backbone_hparams) if spec.architecture_only and backbone_hparams else {}
        need = spec.memory(sizes, make_hparams(editor, backbone_hparams, **fixed))
        out.append({"editor": spec.label, "backbone (GiB)": weights / GIB, "prepare keeps (GiB)": need.resident / GIB,
                    "while an edit is made (GiB)": need.during / GIB, "each kept edit (MiB)": need.per_edit / 2 ** 20,
                    f"total after {n_edits} edits (GiB)":
                        (weights + need.resident + need.during + n_edits * need.per_edit) / GIB})
    return pd.DataFrame(out)


DRY_RUN_DIR_NAME = "dry_run"
DRY_RUN_COLUMNS = ("backbone", "dtype", "image_size", "prompt_format", "editor", "status", "prepare_s", "edit_s", "edit_peak_gib", "process_peak_gib",
                   "finite", "restore_exact", "acc_before", "acc_after", "took_effect")


def measured_dry_runs(folder=None) -> pd.DataFrame:
    """Every stored full-size dry run (`python -m mmedit_lib dry-run`, `results/dry_run/<backbone>-<dtype>.json`),
    one row per (backbone, dtype, editor), as measured: the counterpart of `editor_memory`'s estimates.

        >>> measured_dry_runs().query("editor == 'ft-last'")[["backbone", "dtype", "edit_s"]]   # doctest: +SKIP
    """
    import json
    from ..paths import RESULTS
    folder = RESULTS / DRY_RUN_DIR_NAME if folder is None else folder
    rows = []
    for path in sorted(folder.glob("*.json")):
        table = json.loads(path.read_text())
        setting = {k: table.get(k) for k in ("backbone", "dtype", "image_size", "prompt_format")}
        rows += [{**setting, **row} for row in table["rows"]]
    return pd.DataFrame(rows, columns=list(DRY_RUN_COLUMNS)) if rows else pd.DataFrame(columns=list(DRY_RUN_COLUMNS))
