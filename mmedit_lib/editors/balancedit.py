"""BalancEdit: a codebook at layer l whose entries hold a key, a fine-tuned copy of the layer and an influence radius
set from a positive and a negative sample of the edit.

    >>> edit = apply_balancedit(bb, request, BalancEditHparams())       # doctest: +SKIP
    >>> entries_frame(installed_codebook(bb))     # key norm, radius, d_pos, d_neg, the edit it came from
    ... # doctest: +SKIP

- Key: the averaged layer l-1 embedding of the edit input (Sec. 3.2), read as the input of layer l averaged over
  the prompt's positions (image tokens, <s>, question).
- Transformation: a copy of layer l (weights and bias) fine-tuned with Adam on the edit's loss (Eq. 2); when an
  input's averaged embedding is within the nearest key's radius, that copy computes the layer's output at every
  position (Eq. 1), else the layer runs as usual.
- Radius: from the positive sample (the training rephrase of the question, same image) and the negative sample
  (the same question on an all-black image; `anchor="white"`: all-white, Table 7). The paper gives two weightings:
  main text Eq. 3, ε = (1-α)·d(Pos,k) + α·d(Neg,k), and appendix Eq. 10, ε = α·d(Pos,k) + (1-α)·d(Neg,k). Fig. 5
  reports locality rising and image generality falling as α grows, i.e. a radius that *shrinks* with α; since
  d(Neg,k) > d(Pos,k) that is Eq. 10 (`weighting="appendix"`, the default). Eq. 3 is `weighting="main"`.
- Overlap and conflict (Sec. 3.2): a new key inside an existing entry's radius with the same answer starts its
  transformation from that entry's (previous edits are not forgotten). If it "directly conflicts" with a previous
  edit the old entry is discarded and the new one starts from the original layer. What counts as a direct conflict
  the paper does not say; `conflict="same-question"` (default) reads it as the same question re-edited to another
  answer inside the old radius (other neighbours with other answers keep their entries and the nearest key decides,
  which keeps every edit of a 50-edit sequence, as Table 4's Acc 100 needs); `conflict="radius"` discards any entry
  with another answer whose radius holds the new key (in this world's small fact space that drops earlier edits).
- Layer: the last decoder layer's FFN output projection, the layer GRACE edits (App. F: OPT fc2; LLaMA down_proj,
  where App. F names up_proj). Distance: Euclidean (default, App. F) or cosine (Table 6).
"""
from __future__ import annotations

import dataclasses

import torch
from PIL import Image

from ..backbones.backbone import Backbone, Query
from .base import EditRequest, fit_edit, frozen
from .spec import FP16, EditorSpec, Memory, adam_bytes
from .codebook import CodebookEdit, DISTANCES, Entry, current_codebook, pairwise_distance, query_vectors, \
    training_hook

WEIGHTINGS = ("appendix", "main")
ANCHORS = {"black": (0, 0, 0), "white": (255, 255, 255)}


