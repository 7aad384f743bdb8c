"""UniKE's knowledge disentangling (§3.3): a truthfulness encoder and a semantic encoder per edited layer.

    >>> encoders = train_encoders(memory[3], DisentangleConfig())                    # doctest: +SKIP
    >>> zeta = truthful_direction(encoders, memory[3])   # ζ = mean EncTru(h_pos) − mean EncTru(h_neg)  # doctest: +SKIP

Both encoders are small MLPs (d → 2d → d), pre-trained with Adam (lr 1e-4, the paper's) on the memory's states:
- Eq. 4 (truthfulness space): for every h_pos,i (h_neg,i) the others of the same truthfulness are positives,
  those of the opposite truthfulness negatives (supervised contrastive; the anchor itself is left out);
- Eq. 5 (semantic space): h_sem,i is pulled towards EncSem(h_pos,i) and EncSem(h_neg,i) and away from the
  semantic representations of the other examples; EncSem's outputs live in h_sem's space, which is why UniKE can
  compare EncSem(h_know) with the input's own hidden state (Eq. 7).
s is the cosine similarity over a temperature (0.1; the paper does not give one). Losses are averaged over a
minibatch, the paper's sums over all n examples taken batch by batch.

W_ζ maps ζ from the truthfulness space back to the representation space (ζ' = W_ζ ζ). The paper calls it
learnable without saying on what; we fit it as the least-squares linear decoder of EncTru on the memory
(EncTru(h) W_ζ ≈ h), so ζ' is the truthful direction expressed as a hidden-state offset.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from .knowledge_memory import LayerMemory


@dataclasses.dataclass
class DisentangleConfig:
    lr: float = 1e-4  # Adam (UniKE D.3)
    epochs: int = 30
    batch_size: int = 256
    temperature: float = 0.1
    seed: int = 0


class Encoder(torch.nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(d, 2 * d), torch.nn.GELU(), torch.nn.Linear(2 * d, d))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def _similarity(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature


def truthfulness_loss(tru_pos: torch.Tensor, tru_neg: torch.Tensor, temperature: float) -> torch.Tensor:
    """Eq. 4: each representation against all others; the same truthfulness in the numerator."""
    reps = torch.cat([tru_pos, tru_neg])
    labels = torch.cat([torch.ones(len(tru_pos)), torch.zeros(len(tru_neg))]).bool()
    sim = _similarity(reps, reps, temperature)
    self_mask = torch.eye(len(reps), dtype=torch.bool)
    sim = sim.masked_fill(self_mask, float("-inf"))
    same = (labels[:, None] == labels[None, :]) & ~self_mask
    log_all = torch.logsumexp(sim, dim=1)
    log_same = torch.logsumexp(sim.masked_fill(~same, float("-inf")), dim=1)
    return (log_all - log_same).mean()


def semantic_loss(h_sem: torch.Tensor, sem_pos: torch.Tensor, sem_neg: torch.Tensor, temperature: float) -> torch.Tensor:
    """Eq. 5: h_sem,i against every example's EncSem(h_pos) and EncSem(h_neg); its own two in the numerator."""
    sim_pos, sim_neg = _similarity(h_sem, sem_pos, temperature), _similarity(h_sem, sem_neg, temperature)
    log_all = torch.logsumexp(torch.cat([sim_pos, sim_neg], dim=1), dim=1)
    log_own = torch.logsumexp(torch.stack([sim_pos.diagonal(), sim_neg.diagonal()], dim=1), dim=1)
    return (log_all - log_own).mean()


@dataclasses.dataclass
class LayerEncoders:
    truthful: Encoder
    semantic: Encoder
    w_zeta: torch.Tensor  # (d, d): ζ' = ζ @ w_zeta
    losses: list[tuple[float, float]]  # per epoch: (Eq. 4, Eq. 5) means


def train_encoders(memory: LayerMemory, cfg: DisentangleConfig) -> LayerEncoders:
    torch.manual_seed(cfg.seed)
    d = memory.h_pos.shape[-1]
    truthful, semantic = Encoder(d), Encoder(d)
    optimizer = torch.optim.Adam([*truthful.parameters(), *semantic.parameters()], lr=cfg.lr)
    generator = torch.Generator().manual_seed(cfg.seed)
    n, history = len(memory.h_pos), []
    with torch.enable_grad():
        for _ in range(cfg.epochs):
            order, totals = torch.randperm(n, generator=generator), [0.0, 0.0]
            for start in range(0, n, cfg.batch_size):
                idx = order[start:start + cfg.batch_size]
                if len(idx) < 2:
                    continue
                pos, neg, sem = memory.h_pos[idx], memory.h_neg[idx], memory.h_sem[idx]
                l_tru = truthfulness_loss(truthful(pos), truthful(neg), cfg.temperature)
                l_sem = semantic_loss(sem, semantic(pos), semantic(neg), cfg.temperature)
                optimizer.zero_grad()
                (l_tru + l_sem).backward()
                optimizer.step()
                totals[0] += float(l_tru.detach()) * len(idx)
                totals[1] += float(l_sem.detach()) * len(idx)
            history.append((totals[0] / n, totals[1] / n))
    truthful.requires_grad_(False)
    semantic.requires_grad_(False)
    with torch.no_grad():
        states = torch.cat([memory.h_pos, memory.h_neg])
        # (d, d), solved in float64: float32 lstsq on CPU gives other low bits from call to call (13 of 20 calls on
        # one 600 x 128 problem differed), float64 cast back does not, so a prepared UniKE is the same every time
        w_zeta = torch.linalg.lstsq(truthful(states).double(), states.double()).solution.float()
    return LayerEncoders(truthful.eval(), semantic.eval(), w_zeta, history)


def zeta_direction(encoders: LayerEncoders, memory: LayerMemory, kind: str, seed: int = 0) -> torch.Tensor | None:
    """ζ' (d,) in the representation space for a ζ treatment (Figure 4c): truthful (UniKE), semantic (the same
    difference of means in the semantic space), random (a random direction as long as the truthful ζ'), none."""
    if kind == "none":
        return None
    with torch.no_grad():
        if kind == "semantic":  # EncSem already maps into the representation (h_sem) space: no W_ζ
            return encoders.semantic(memory.h_pos).mean(0) - encoders.semantic(memory.h_neg).mean(0)
        if kind not in ("truthful", "random"):
            raise ValueError(f"unknown ζ treatment {kind!r}; known: truthful, semantic, random, none")
        truthful = (encoders.truthful(memory.h_pos).mean(0) - encoders.truthful(memory.h_neg).mean(0)) @ encoders.w_zeta
        if kind == "truthful":
            return truthful
        noise = torch.randn(truthful.shape, generator=torch.Generator().manual_seed(seed))
        return noise / noise.norm() * truthful.norm()  # a random direction as long as the truthful ζ'
