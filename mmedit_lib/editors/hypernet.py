"""What the hypernetwork editors (MEND, KE) share: the edited Linear layers, their gradient factors, and the
training loop on the train split (edit loss on the edit and its rephrases, KL locality on unrelated inputs).

    >>> paths = edit_paths(bb, ("ffn_in", "ffn_out"), (-3, -2, -1))                    # doctest: +SKIP
    >>> history = train_editor(bb, train, paths, net, deltas, objective, steps=800, lr=1e-3, seed=0)
    ... # doctest: +SKIP

`deltas(factors, case)` gives, per path, a function of the layer input returning what the edit adds to its
output ((W + ΔW) x = W x + ΔW x), so training never writes a weight; the real edit writes ΔW (`WeightEdit`).
"""
from __future__ import annotations

import random
from typing import Callable

import torch

from .base import WeightEdit, frozen
from .hooks import add_to_output, forward_hooks, gradient_factors

EDIT_PROBES = ("rel", "t_gen", "m_gen")  # L_edit: the edit and its text and image rephrases (x'_e of MEND)
LOCALITY_PROBES = ("t_loc", "m_loc")  # L_loc: KL on a text-only and a multimodal unrelated input


def edit_paths(bb, sites: tuple[str, ...], layers: tuple[int, ...]) -> list[str]:
    # a site without layers (LLaVA's projector Linears) is the same module at every layer index: listed once
    paths = list(dict.fromkeys(bb.site(site, layer) for layer in layers for site in sites))
    for path in paths:
        if not isinstance(bb.model.get_submodule(path), torch.nn.Linear):
            raise ValueError(f"{path} is not a Linear layer: hypernetwork editors edit Linear weights")
    return paths


def linear_shape(bb, path: str) -> tuple[int, int]:
    """(d_out, d_in) of the Linear at `path`."""
    return tuple(bb.model.get_submodule(path).weight.shape)


def locality_kl(base: list, edited: list) -> torch.Tensor:
    """Mean over positions of KL(p_base || p_edited), over the queries' real positions."""
    total, count = 0.0, 0
    for b, e in zip(base, edited):
        log_b = torch.log_softmax(b.sequence.float(), -1)
        log_e = torch.log_softmax(e.sequence.float(), -1)
        total = total + (log_b.exp() * (log_b - log_e)).sum()
        count += len(log_b)
    return total / count


def add_to_weights(bb, deltas: dict[str, torch.Tensor]) -> WeightEdit:
    """The real edit: W += ΔW for each Linear path, as a `WeightEdit` that restores the saved weights."""
    weights = {p: bb.model.get_submodule(p).weight for p in deltas}
    edit = WeightEdit({f"{p}.weight": w for p, w in weights.items()})
    with torch.no_grad():
        for p, w in weights.items():
            w.add_(deltas[p].to(w.dtype))
    return edit


def train_editor(bb, train, paths: list[str], net: torch.nn.Module, deltas: Callable, objective: Callable,
                 steps: int, lr: float, seed: int, log_every: int = 50, after_step: Callable | None = None) -> list:
    """Adam on `net` for `steps` edits drawn from `train` by `seed`; returns the loss history (every log_every)."""
    rng = random.Random(f"hypernet-{seed}")
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    history, window = [], []
    with frozen(bb.model):
        for step in range(steps):
            case = train[rng.randrange(len(train))]
            factors, _ = gradient_factors(bb, [case.request.query], paths)
            locality = [case.probes[p] for p in LOCALITY_PROBES]
            with torch.no_grad():
                base = bb.query_logits(locality)
            functions = deltas(factors, case)
            with forward_hooks(bb.model, {p: add_to_output(functions[p]) for p in paths}):
                l_edit = bb.loss([case.probes[p] for p in EDIT_PROBES])
                l_loc = locality_kl(base, bb.query_logits(locality))
            loss = objective(l_edit, l_loc)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step(l_edit.detach(), l_loc.detach())
            window.append((l_edit.item(), l_loc.item()))
            if (step + 1) % log_every == 0 or step + 1 == steps:
                history.append({"step": step + 1, "l_edit": sum(w[0] for w in window) / len(window),
                                "l_loc": sum(w[1] for w in window) / len(window)})
                window = []
    return history
