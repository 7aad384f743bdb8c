"""Forward hooks as context managers that always come off, and the gradient factors of a loss at Linear layers.

    >>> with forward_hooks(bb.model, {path: add_to_output(lambda x: x @ delta.T)}):     # doctest: +SKIP
    ...     loss = bb.loss([query])          # the layer at `path` computes (W + delta) x
    >>> factors, loss = gradient_factors(bb, [query], [path])                         # doctest: +SKIP
    >>> u, d = factors[path]                  # the weight gradient is d.T @ u

Hooks never touch weights, so training a hypernetwork through them (MEND, KE) leaves the backbone as it was.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch

from .float32 import FLOAT16_LOSS_SCALE


@contextlib.contextmanager
def forward_hooks(model: torch.nn.Module, hooks: dict[str, Callable]):
    """Register `hook(module, inputs, output)` on each module path; removed on exit, whatever happens."""
    handles = []
    try:
        for path, hook in hooks.items():
            handles.append(model.get_submodule(path).register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def read_and_rewrite(bb, read_site: str, write_site: str, rewrites: dict[int, Callable | None]):
    """Per decoder layer: remember the input of `read_site`, and, where the layer's rewrite is not None, replace
    the output of `write_site` by `rewrite(that input, output)`. Yields layer -> the input last read.

        >>> with read_and_rewrite(bb, "ffn_in", "ffn_out", {3: lambda q, out: out + patch(q)}) as seen:
        ...     bb.logits(batch)                                                     # doctest: +SKIP
    """
    seen: dict[int, torch.Tensor] = {}
    hooks = {}
    for layer, rewrite in rewrites.items():
        def read(module, inputs, output, layer=layer):
            seen[layer] = inputs[0]

        def write(module, inputs, output, layer=layer, rewrite=rewrite):
            return rewrite(seen[layer], output)
        hooks[bb.site(read_site, layer)] = read
        if rewrite is not None:
            hooks[bb.site(write_site, layer)] = write
    with forward_hooks(bb.model, hooks):
        yield seen


def add_to_output(delta: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    """A hook that adds `delta(layer input)` to the layer's output (`delta` reads the input in float32, as the
    hypernetworks that form it are float32, and its result is cast to the layer's dtype)."""
    def hook(module, inputs, output):
        return output + delta(inputs[0].float()).to(output.dtype)
    return hook


def gradient_factors(bb, queries, paths: list[str]) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Per Linear `path`: (u (N, d_in), delta (N, d_out)), its inputs and output gradients of `bb.loss(queries)`
    (the weight gradient is delta.T @ u restricted to those N rows); and the loss.

    Language-model layers keep the N positions that predict target tokens (where the loss is; MEND's and KE's
    edits are built from them); vision-side layers (ViT, Q-Former) keep every position with a non-zero gradient.
    The factors are float32 whatever the backbone's dtype; a float16 backbone's gradients are taken under a loss
    scale (`float32.FLOAT16_LOSS_SCALE`, divided out again) so that small ones do not flush to zero.
    """
    captured = {}

    def capture(path):
        def hook(module, inputs, output):
            probe = torch.zeros_like(output, requires_grad=True)
            captured[path] = (inputs[0].detach(), probe)
            return output + probe
        return hook

    batch = bb.encode(queries)
    targets = torch.zeros_like(batch.input_ids, dtype=torch.bool)
    for row, sl in enumerate(batch.target_slices):
        targets[row, sl.start - 1:sl.stop - 1] = True
    with torch.enable_grad(), forward_hooks(bb.model, {p: capture(p) for p in paths}):
        loss = bb.loss(queries)
    scale = FLOAT16_LOSS_SCALE if any(captured[p][1].dtype == torch.float16 for p in paths) else 1.0
    grads = torch.autograd.grad(loss * scale if scale != 1.0 else loss, [captured[p][1] for p in paths])
    factors = {}
    for path, grad in zip(paths, grads):
        u = captured[path][0].reshape(-1, captured[path][0].shape[-1]).float()
        d = grad.reshape(-1, grad.shape[-1]).float()
        if scale != 1.0:
            d = d / scale
        if bb.is_language_side(path) and len(d) == targets.numel():
            keep = targets.reshape(-1)
        else:
            keep = d.abs().sum(-1) > 0
        factors[path] = (u[keep], d[keep])
    return factors, loss.detach()
