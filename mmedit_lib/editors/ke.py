"""KE, Knowledge Editor (De Cao et al., EMNLP 2021): a bidirectional-LSTM hypernetwork reads the edit and
predicts, from the fine-tuning gradient, the update of each edited weight; trained with a locality constraint.

    >>> prepared = prepare_ke(bb, train, KEHparams())               # trains the hypernetwork (cached)
    ... # doctest: +SKIP
    >>> edit = apply_ke(bb, request, KEHparams(), prepared)          # doctest: +SKIP

The LSTM reads the edit's input embeddings (image features, prompt and target, as the backbone reads them);
its final states h condition, per edited weight W (d_out x d_in), the vectors α, β (d_out), γ, δ (d_in) and a
scalar η: ΔW = σ(η)·(α̂ ⊙ ∇_W L + β̂), α̂ = softmax(α)γᵀ, β̂ = softmax(β)δᵀ (KE's Eq. 4). Training is KE's
constrained optimisation: minimise L_edit subject to the KL on unrelated inputs staying below `margin`, through
a Lagrangian whose multiplier λ rises by gradient ascent while the constraint is violated. UniKE App. D.2 does not
say which weights its KE edits; we edit the same FFNs as MEND (the last three decoder layers).
"""
from __future__ import annotations

import dataclasses

import torch

from ..backbones.backbone import Backbone
from .base import EditRequest, WeightEdit
from .hooks import gradient_factors
from .hypernet import add_to_weights, edit_paths, linear_shape, train_editor
from .spec import FP16, FP32, EditorSpec, Memory, prepare_field


@dataclasses.dataclass
class KEHparams:
    sites: tuple[str, ...] = prepare_field(("ffn_in", "ffn_out"))
    layers: tuple[int, ...] = prepare_field((-3, -2, -1))
    lstm_hidden: int = prepare_field(128)  # KE's bidirectional LSTM
    head_hidden: int = prepare_field(1024)  # KE's FFNNs from the condition to α, β, γ, δ, η
    margin: float = prepare_field(1e-3)  # KL constraint m
    lr: float = prepare_field(3e-4)  # Adam on the hypernetwork (KE)
    lambda_lr: float = prepare_field(1e-2)  # ascent step of the Lagrange multiplier
    init_step: float = prepare_field(1.0)  # initial -γ so that ΔW starts near -init_step·σ(0)·∇W
    steps: int = prepare_field(200000)
    seed: int = prepare_field(0)


class KENet(torch.nn.Module):
    def __init__(self, d_embed: int, shapes: dict[str, tuple[int, int]], lstm_hidden: int, head_hidden: int,
                 init_step: float):
        super().__init__()
        self.paths, self.shapes = list(shapes), shapes
        self.lstm = torch.nn.LSTM(d_embed, lstm_hidden, batch_first=True, bidirectional=True)
        self.heads = torch.nn.ModuleList()
        for d_out, d_in in shapes.values():
            out = torch.nn.Linear(head_hidden, 2 * d_out + 2 * d_in + 1)
            torch.nn.init.zeros_(out.weight)
            with torch.no_grad():
                out.bias.zero_()
                out.bias[2 * d_out:2 * d_out + d_in] = -init_step * d_out  # γ: α̂ ≈ -init_step everywhere
            self.heads.append(torch.nn.Sequential(torch.nn.Linear(2 * lstm_hidden, head_hidden), torch.nn.Tanh(),
                                                  out))

    def condition(self, embeddings: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(embeddings)
        return torch.cat([h[0, 0], h[1, 0]])  # forward and backward final states

    def delta_weight(self, path: str, h: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        d_out, d_in = self.shapes[path]
        out = self.heads[self.paths.index(path)](h)
        alpha, beta = out[:d_out], out[d_out:2 * d_out]
        gamma, delta, eta = out[2 * d_out:2 * d_out + d_in], out[2 * d_out + d_in:-1], out[-1]
        mask = torch.softmax(alpha, 0)[:, None] * gamma[None]
        shift = torch.softmax(beta, 0)[:, None] * delta[None]
        return torch.sigmoid(eta) * (mask * grad + shift)


def edit_embeddings(bb: Backbone, query) -> torch.Tensor:
    batch = bb.encode([query])
    with torch.no_grad():
        return bb.input_embeddings(batch).detach().float()


def prepare_ke(bb: Backbone, train, hp: KEHparams) -> dict:
    paths = edit_paths(bb, hp.sites, hp.layers)
    net = KENet(bb.model.config.text_config.hidden_size, {p: linear_shape(bb, p) for p in paths},
                hp.lstm_hidden, hp.head_hidden, hp.init_step)
    log_lambda = torch.zeros(())  # λ = exp(log λ), raised while KL > margin

    def deltas(factors, case):
        h = net.condition(edit_embeddings(bb, case.request.query))
        functions = {}
        for p in paths:
            u, d = factors[p]
            dw = net.delta_weight(p, h, d.T @ u)
            functions[p] = lambda x, dw=dw: x @ dw.T
        return functions

    def objective(l_edit, l_loc):
        return l_edit + log_lambda.exp() * (l_loc - hp.margin)

    def after_step(l_edit, l_loc):
        log_lambda.add_(hp.lambda_lr * float(torch.sign(l_loc - hp.margin)))

    history = train_editor(bb, train, paths, net, deltas, objective, hp.steps, hp.lr, hp.seed,
                           after_step=after_step)
    return {"net": net.requires_grad_(False), "paths": paths, "history": history,
            "lambda": float(log_lambda.exp())}


def apply_ke(bb: Backbone, request: EditRequest, hp: KEHparams, prepared: dict) -> WeightEdit:
    paths, net = prepared["paths"], prepared["net"]
    factors, _ = gradient_factors(bb, [request.query], paths)
    with torch.no_grad():
        h = net.condition(edit_embeddings(bb, request.query))
        return add_to_weights(bb, {p: net.delta_weight(p, h, factors[p][1].T @ factors[p][0]) for p in paths})


def memory(s, hp: KEHparams) -> Memory:
    """The update formed while editing and kept to restore (the last three FFNs' Linears); the hypernetwork."""
    edited = sum(o * i + o for o, i in s.edited_ffns.values())
    with torch.device("meta"):
        net = sum(p.numel() for p in KENet(s.d, s.edited_ffns, hp.lstm_hidden, hp.head_hidden, 1.0).parameters())
    return Memory(edited * FP16, edited * FP16, net * FP32)


SPEC = EditorSpec("ke", KEHparams, apply_ke, prepare_ke, label="KE", memory=memory,
                  quick={"steps": 5}, smoke={"steps": 20},
                  summary="Knowledge Editor: a BiLSTM hypernetwork predicts the update from the gradient")
