"""Extra FFN neurons ("patches") added by hooks: a = act(q·K + b), FFN(q) += a·V, at chosen decoder layers.

    >>> patch = FFNPatch(keys, bias, values)                     # (n, d), (n,), (n, d)
    >>> with patched(bb, {-1: patch}) as queries:                # doctest: +SKIP
    ...     loss = bb.loss([query])       # queries[-1]: the FFN inputs q of the last forward, (B, L, d)

q is the FFN's input (what OPT's fc1 and LLaMA's up/gate projections read); the patch's output is added to the
FFN's output (fc2 / down_proj). The weights are never touched: removing the hooks restores the backbone exactly.
T-Patcher's neurons use ReLU (its reliability and locality constraints are stated for ReLU/GeLU keys), on both
decoder families; on LLaMA the patch output joins the SwiGLU FFN's down projection. UniKE's extra key-value pairs
follow the FFN they join: with `up_keys` a patch is SwiGLU like LLaMA's FFN (gate keys `keys`, up keys `up_keys`,
values into down_proj's output), and `shift` (UniKE's β·ζ', Eq. 6) is added to every value. A patch's tensors are
float32 whatever the backbone's dtype: it reads the FFN input in float32 and its output is cast to the FFN's dtype.
"""
from __future__ import annotations

import contextlib
import dataclasses

import torch

from .base import Edit
from .hooks import read_and_rewrite


@dataclasses.dataclass
class FFNPatch:
    keys: torch.Tensor  # (n, d_model)
    bias: torch.Tensor  # (n,)
    values: torch.Tensor  # (n, d_model)
    up_keys: torch.Tensor | None = None  # (n, d_model): a SwiGLU patch (LLaMA), silu(q·K + b) * (q·U)
    shift: torch.Tensor | None = None  # (d_model,): added to every value (UniKE's β·ζ')

    def preactivation(self, q: torch.Tensor) -> torch.Tensor:
        return q.to(self.keys.dtype) @ self.keys.T + self.bias

    def activation(self, q: torch.Tensor) -> torch.Tensor:
        q = q.to(self.keys.dtype)  # a patch is float32 (trained so) whatever the backbone's dtype
        if self.up_keys is None:
            return torch.relu(self.preactivation(q))
        return torch.nn.functional.silu(self.preactivation(q)) * (q @ self.up_keys.T)

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        values = self.values if self.shift is None else self.values + self.shift
        return self.activation(q) @ values

    def detached(self) -> "FFNPatch":
        return FFNPatch(*(None if t is None else t.detach() for t in
                          (self.keys, self.bias, self.values, self.up_keys, self.shift)))


@contextlib.contextmanager
def patched(bb, patches: dict[int, list[FFNPatch]]):
    """Apply `patches` (decoder layer -> patches) while inside; yields layer -> the FFN inputs last seen."""
    def add(layer_patches):
        return lambda q, output: output + sum(p(q) for p in layer_patches).to(output.dtype)
    # no patches: only read the FFN inputs
    rewrites = {layer: add(layer_patches) if layer_patches else None for layer, layer_patches in patches.items()}
    with read_and_rewrite(bb, "ffn_in", "ffn_out", rewrites) as seen:
        yield seen


class ContextEdit(Edit):
    """An edit held by an entered context manager (hooks): `restore()` exits it, removing the hooks."""

    def __init__(self, context):
        self._context = context
        self._context.__enter__()
        self.restored = False

    def restore(self) -> None:
        self._context.__exit__(None, None, None)
        self.restored = True


class PatchEdit(ContextEdit):
    """A persistent patch (the edit stays until `restore()`); patches at the same layers stack."""

    def __init__(self, bb, patches: dict[int, list[FFNPatch]]):
        super().__init__(patched(bb, patches))
