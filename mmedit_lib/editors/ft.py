"""FT baselines: fine-tune one site of the backbone on the edit.

    >>> edit = apply_ft(backbone, EditRequest(Query(image, backbone.vqa_prompt(rec.src), rec.alt)), FTHparams())
    ... # doctest: +SKIP
    >>> edit.restore()                                                                      # doctest: +SKIP

`ft-last` is MMEdit's and UniKE's "FT (LLM last layer)": the FFN output projection of the language model's last
decoder layer (OPT fc2, LLaMA down_proj; `sites` and `layers` pick others, e.g. `("ffn_in", "ffn_out")`). `ft-vision` is MMEdit's "FT (vision block)": the last block on the
vision side, read here as the last Q-Former layer (the vision-side block nearest the language model; set
`site="vision_block"` for the ViT's last block). Adam; 20 steps at lr 3e-3 for the language side, measured on the
tiny backbones (the full-size values belong in a per-backbone hparams file); early stop once the edit is learned.
"""
from __future__ import annotations

import dataclasses

import torch

from ..backbones.backbone import Backbone
from .base import EditRequest, WeightEdit


@dataclasses.dataclass
class FTHparams:
    sites: tuple[str, ...] = ("ffn_out",)
    layers: tuple[int, ...] = (-1,)
    steps: int = 20
    lr: float = 3e-3
    stop_at_loss: float = 1e-3  # early stop once the edit is learned


@dataclasses.dataclass
class FTVisionHparams(FTHparams):
    sites: tuple[str, ...] = ("qformer_block",)
    lr: float = 1e-3


def edited_parameters(backbone: Backbone, sites, layers) -> dict[str, torch.nn.Parameter]:
    params = {}
    for site in sites:
        for layer in layers:
            path = backbone.site(site, layer)
            for name, p in backbone.model.get_submodule(path).named_parameters():
                params[f"{path}.{name}"] = p
    if not params:
        raise ValueError(f"sites {sites} at layers {layers} hold no parameters")
    return params


def apply_ft(backbone: Backbone, request: EditRequest, hp: FTHparams) -> WeightEdit:
    params = edited_parameters(backbone, hp.sites, hp.layers)
    edit = WeightEdit(params)
    optimizer = torch.optim.Adam(params.values(), lr=hp.lr)
    flags = {p: p.requires_grad for p in backbone.model.parameters()}
    backbone.model.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    try:
        for _ in range(hp.steps):
            loss = backbone.loss([request.query])
            if loss.item() < hp.stop_at_loss:
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
            p.grad = None
    return edit
