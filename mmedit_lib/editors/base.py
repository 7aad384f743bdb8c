"""What every edit returns: a handle whose `restore()` puts the backbone back bit-exactly.

    >>> with apply_ft(backbone, query, FTHparams()) as edit:       # doctest: +SKIP
    ...     answers = backbone.greedy([query])
    >>> # leaving the block restored the saved weights

`WeightEdit` saves the exact tensors it is about to change (clones, same dtype/device) and copies them back.
"""
from __future__ import annotations

import torch


class WeightEdit:
    def __init__(self, params: dict[str, torch.nn.Parameter]):
        self._params = params
        self._saved = {name: p.detach().clone() for name, p in params.items()}
        self._requires_grad = {name: p.requires_grad for name, p in params.items()}
        self.restored = False

    def restore(self) -> None:
        with torch.no_grad():
            for name, p in self._params.items():
                p.copy_(self._saved[name])
                p.grad = None
                p.requires_grad_(self._requires_grad[name])
        self.restored = True

    def __enter__(self) -> "WeightEdit":
        return self

    def __exit__(self, *exc) -> None:
        if not self.restored:
            self.restore()