@dataclasses.dataclass
class BalancEditHparams:
    site: str = "ffn_out"
    layer: int = -1
    alpha: float = 0.2  # Fig. 5 sweeps 0.1-0.3
    weighting: str = "appendix"  # appendix (Eq. 10, α on the positive) | main (Eq. 3, α on the negative)
    distance: str = "euclidean"  # euclidean | cosine
    anchor: str = "black"  # black | white
    lr: float = 1e-2  # App. F: 1e-2 for the fine-tuning-based editors
    steps: int = 100  # at most; App. F: 100 iterations per input
    stop_at_loss: float = 1e-2  # stop once the edit's loss is below
    conflict: str = "same-question"  # same-question | radius: which overlapping entry with another answer is dropped

    def check(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"balancedit.weighting is one of {WEIGHTINGS}; got {self.weighting!r}")
        if self.distance not in DISTANCES:
            raise ValueError(f"balancedit.distance is one of {DISTANCES}; got {self.distance!r}")
        if self.anchor not in ANCHORS:
            raise ValueError(f"balancedit.anchor is one of {tuple(ANCHORS)}; got {self.anchor!r}")
        if self.conflict not in ("same-question", "radius"):
            raise ValueError(f"balancedit.conflict is same-question or radius; got {self.conflict!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"balancedit.alpha must be in [0, 1]; got {self.alpha}")


def radius(d_pos: float, d_neg: float, alpha: float, weighting: str) -> float:
    """The influence radius: Eq. 10 (`appendix`) or Eq. 3 (`main`).

        >>> radius(1.0, 3.0, 0.25, "appendix"), radius(1.0, 3.0, 0.25, "main")
        (2.5, 1.5)
    """
    if weighting == "appendix":
        return alpha * d_pos + (1 - alpha) * d_neg
    if weighting == "main":
        return (1 - alpha) * d_pos + alpha * d_neg
    raise ValueError(f"unknown weighting {weighting!r}; known: {', '.join(WEIGHTINGS)}")


def anchor_image(anchor: str) -> Image.Image:
    return Image.new("RGB", (224, 224), ANCHORS[anchor])


def samples(bb: Backbone, request: EditRequest, anchor: str) -> tuple[Query, Query]:
    """(positive, negative): the training rephrase on the edit image; the edit question on the anchor image."""
    if not request.train_prompt:
        raise ValueError(f"BalancEdit needs a training rephrase of the edit question for its positive sample "
                         f"(record field train_rephrase or rephrased_questions_train); case {request.case_id!r} "
                         "has none")
    q = request.query
    negative_image = bb.pixel_values([anchor_image(anchor)])[0]
    return Query(q.image, request.train_prompt, q.target), Query(negative_image, q.prompt, q.target)


def train_transformation(bb: Backbone, request: EditRequest, weight: torch.Tensor, bias: torch.Tensor | None,
                         hp: BalancEditHparams) -> tuple[torch.Tensor, torch.Tensor | None]:
    weight = weight.detach().clone().requires_grad_(True)
    bias = None if bias is None else bias.detach().clone().requires_grad_(True)
    params = [weight] + ([bias] if bias is not None else [])

    def copy_of_layer(x, out):
        return torch.nn.functional.linear(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype))
    with frozen(bb.model), training_hook(bb, hp.site, hp.layer, "mean", copy_of_layer):
        fit_edit(bb, request.query, params, hp.lr, hp.steps, hp.stop_at_loss, paths=[bb.site(hp.site, hp.layer)])
    return weight.detach(), None if bias is None else bias.detach()


def apply_balancedit(bb: Backbone, request: EditRequest, hp: BalancEditHparams, prepared=None) -> CodebookEdit:
    hp.check()
    book = current_codebook(bb, "balancedit", hp.site, hp.layer, "mean", hp.distance)
    positive, negative = samples(bb, request, hp.anchor)
    key, pos, neg = query_vectors(bb, book, [request.query, positive, negative])
    d_pos, d_neg = (float(pairwise_distance(v[None], key[None], hp.distance)) for v in (pos, neg))
    eps = radius(d_pos, d_neg, hp.alpha, hp.weighting)
    label = request.query.target
    layer = bb.module(hp.site, hp.layer)
    start_weight, start_bias, rule = layer.weight, layer.bias, "new"
    entries = list(book.entries)
    if entries:
        index, dist, fired = book.nearest(key[None])
        if bool(fired[0]):
            nearest = entries[int(index[0])]
            same_question = nearest.info.get("prompt") == request.query.prompt
            if nearest.label == label:  # overlap: build on the previous transformation
                start_weight, start_bias, rule = nearest.weight, nearest.bias, "overlap"
            elif hp.conflict == "radius" or same_question:  # direct conflict: the previous entry is discarded
                del entries[int(index[0])]
                rule = "conflict"
    weight, bias = train_transformation(bb, request, start_weight, start_bias, hp)
    info = {"d_pos": d_pos, "d_neg": d_neg, "rule": rule, "prompt": request.query.prompt}
    entry = Entry(key.detach(), eps, label, request.case_id, weight=weight, bias=bias, info=info)
    return CodebookEdit(bb, dataclasses.replace(book, entries=tuple(entries) + (entry,)))


def memory(s, hp: BalancEditHparams) -> Memory:
    """Adam on a copy of the last FFN's output Linear; kept: a key and that layer copy."""
    layer = s.ffn_linear["ffn_out"][0] * (s.ffn_linear["ffn_out"][1] + 1)
    return Memory(adam_bytes(layer), (layer + s.d) * FP16, 0)


SPEC = EditorSpec("balancedit", BalancEditHparams, apply_balancedit, label="BalancEdit", edit_steps="steps",
                  smoke={"steps": 20}, memory=memory,
                  summary="BalancEdit: codebook of fine-tuned layer copies; radius from positive and black-image "
                          "negative samples")
