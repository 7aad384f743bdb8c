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

import dataclasses

import pandas as pd
import torch

GIB = 2 ** 30
FP16, FP32 = 2, 4


def full_size_config(name: str):
    """Blip2Config of a full-size backbone ("blip2-opt-2.7b" | "minigpt4-7b")."""
    from transformers import Blip2Config, Blip2QFormerConfig, Blip2VisionConfig, LlamaConfig, OPTConfig
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
        raise ValueError(f"no full-size architecture for {name!r}; known: blip2-opt-2.7b, minigpt4-7b")
    return Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=text.to_dict(),
                       num_query_tokens=32, image_token_index=text.vocab_size - 1)


def meta_model(name: str):
    from transformers import Blip2ForConditionalGeneration
    with torch.device("meta"):
        return Blip2ForConditionalGeneration(full_size_config(name))


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_counts(name: str) -> dict:
    model = meta_model(name)
    return {"vision": _count(model.vision_model), "qformer": _count(model.qformer) + model.query_tokens.numel(),
            "projection": _count(model.language_projection), "language": _count(model.language_model),
            "total": _count(model)}


@dataclasses.dataclass
class _Shape:
    """The sizes an editor's own tensors depend on, read from the meta model."""
    family: str
    d: int
    d_ffn: int
    n_layers: int
    layer: int  # parameters of one decoder layer
    vision_block: int
    ffn_linear: dict  # site -> (d_out, d_in) of the FFN's Linear at that site
    vision_ffns: dict  # MEND (vision module)'s Linears: the last ViT block's and Q-Former layer's FFN -> (out, in)


def _shape(name: str) -> _Shape:
    from ..backbones.sites import site_path
    model = meta_model(name)
    text = model.config.text_config
    family = text.model_type
    n = text.num_hidden_layers
    ffn = {site: tuple(model.get_submodule(site_path(family, site, -1, n)).weight.shape)
           for site in ("ffn_in", "ffn_out")}
    depth = {"vision": model.config.vision_config.num_hidden_layers, "qformer": model.config.qformer_config.num_hidden_layers}
    vision_ffns = {site: tuple(model.get_submodule(site_path(family, site, -1, depth[site.split("_")[0]])).weight.shape)
                   for site in ("vision_ffn_in", "vision_ffn_out", "qformer_ffn_in", "qformer_ffn_out")}
    return _Shape(family, text.hidden_size, ffn["ffn_out"][1], n,
                  _count(model.get_submodule(site_path(family, "layer", -1, n))),
                  _count(model.vision_model.encoder.layers[-1]), ffn, vision_ffns)


def _adam(params: int, dtype_bytes: int = FP16) -> int:
    """Bytes to train `params` with Adam while an edit is made: their gradient and the two moments."""
    return 3 * params * dtype_bytes


def editor_memory(name: str, n_edits: int = 1, backbone_hparams: str | None = None, answer_tokens: int = 8,
                  train_records: int = 6346) -> pd.DataFrame:
    """One row per editor: GiB of the backbone, what an edit trains and keeps to restore, what each kept edit
    adds, and what `prepare` leaves resident, with the editors' paper hparams (or `backbone_hparams`' yaml).
    `answer_tokens`: target tokens per edit (T-Patcher adds one neuron per token); `train_records`: the train split
    IKE indexes (6,346 in BalancEdit §4.5)."""
    from ..editors.ke import KENet
    from ..editors.mend import MENDNet
    from ..editors.registry import make_hparams
    from ..editors.serac import EMBED_DIM
    from .onestep import LABELS
    from ..editors.serac import architecture_only, small_parameters
    hp = {e: make_hparams(e, backbone_hparams) for e in ("ke", "mend", "mend-vision", "t-patcher", "unike")}
    hp["serac"] = make_hparams("serac", backbone_hparams,
                               **(architecture_only(backbone_hparams) if backbone_hparams else {}))
    counts, s = parameter_counts(name), _shape(name)
    weights = counts["total"] * FP16
    shapes = {f"{site}.{layer}": s.ffn_linear[site] for site in ("ffn_in", "ffn_out") for layer in range(3)}
    with torch.device("meta"):
        mend = _count(MENDNet(shapes, hp["mend"].rank, 1e-4))
        mend_vision = _count(MENDNet(s.vision_ffns, hp["mend-vision"].rank, 1e-4))
        ke = _count(KENet(s.d, shapes, hp["ke"].lstm_hidden, hp["ke"].head_hidden, 1.0))
    vision_ffns = sum(o * i + o for o, i in s.vision_ffns.values())
    edited_ffns = sum(o * i + o for o, i in shapes.values())  # MEND's and KE's edited Linears, three layers
    unike, tp = hp["unike"], hp["t-patcher"]
    unike_layers = min(unike.n_layers, s.n_layers)
    pair = 3 * s.d if s.family == "llama" else 2 * s.d + 1  # a SwiGLU key-value pair (gate, up, down) or a ReLU one
    neuron = 2 * s.d + 1  # a T-Patcher neuron: key, bias, value
    last_ffn_out = s.ffn_linear["ffn_out"][0] * (s.ffn_linear["ffn_out"][1] + 1)
    serac = hp["serac"]  # its counterfactual model's own weights (what it does not train is the backbone's, shared)
    if serac.counterfactual == "small":
        counterfactual = small_parameters(serac.small_model, full_size_config(name).qformer_config.hidden_size)
    else:
        counterfactual = len(set(serac.cf_layers)) * s.layer if serac.cf_layers else counts["language"]
    rows = [  # (editor, while an edit is made, what each kept edit holds, what prepare leaves resident)
        ("ft-last", _adam(s.layer), s.layer * FP16, 0),  # kept: the layer's copy restore() needs
        ("ft-vision", _adam(s.vision_block), s.vision_block * FP16, 0),
        ("ke", edited_ffns * FP16, edited_ffns * FP16, ke * FP32),  # the update formed; kept: the restore copy
        ("mend", edited_ffns * FP16, edited_ffns * FP16, mend * FP32),
        ("mend-vision", vision_ffns * FP16, vision_ffns * FP16, mend_vision * FP32),
        ("t-patcher", _adam(neuron * answer_tokens), neuron * answer_tokens * FP16, tp.memory_size * s.d * FP32),
        ("ike", 0, 0, train_records * EMBED_DIM * FP32),  # the edit's text only
        ("serac", 0, 0, counterfactual * FP16 + (4 * EMBED_DIM * serac.classifier_hidden) * FP32),
        ("unike", _adam(unike.n_extra * pair * unike_layers),
         unike.n_extra * pair * unike_layers * FP16 + 2 * s.d * unike_layers * FP32,  # its pairs; its latent entry
         unike_layers * (3 * unike.memory_triplets * s.d + 2 * (4 * s.d * s.d) + unike.patch_memory_size * s.d) * FP32),
        ("grace", _adam(s.d), 2 * s.d * FP16, 0),  # kept: a key and a value
        ("balancedit", _adam(last_ffn_out), (last_ffn_out + s.d) * FP16, 0),  # kept: a key and a layer copy
    ]
    out = []
    for editor, during, per_edit, resident in rows:
        out.append({"editor": LABELS[editor], "backbone (GiB)": weights / GIB, "prepare keeps (GiB)": resident / GIB,
                    "while an edit is made (GiB)": during / GIB, "each kept edit (MiB)": per_edit / 2 ** 20,
                    f"total after {n_edits} edits (GiB)": (weights + resident + during + n_edits * per_edit) / GIB})
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
