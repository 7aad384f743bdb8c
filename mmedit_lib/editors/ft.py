"""FT baselines: fine-tune one site of the backbone on the edit (MMEdit's "FT (LLM last layer)").

    >>> edit = apply_ft(backbone, Query(image, backbone.vqa_prompt(rec.src), rec.alt), FTHparams())  # doctest: +SKIP
    >>> edit.restore()                                                                              # doctest: +SKIP

Defaults: the FFN output projection of the last decoder layer (OPT fc2, LLaMA down_proj), Adam, 20 steps at
lr 3e-3 (measured on the tiny backbones; the full-size value belongs in a per-backbone hparams file).
"""
from __future__ import annotations

import dataclasses

import torch

from ..backbones.backbone import Backbone, Query
from .base import WeightEdit


@dataclasses.dataclass
class FTHparams:
    site: str = "ffn_out"
    layers: tuple[int, ...] = (-1,)
    steps: int = 20
    lr: float = 3e-3
    stop_at_loss: float = 1e-3  # early stop once the edit is learned


def apply_ft(backbone: Backbone, query: Query, hp: FTHparams) -> WeightEdit:
    modules = [backbone.module(hp.site, layer) for layer in hp.layers]
    params = {f"{backbone.site(hp.site, layer)}.{n}": p
              for layer, m in zip(hp.layers, modules) for n, p in m.named_parameters()}
    edit = WeightEdit(params)
    optimizer = torch.optim.Adam(params.values(), lr=hp.lr)
    flags = {p: p.requires_grad for p in backbone.model.parameters()}
    backbone.model.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    try:
        for _ in range(hp.steps):
            loss = backbone.loss([query])
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
