"""GRACE (Hartvigsen et al., NeurIPS 2023): a discrete key-value codebook at one layer, as BalancEdit adapts it.

    >>> edit = apply_grace(bb, request, GRACEHparams())          # doctest: +SKIP
    >>> lookup(bb, [request.query])                              # the entry it made fires on its own input
    ... # doctest: +SKIP

The key of an edit is the layer's input at the last prompt token (the image tokens come first, so the key reads
"the image and the question", BalancEdit App. E). The value is a vector trained with Adam on the edit's loss; at
inference it replaces the layer's output from the query token on when the nearest key is within its radius ε,
else the layer runs as usual. A new edit whose key is farther than ε_init + ε from every key gets a new entry
(radius ε_init); one that lands near the nearest key with the *same* answer expands that key's radius to reach it
(GRACE's "coverage" rule, no new entry); with a *different* answer it gets a new entry and both radii are split to
half their distance. The layer is the last decoder layer's FFN output projection (BalancEdit App. F: OPT's fc2;
for LLaMA we take down_proj, the same site, where App. F names up_proj).
The value replaces the positions that predict the answer: from the query token on, as many as the edit's answer has
tokens (`Entry.span`); GRACE's replace_last would change only the first answer token on a decoder, so multi-token
answers could not be learned, and replacing every later position would keep greedy decoding from ending.
Values start from the layer's own output there ("warm"; "cold" = uniform noise as GRACE's default).
"""
from __future__ import annotations

import dataclasses

import torch

from ..backbones.backbone import Backbone
from .base import EditRequest, fit_edit, frozen
from .spec import FP16, EditorSpec, Memory, adam_bytes
from .codebook import DISTANCES, CodebookEdit, Entry, current_codebook, layer_inputs, query_vectors, \
    training_hook


@dataclasses.dataclass
class GRACEHparams:
    site: str = "ffn_out"
    layer: int = -1
    eps_init: float = 1.0  # GRACE's ε_init
    distance: str = "euclidean"
    lr: float = 1.0  # GRACE's edit_lr for values
    steps: int = 100  # BalancEdit App. F: 100 iterations per input for adaptor editors
    stop_at_loss: float = 0.0  # 0: always the full `steps` (GRACE); > 0: stop once the edit's loss is below
    value_init: str = "warm"  # warm | cold

    def check(self) -> None:
        if self.value_init not in ("warm", "cold"):
            raise ValueError(f"grace.value_init is warm or cold; got {self.value_init!r}")
        if self.distance not in DISTANCES:
            raise ValueError(f"grace.distance is one of {DISTANCES}; got {self.distance!r}")
        if self.eps_init <= 0:
            raise ValueError(f"grace.eps_init must be positive; got {self.eps_init}")


def _initial_value(bb: Backbone, request: EditRequest, hp: GRACEHparams) -> torch.Tensor:
    if hp.value_init == "cold":
        out_features = bb.module(hp.site, hp.layer).weight.shape[0]
        return torch.rand(out_features)
    x, spans = layer_inputs(bb, hp.site, hp.layer, [request.query])
    module = bb.module(hp.site, hp.layer)  # the layer's own output at the query token (not through the hook)
    with torch.no_grad():
        return torch.nn.functional.linear(x[0, spans[0][1] - 1], module.weight, module.bias).float()


def _span(bb: Backbone, request: EditRequest) -> int:
    return len(bb.target_ids(request.query.target))


def train_value(bb: Backbone, request: EditRequest, value: torch.Tensor, hp: GRACEHparams) -> torch.Tensor:
    value = value.clone().requires_grad_(True)
    with frozen(bb.model), training_hook(bb, hp.site, hp.layer, "last",
                                         lambda x, out: value.to(out.dtype).expand_as(out)):
        fit_edit(bb, request.query, [value], hp.lr, hp.steps, hp.stop_at_loss, paths=[bb.site(hp.site, hp.layer)])
    return value.detach()


def apply_grace(bb: Backbone, request: EditRequest, hp: GRACEHparams, prepared=None) -> CodebookEdit:
    hp.check()
    book = current_codebook(bb, "grace", hp.site, hp.layer, "last", hp.distance)
    key = query_vectors(bb, book, [request.query])[0]
    label, span, entries = request.query.target, _span(bb, request), list(book.entries)
    radius, rule = hp.eps_init, "new"
    if entries:
        index, dist, _ = book.nearest(key[None])
        i, d = int(index[0]), float(dist[0])
        nearest = entries[i]
        if d <= hp.eps_init + nearest.radius:
            if nearest.label == label:  # expand the nearest key's radius to reach the new key; train its value on
                entries[i] = dataclasses.replace(nearest, radius=max(d, nearest.radius),
                                                 value=train_value(bb, request, nearest.value, hp),
                                                 span=max(nearest.span, span),
                                                 info={**nearest.info, "rule": "expanded"})
                return CodebookEdit(bb, dataclasses.replace(book, entries=tuple(entries)))
            # another answer: split, both radii become half the distance
            entries[i] = dataclasses.replace(nearest, radius=d / 2 - 1e-5, info={**nearest.info, "rule": "split"})
            radius, rule = d / 2, "split"
    value = train_value(bb, request, _initial_value(bb, request, hp), hp)
    entries.append(Entry(key, radius, label, request.case_id, value=value, info={"rule": rule}, span=span))
    return CodebookEdit(bb, dataclasses.replace(book, entries=tuple(entries)))


SPEC = EditorSpec("grace", GRACEHparams, apply_grace, label="GRACE", edit_steps="steps", smoke={"steps": 10},
                  memory=lambda s, hp: Memory(adam_bytes(s.d), 2 * s.d * FP16, 0),  # kept: a key and a value
                  summary="GRACE: a key-value codebook at the last FFN output; values replace the output within ε")
