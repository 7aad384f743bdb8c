"""UniKE's latent in-context editing (accommodation, §3.2 and Appendix A): feature shifting of the attention output.

    >>> stores = {3: LatentStore(h_sem, h_pos)}                              # the external key-value memory
    >>> with latent_shift(bb, stores, LatentConfig(top_k=40, alpha=0.4)):   # doctest: +SKIP
    ...     bb.greedy([query])

At every shifted layer and every position t, the pre-attention state h_pre,t (the query projection's input)
retrieves the top-K memory entries by cosine similarity of h_pre,t with h_sem, and attends over their h_pos
with the layer's own projections (query from h_pre,t, keys and values from h_pos; heads as the layer has them,
without rotary positions: the memory has no place in the sequence). That is Eq. 8's second term with the K
latent states standing for the knowledge tokens, so h_know lives where the attention output lives, and the output
becomes a mix of h_input (the layer's attention output) and h_know.

Position-wise: each position treats its own prefix as "the input", so its own state plays the part of
h_input[−1]; teacher-forced scoring and cached generation see the same shifts.

α, and which term it weights:
- `alpha` a number: fixed (Figure 4b); `alpha=None` with a semantic encoder: dynamic, Eq. 7,
  Sim = cos(EncSem(h̄_know,t), h_pre,t) clamped to [0, 1], h̄_know,t the retrieved h_pos weighted by the
  head-averaged attention (EncSem maps h_pos-space states to h_sem's space).
- `reading="knowledge"` (default): out = (1 − α)·h_input + α·h_know. The paper's text, its analysis ("a smaller α
  reduces the inclusion magnitude to preserve locality") and Figure 4b (a larger fixed α improves generality
  and costs locality) all need α to weight the knowledge.
- `reading="literal"`: out = α·h_input + (1 − α)·h_know, Eq. 2 and Eq. 7 as printed.
"""
from __future__ import annotations

import contextlib
import dataclasses

import torch
import torch.nn.functional as F

from .base import SlotEdit, attached
from .hooks import read_and_rewrite

READINGS = ("knowledge", "literal")


@dataclasses.dataclass
class LatentStore:
    h_sem: torch.Tensor  # (n, d): retrieval keys
    h_pos: torch.Tensor  # (n, d): attended over

    def with_entry(self, h_sem: torch.Tensor, h_pos: torch.Tensor) -> "LatentStore":
        return LatentStore(torch.cat([self.h_sem, h_sem[None].to(self.h_sem.dtype)]),
                           torch.cat([self.h_pos, h_pos[None].to(self.h_pos.dtype)]))


@dataclasses.dataclass
class LatentConfig:
    top_k: int = 40
    alpha: float | None = None  # None: dynamic (needs semantic encoders)
    reading: str = "knowledge"


def _projections(bb, layer: int):
    attn, out = bb.module("attn", layer), bb.module("attn_out", layer)
    q, k, v = attn.q_proj, attn.k_proj, attn.v_proj
    head_dim = getattr(attn, "head_dim", None) or q.out_features // attn.num_heads
    return q, k, v, out, head_dim


def latent_knowledge(bb, layer: int, h_pre: torch.Tensor, store: LatentStore, top_k: int):
    """(h_know (N, d) through the layer's projections, h̄_know (N, d) in h_pos space) for states h_pre (N, d)."""
    q_proj, k_proj, v_proj, out_proj, head_dim = _projections(bb, layer)
    keys = F.normalize(store.h_sem, dim=-1)
    k = min(top_k, len(store.h_sem))
    index = (F.normalize(h_pre.to(keys.dtype), dim=-1) @ keys.T).topk(k, dim=-1).indices  # (N, K)
    retrieved = store.h_pos[index].to(h_pre.dtype)  # (N, K, d), in the backbone's dtype (the memory is float32)
    n = len(h_pre)
    query = F.linear(h_pre, q_proj.weight, q_proj.bias).view(n, -1, head_dim)  # (N, H, hd)
    key = F.linear(retrieved, k_proj.weight, k_proj.bias).view(n, k, -1, head_dim)  # (N, K, Hkv, hd)
    value = F.linear(retrieved, v_proj.weight, v_proj.bias).view(n, k, -1, head_dim)
    groups = query.shape[1] // key.shape[2]
    key, value = key.repeat_interleave(groups, dim=2), value.repeat_interleave(groups, dim=2)
    weights = torch.softmax(torch.einsum("nhd,nkhd->nhk", query, key) * head_dim ** -0.5, dim=-1)
    context = torch.einsum("nhk,nkhd->nhd", weights, value).reshape(n, -1)
    h_know = F.linear(context, out_proj.weight, out_proj.bias)
    h_bar = torch.einsum("nk,nkd->nd", weights.mean(1), retrieved)
    return h_know, h_bar


