"""Intervention sites per decoder family: abstract site names -> module paths (pyvene-style table).

    >>> from mmedit_lib.backbones.sites import site_path
    >>> site_path("opt", "ffn_out", layer=-1, n_layers=4)
    'language_model.model.decoder.layers.3.fc2'
    >>> site_path("llama", "ffn_out", layer=0, n_layers=4)
    'language_model.model.layers.0.mlp.down_proj'

`layer` is a whole decoder layer (attention, FFN, norms: what "fine-tune the last layer" tunes); `layer_in` /
`layer_out` name the same module, to hook its input / its output; `attn_in` is the query projection, whose input
is the layer's normalised pre-attention hidden state (UniKE's h_pre). Vision-side sites
(`vision_block`, `qformer_block`) are the same for every BLIP-2-style backbone.
"""
from __future__ import annotations

_VISION = {
    "vision_block": "vision_model.encoder.layers.{i}",
    "vision_ffn_in": "vision_model.encoder.layers.{i}.mlp.fc1",
    "vision_ffn_out": "vision_model.encoder.layers.{i}.mlp.fc2",
    "qformer_block": "qformer.encoder.layer.{i}",
    "qformer_ffn_in": "qformer.encoder.layer.{i}.intermediate_query.dense",
    "qformer_ffn_out": "qformer.encoder.layer.{i}.output_query.dense",
    "language_projection": "language_projection",
}

SITE_TABLE: dict[str, dict[str, str]] = {
    "opt": {
        "layers": "language_model.model.decoder.layers",
        "layer": "language_model.model.decoder.layers.{i}",
        "layer_in": "language_model.model.decoder.layers.{i}",
        "layer_out": "language_model.model.decoder.layers.{i}",
        "attn": "language_model.model.decoder.layers.{i}.self_attn",
        "attn_in": "language_model.model.decoder.layers.{i}.self_attn.q_proj",
        "attn_out": "language_model.model.decoder.layers.{i}.self_attn.out_proj",
        "ffn_in": "language_model.model.decoder.layers.{i}.fc1",
        "ffn_out": "language_model.model.decoder.layers.{i}.fc2",
        "lm_head": "language_model.lm_head",
        **_VISION,
    },
    "llama": {
        "layers": "language_model.model.layers",
        "layer": "language_model.model.layers.{i}",
        "layer_in": "language_model.model.layers.{i}",
        "layer_out": "language_model.model.layers.{i}",
        "attn": "language_model.model.layers.{i}.self_attn",
        "attn_in": "language_model.model.layers.{i}.self_attn.q_proj",
        "attn_out": "language_model.model.layers.{i}.self_attn.o_proj",
        "ffn_gate": "language_model.model.layers.{i}.mlp.gate_proj",
        "ffn_in": "language_model.model.layers.{i}.mlp.up_proj",
        "ffn_out": "language_model.model.layers.{i}.mlp.down_proj",
        "lm_head": "language_model.lm_head",
        **_VISION,
    },
}


def site_path(family: str, site: str, layer: int | None = None, n_layers: int | None = None) -> str:
    """Module path of `site` in decoder `family`; negative `layer` counts from the end (needs n_layers)."""
    try:
        template = SITE_TABLE[family][site]
    except KeyError:
        known = {f: sorted(s) for f, s in SITE_TABLE.items()}
        raise KeyError(f"no site {site!r} for decoder family {family!r}; known: {known}") from None
    if "{i}" not in template:
        return template
    if layer is None:
        raise ValueError(f"site {site!r} needs a layer index")
    if layer < 0:
        if n_layers is None:
            raise ValueError("a negative layer index needs n_layers")
        layer += n_layers
    return template.format(i=layer)
