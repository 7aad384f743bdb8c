"""Extra FFN neurons ("patches") added by hooks: a = act(q·K + b), FFN(q) += a·V, at chosen decoder layers.

    >>> patch = FFNPatch(keys, bias, values)                     # (n, d), (n,), (n, d)
    >>> with patched(bb, {-1: patch}) as queries:                # doctest: +SKIP
    ...     loss = bb.loss([query])       # queries[-1]: the FFN inputs q of the last forward, (B, L, d)

q is the FFN's input (what OPT's fc1 and LLaMA's up/gate projections read); the patch's output is added to the
FFN's output (fc2 / down_proj). The weights are never touched: removing the hooks restores the backbone exactly.
T-Patcher's neurons use ReLU (its reliability and locality constraints are stated for ReLU/GeLU keys), on both
decoder families; on LLaMA the patch output joins the SwiGLU FFN's down projection.
"""
from __future__ import annotations

import contextlib
import dataclasses

import torch

from .base import Edit
from .hooks import forward_hooks


@dataclasses.dataclass
class FFNPatch:
    keys: torch.Tensor  # (n, d_model)
    bias: torch.Tensor  # (n,)
    values: torch.Tensor  # (n, d_model)

    def preactivation(self, q: torch.Tensor) -> torch.Tensor:
        return q @ self.keys.T + self.bias

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.preactivation(q)) @ self.values


@contextlib.contextmanager
def patched(bb, patches: dict[int, list[FFNPatch]]):
    """Apply `patches` (decoder layer -> patches) while inside; yields layer -> the FFN inputs last seen."""
    seen: dict[int, torch.Tensor] = {}
    hooks = {}
    for layer, layer_patches in patches.items():
        def read(module, inputs, output, layer=layer):
            seen[layer] = inputs[0]

        def add(module, inputs, output, layer=layer, layer_patches=layer_patches):
            q = seen[layer]
            return output + sum(p(q) for p in layer_patches).to(output.dtype)
        hooks[bb.site("ffn_in", layer)] = read
        if layer_patches:  # no patches: only read the FFN inputs
            hooks[bb.site("ffn_out", layer)] = add
    with forward_hooks(bb.model, hooks):
        yield seen


class PatchEdit(Edit):
    """A persistent patch (the edit stays until `restore()`); patches at the same layers stack."""

    def __init__(self, bb, patches: dict[int, list[FFNPatch]]):
        self._context = patched(bb, patches)
        self._context.__enter__()
        self.restored = False

    def restore(self) -> None:
        self._context.__exit__(None, None, None)
        self.restored = True