def dynamic_alpha(semantic, h_bar: torch.Tensor, h_pre: torch.Tensor) -> torch.Tensor:
    """Eq. 7's Sim(EncSem(h_know), h_input[−1]) per position, clamped to [0, 1]: (N, 1)."""
    return F.cosine_similarity(semantic(h_bar.float()), h_pre.float(), dim=-1).clamp(0.0, 1.0)[:, None]


def mix(h_input: torch.Tensor, h_know: torch.Tensor, alpha, reading: str) -> torch.Tensor:
    if reading == "knowledge":
        return (1 - alpha) * h_input + alpha * h_know
    if reading == "literal":
        return alpha * h_input + (1 - alpha) * h_know
    raise ValueError(f"unknown α reading {reading!r}; known: {', '.join(READINGS)}")


def _rewrite(bb, layer: int, store_of, cfg: LatentConfig, semantic: dict | None, alphas: list | None):
    """The attention-output rewrite of `layer`: mix in the knowledge retrieved from `store_of()` (None: as is)."""
    def rewrite(pre, output):
        store = store_of()
        if store is None:
            return output
        h_input = output.reshape(-1, output.shape[-1])
        h_pre = pre.reshape(-1, pre.shape[-1])
        h_know, h_bar = latent_knowledge(bb, layer, h_pre, store, cfg.top_k)
        alpha = cfg.alpha if cfg.alpha is not None else dynamic_alpha(semantic[layer], h_bar, h_pre)
        if alphas is not None:
            alphas.append(alpha.detach() if torch.is_tensor(alpha) else torch.full((len(h_pre), 1), float(alpha)))
        return mix(h_input, h_know.to(output.dtype), alpha, cfg.reading).reshape(output.shape).to(output.dtype)
    return rewrite


def _check(cfg: LatentConfig, semantic: dict | None) -> None:
    if cfg.alpha is None and not semantic:
        raise ValueError("a dynamic α needs the semantic encoders")
    if cfg.reading not in READINGS:
        raise ValueError(f"unknown α reading {cfg.reading!r}; known: {', '.join(READINGS)}")


@contextlib.contextmanager
def latent_shift(bb, stores: dict[int, LatentStore], cfg: LatentConfig, semantic: dict | None = None,
                 alphas: list | None = None):
    """Shift the attention output of each layer in `stores` while inside (hooks; removed on exit).

    `semantic`: layer -> EncSem (needed when cfg.alpha is None). `alphas`, if given, collects each call's α
    (N, 1) tensors, for inspection (Figure 4b, the explorer).
    """
    _check(cfg, semantic)
    rewrites = {layer: _rewrite(bb, layer, lambda store=store: store, cfg, semantic, alphas)
                for layer, store in stores.items()}
    with read_and_rewrite(bb, "attn_in", "attn_out", rewrites):
        yield


def _same_encoders(a: dict | None, b: dict | None) -> bool:
    return (a or {}).keys() == (b or {}).keys() and all(a[k] is b[k] for k in (a or {}))


class LatentMemoryEdit(SlotEdit):
    """An edit's latent memory, attached to the backbone (slot "latent_memory") until `restore()`.

        >>> edit = LatentMemoryEdit(bb, stores, cfg, semantic)      # doctest: +SKIP
        >>> installed_stores(bb) is stores                      # doctest: +SKIP
        True

    Sequential edits share one shift: the first edit installs the hooks, and each later one installs stores that
    already hold the previous edits' entries (`installed_stores`), so K edits shift each attention output once,
    against one memory of the train errors plus the K edits, not K times. `suspended()` switches the shift off
    while an edit's own states are read. Edits are restored in reverse order.
    """

    def __init__(self, bb, stores: dict[int, LatentStore], cfg: LatentConfig, semantic: dict | None):
        _check(cfg, semantic)
        previous = attached(bb, "latent_memory")
        if previous is not None and (previous.cfg != cfg or set(previous.stores) != set(stores)
                                     or not _same_encoders(previous.semantic, semantic)):
            raise RuntimeError("latent memories with other layers, α settings or encoders cannot stack")
        self.stores, self.cfg, self.semantic, self.suspended_count = stores, cfg, semantic, 0

        def store_of(layer):
            current = attached(bb, "latent_memory")
            return None if current is None or current.suspended_count else current.stores[layer]
        rewrites = {layer: _rewrite(bb, layer, lambda layer=layer: store_of(layer), cfg, semantic, None)
                    for layer in stores}
        super().__init__(bb, "latent_memory", self, "latent memory",
                         first_hooks=lambda: read_and_rewrite(bb, "attn_in", "attn_out", rewrites))


def installed_stores(bb) -> dict[int, LatentStore] | None:
    """The stores of the latent memory installed on `bb` (None when there is none)."""
    current = attached(bb, "latent_memory")
    return None if current is None else current.stores


@contextlib.contextmanager
def suspended(bb):
    """The installed latent shift (if any) is off while inside."""
    current = attached(bb, "latent_memory")
    if current is None:
        yield
        return
    current.suspended_count += 1
    try:
        yield
    finally:
        current.suspended_count -= 1
