"""Adam in float32 on tensors of any dtype: what an editor trains is trained in float32 whatever the backbone's.

    >>> weight = torch.nn.Parameter(torch.ones(3, dtype=torch.float16))
    >>> optimizer = Float32Adam([weight], lr=0.1)
    >>> optimizer.step_on(((weight.float() - 2) ** 2).sum())
    True
    >>> weight.dtype, weight.tolist()
    (torch.float16, [1.099609375, 1.099609375, 1.099609375])

Why: Adam's state in half precision breaks. Its second moment (grad²) underflows to 0 in float16 and its eps
(1e-8) rounds to 0, so an update divides by zero; one `ft-last` edit of a float16 backbone left 132,480 weights
non-finite (tests/test_mixed_precision.py). So:
- float32 tensors are trained as they are, by `torch.optim.Adam` (the same numbers as before this class existed);
- every other tensor gets a float32 master copy: its gradient is cast up, Adam steps the master, and the result is
  cast back into the tensor (so the backbone keeps its dtype, and `restore()` its bit-exact saved copy);
- float16 gradients are computed under a loss scale (2^10, halved whenever a step's gradients overflow, as dynamic
  loss scaling does), which keeps small gradients from flushing to zero; bfloat16 has float32's range and needs none;
- a step whose gradients are not all finite is skipped, in every dtype, so no NaN ever reaches a weight.
"""
from __future__ import annotations

import torch

FLOAT16_LOSS_SCALE = 2.0 ** 10


class Float32Adam:
    """Adam over `params` (leaf tensors that require grad, any floating dtype) with float32 state and updates."""

    def __init__(self, params, lr: float):
        self.params = list(params)
        self.masters = [p if p.dtype == torch.float32 else p.detach().float().requires_grad_(True)
                        for p in self.params]
        self.optimizer = torch.optim.Adam(self.masters, lr=lr)
        self.scale = FLOAT16_LOSS_SCALE if any(p.dtype == torch.float16 for p in self.params) else 1.0
        self.skipped = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step_on(self, loss: torch.Tensor) -> bool:
        """Backward `loss` and take one Adam step; False (nothing changed) when a gradient was not finite."""
        self.zero_grad()
        (loss * self.scale if self.scale != 1.0 else loss).backward()
        grads = [None if p.grad is None else p.grad.float() for p in self.params]
        if not all(g is None or bool(torch.isfinite(g).all()) for g in grads):
            self.skipped += 1
            if self.scale > 1.0:
                self.scale /= 2
            self.zero_grad()
            return False
        for p, master, grad in zip(self.params, self.masters, grads):
            if self.scale != 1.0 and grad is not None:
                grad = grad / self.scale
            if master is not p or self.scale != 1.0:
                master.grad = grad
        self.optimizer.step()
        with torch.no_grad():
            for p, master in zip(self.params, self.masters):
                if master is not p:
                    p.copy_(master)
                    p.grad = None
        return True
