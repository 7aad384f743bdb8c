"""The multimodal architectures a Backbone wraps: one adapter per transformers class, and their site tables.

    >>> from mmedit_lib.backbones.architectures import architecture_of
    >>> arch = architecture_of(model.config)          # Blip2Config -> BLIP2, LlavaConfig -> LLAVA   # doctest: +SKIP
    >>> arch.site(model.config, "ffn_out", -1).path                                                   # doctest: +SKIP
    'language_model.model.decoder.layers.3.fc2'
    >>> arch.image_features(model, pixels).shape        # (n, image tokens, d_lm)                       # doctest: +SKIP

An architecture says how an image reaches the language model and which modules are which:
- **vision**: the image encoder (BLIP-2's ViT; LLaVA's CLIP vision tower);
- **bridge**: what maps its output to language-model inputs (BLIP-2's query tokens, Q-Former and language
  projection; LLaVA's multimodal projector, a 2-layer MLP);
- **language**: the decoder and its head.
Sites are abstract names (`ffn_out`, `vision_block`, `bridge_in`, ...) resolved per architecture and decoder, as
pyvene keeps them: each with the stack its layer index counts in, which side of the module carries the activation
editors read there (`reads`: "input" | "output"), and the config attributes giving that side's width
(tests/test_architectures.py runs every site of every architecture and checks the widths). Decoder sites are keyed
by the text config's class, the vision and bridge sites by the multimodal config's class, so a BLIP-2 with a LLaMA
decoder (MiniGPT-4) and LLaVA share the LLaMA rows.

LLaVA-1.5 feeds the language model the penultimate layer of its vision tower (`vision_feature_layer=-2`): the
tower's last block is computed but never read. Vision sites therefore count only the blocks that reach the language
model (`stack_depth("vision")`), so `vision_block` at layer -1 is the last block whose output the projector sees
(the papers' "last layer of the visual module" in the only reading under which editing it can change an answer;
docs: the MMEdit readings page).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch


@dataclasses.dataclass(frozen=True)
class Site:
    """One intervention site: a module path (`{i}`: a layer of `stack`), the side editors read it on, and widths.

    `widths` maps "input" / "output" to the config attribute (dotted, from the multimodal config) of that side's
    last dimension; a side not listed is a tuple or not a tensor (an attention module's output)."""
    path: str
    stack: str  # "vision" | "bridge" | "language"
    reads: str = "output"  # "input" | "output": the activation the site stands for (pyvene's hook direction)
    widths: tuple[tuple[str, str], ...] = ()

    def width(self, config, side: str) -> int | None:
        attr = dict(self.widths).get(side)
        if attr is None:
            return None
        value = config
        for part in attr.split("."):
            value = getattr(value, part)
        return int(value)


def _w(**sides: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(sides.items()))


_H, _F = "text_config.hidden_size", "text_config.intermediate_size"
# Decoder sites, relative to the decoder's base model (OPTModel / LlamaModel), keyed by the text config's class.
# `layer` is a whole decoder layer (what "fine-tune the last layer" tunes); `layer_in` / `layer_out` the same module
# read on its input / output; `attn_in` the query projection, whose input is the layer's normalised pre-attention
# hidden state (UniKE's h_pre); `ffn_in` the FFN's first (up) projection and `ffn_out` its last (down) projection,
# whose input is the FFN's key activations (GRACE's and BalancEdit's keys, T-Patcher's neurons).
DECODER_SITES: dict[str, dict[str, Site]] = {
    "OPTConfig": {
        "layers": Site("decoder.layers", "language"),
        "layer": Site("decoder.layers.{i}", "language", widths=_w(input=_H)),
        "layer_in": Site("decoder.layers.{i}", "language", "input", _w(input=_H)),
        "layer_out": Site("decoder.layers.{i}", "language", "output", _w(input=_H)),
        "attn": Site("decoder.layers.{i}.self_attn", "language", widths=_w(input=_H)),
        "attn_in": Site("decoder.layers.{i}.self_attn.q_proj", "language", "input", _w(input=_H, output=_H)),
        "attn_out": Site("decoder.layers.{i}.self_attn.out_proj", "language", "output", _w(input=_H, output=_H)),
        "ffn_in": Site("decoder.layers.{i}.fc1", "language", "output", _w(input=_H, output="text_config.ffn_dim")),
        "ffn_out": Site("decoder.layers.{i}.fc2", "language", "input", _w(input="text_config.ffn_dim", output=_H)),
    },
    "LlamaConfig": {
        "layers": Site("layers", "language"),
        "layer": Site("layers.{i}", "language", widths=_w(input=_H)),
        "layer_in": Site("layers.{i}", "language", "input", _w(input=_H)),
        "layer_out": Site("layers.{i}", "language", "output", _w(input=_H)),
        "attn": Site("layers.{i}.self_attn", "language", widths=_w()),
        "attn_in": Site("layers.{i}.self_attn.q_proj", "language", "input", _w(input=_H)),
        "attn_out": Site("layers.{i}.self_attn.o_proj", "language", "output", _w(output=_H)),
        "ffn_gate": Site("layers.{i}.mlp.gate_proj", "language", "output", _w(input=_H, output=_F)),
        "ffn_in": Site("layers.{i}.mlp.up_proj", "language", "output", _w(input=_H, output=_F)),
        "ffn_out": Site("layers.{i}.mlp.down_proj", "language", "input", _w(input=_F, output=_H)),
    },
}
# What the decoder's base model applies after its layers, in order (paths relative to it; a module the config
# leaves out is None there and skipped): `Backbone.logits_above` runs it after the layers it runs.
DECODER_TAILS: dict[str, tuple[str, ...]] = {
    "OPTConfig": ("decoder.final_layer_norm", "decoder.project_out"),
    "LlamaConfig": ("norm",),
}
_VH, _VF = "vision_config.hidden_size", "vision_config.intermediate_size"
_QH, _QF = "qformer_config.hidden_size", "qformer_config.intermediate_size"


def _vit_sites(blocks: str) -> dict[str, Site]:
    """A ViT's block and FFN sites (BLIP-2's ViT and CLIP share the layout `<blocks>.{i}.mlp.fc1/fc2`)."""
    return {
        "vision_block": Site(f"{blocks}.{{i}}", "vision", widths=_w(input=_VH)),
        "vision_ffn_in": Site(f"{blocks}.{{i}}.mlp.fc1", "vision", "output", _w(input=_VH, output=_VF)),
        "vision_ffn_out": Site(f"{blocks}.{{i}}.mlp.fc2", "vision", "input", _w(input=_VF, output=_VH)),
    }


_QFORMER_FFN_IN = Site("qformer.encoder.layer.{i}.intermediate_query.dense", "bridge", "output",
                       _w(input=_QH, output=_QF))
_QFORMER_FFN_OUT = Site("qformer.encoder.layer.{i}.output_query.dense", "bridge", "input", _w(input=_QF, output=_QH))


@dataclasses.dataclass(frozen=True)
class Architecture:
    """How one transformers multimodal class is read: its modules, its sites, its image features and its logits.

    The functions take the model (or its config); a Backbone holds one of these and never names a class itself."""
    name: str
    key: str  # its name in BackboneSpec.architecture and on the command line
    model_class: str  # transformers class, by name
    language_prefix: str  # path of the decoder's base model (the DECODER_SITES paths are relative to it)
    lm_head: str  # path of the vocabulary projection
    projector: str  # path of the module that maps image features to language-model inputs (trained in stage 2)
    vision_sites: dict[str, Site]
    image_side: tuple[str, ...]  # the modules image features pass through, the projector included (the image-feature
    #                              cache watches them; stage 1 trains all but the projector)
    n_image_tokens: Callable  # config -> language-model positions one image takes
    vision_depth: Callable  # config -> vision blocks whose output reaches the language model
    stack_depths: Callable  # config -> {"bridge": layers} for layered bridges (the Q-Former)
    image_features: Callable  # (model, pixel_values) -> (n, n_image_tokens, d_lm)
    bridge_inputs: Callable  # (model, pixel_values) -> (vision patch tokens, what `projector` reads): training

    def sites(self, config) -> dict[str, Site]:
        decoder = DECODER_SITES.get(type(config.text_config).__name__)
        if decoder is None:
            raise KeyError(f"no decoder sites for {type(config.text_config).__name__}; known: {sorted(DECODER_SITES)}")
        out = {name: dataclasses.replace(site, path=f"{self.language_prefix}.{site.path}")
               for name, site in decoder.items()}
        out["lm_head"] = Site(self.lm_head, "language", "output", _w(input=_H, output="text_config.vocab_size"))
        return {**out, **self.vision_sites}

    def depth(self, config, stack: str) -> int:
        if stack == "vision":
            return self.vision_depth(config)
        if stack == "language":
            return config.text_config.num_hidden_layers
        return self.stack_depths(config).get(stack, 0)

    def site(self, config, name: str, layer: int | None = None) -> Site:
        """The site `name` with its layer filled in (negative layers count from the end of its stack)."""
        table = self.sites(config)
        if name not in table:
            raise KeyError(f"no site {name!r} in {self.name} with a {config.text_config.model_type} decoder; "
                           f"known: {sorted(table)}")
        site = table[name]
        if "{i}" not in site.path:
            return site
        if layer is None:
            raise ValueError(f"site {name!r} needs a layer index")
        depth = self.depth(config, site.stack)
        if not -depth <= layer < depth:
            raise IndexError(f"layer {layer} out of range for the {depth} {site.stack} layers of {self.name}")
        return dataclasses.replace(site, path=site.path.format(i=layer % depth))

    def decoder_tail(self, model) -> list[torch.nn.Module]:
        """The modules the decoder's base model applies after its layers (final norm, OPT's output projection)."""
        out = []
        for path in DECODER_TAILS[type(model.config.text_config).__name__]:
            module = self.language_model(model)
            for part in path.split("."):
                module = getattr(module, part, None) if module is not None else None
            if module is not None:
                out.append(module)
        return out

    def language_model(self, model) -> torch.nn.Module:
        """The decoder's base model (embeddings, layers, final norm; no head)."""
        return model.get_submodule(self.language_prefix)

    def logits(self, model, **kwargs):
        """The decoder and its head on `inputs_embeds` (kwargs as a causal LM takes them): `.logits` and
        `.past_key_values`, computed as the model's own forward computes them."""
        out = self.language_model(model)(**kwargs)
        return CausalOutput(model.get_submodule(self.lm_head)(out.last_hidden_state), out.past_key_values)


@dataclasses.dataclass
class CausalOutput:
    logits: torch.Tensor
    past_key_values: object = None


# ---- BLIP-2 (BLIP-2 OPT, MiniGPT-4 converted into it) --------------------------------------------------------------
def _blip2_features(model, pixel_values):
    return model.get_image_features(pixel_values=pixel_values, return_dict=True).pooler_output


def _blip2_bridge_inputs(model, pixels):
    vision = model.vision_model(pixel_values=pixels, return_dict=True).last_hidden_state
    query = model.qformer(query_embeds=model.query_tokens.expand(len(pixels), -1, -1), encoder_hidden_states=vision,
                          encoder_attention_mask=torch.ones(vision.shape[:2], dtype=torch.long, device=vision.device),
                          return_dict=True).last_hidden_state
    return vision, query


BLIP2 = Architecture(
    name="BLIP-2", key="blip2", model_class="Blip2ForConditionalGeneration",
    language_prefix="language_model.model", lm_head="language_model.lm_head", projector="language_projection",
    vision_sites={
        **_vit_sites("vision_model.encoder.layers"),
        "qformer_block": Site("qformer.encoder.layer.{i}", "bridge", widths=_w(input=_QH)),
        "qformer_ffn_in": _QFORMER_FFN_IN,
        "qformer_ffn_out": _QFORMER_FFN_OUT,
        # the bridge's own FFN, whatever the bridge is (here the Q-Former's last query FFN)
        "bridge_in": _QFORMER_FFN_IN,
        "bridge_out": _QFORMER_FFN_OUT,
        "language_projection": Site("language_projection", "bridge", "output", _w(input=_QH, output=_H)),
    },
    image_side=("vision_model", "qformer", "language_projection"),
    n_image_tokens=lambda config: config.num_query_tokens,
    vision_depth=lambda config: config.vision_config.num_hidden_layers,
    stack_depths=lambda config: {"bridge": config.qformer_config.num_hidden_layers},
    image_features=_blip2_features,
    bridge_inputs=_blip2_bridge_inputs,
)


# ---- LLaVA (LLaVA-1.5: CLIP ViT-L/14-336, a 2-layer MLP projector, Vicuna) ----------------------------------------
def _llava_selected(model, pixel_values):
    """The vision tower's features that LLaVA projects: hidden state `vision_feature_layer`, without the class token
    under the "default" strategy."""
    config = model.config
    out = model.get_submodule("model.vision_tower")(pixel_values, output_hidden_states=True, return_dict=True)
    layer = config.vision_feature_layer
    if not isinstance(layer, int):
        raise NotImplementedError(f"vision_feature_layer={layer!r}: only one feature layer is supported")
    hidden = out.hidden_states[layer]
    return out.last_hidden_state, (hidden[:, 1:] if config.vision_feature_select_strategy == "default" else hidden)


def _llava_features(model, pixel_values):
    _, selected = _llava_selected(model, pixel_values)
    return model.get_submodule("model.multi_modal_projector")(selected)


def _llava_image_tokens(config) -> int:
    grid = config.vision_config.image_size // config.vision_config.patch_size
    return grid * grid + (0 if config.vision_feature_select_strategy == "default" else 1)


def _llava_vision_depth(config) -> int:
    """Blocks whose output reaches the projector: hidden_states has n + 1 entries (embeddings, then each block)."""
    n, layer = config.vision_config.num_hidden_layers, config.vision_feature_layer
    return layer if layer >= 0 else n + 1 + layer


LLAVA = Architecture(
    name="LLaVA", key="llava", model_class="LlavaForConditionalGeneration",
    language_prefix="model.language_model", lm_head="lm_head", projector="model.multi_modal_projector",
    vision_sites={
        **_vit_sites("model.vision_tower.encoder.layers"),
        # the bridge is the projector: linear_1 (vision width -> d_lm), GELU, linear_2 (d_lm -> d_lm)
        "bridge_in": Site("model.multi_modal_projector.linear_1", "bridge", "output", _w(input=_VH, output=_H)),
        "bridge_out": Site("model.multi_modal_projector.linear_2", "bridge", "input", _w(input=_H, output=_H)),
        "language_projection": Site("model.multi_modal_projector", "bridge", "output", _w(input=_VH, output=_H)),
    },
    image_side=("model.vision_tower", "model.multi_modal_projector"),
    n_image_tokens=_llava_image_tokens,
    vision_depth=_llava_vision_depth,
    stack_depths=lambda config: {},
    image_features=_llava_features,
    bridge_inputs=_llava_selected,
)

ARCHITECTURES = {"Blip2Config": BLIP2, "LlavaConfig": LLAVA}


def architecture_of(config) -> Architecture:
    """The adapter for a multimodal config (by its class)."""
    name = type(config).__name__
    if name not in ARCHITECTURES:
        raise KeyError(f"no architecture adapter for {name}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name]
