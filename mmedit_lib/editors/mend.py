"""MEND (Mitchell et al., ICLR 2022): editor networks that map the rank-1 gradient factors (u, δ) of each edited
Linear layer to pseudo-factors (ũ, δ̃); the edit is W ← W − lr·Σ_t δ̃_t ũ_tᵀ.

    >>> prepared = prepare_mend(bb, train, MENDHparams())           # trains the editor networks (cached)
    ... # doctest: +SKIP
    >>> edit = apply_mend(bb, request, MENDHparams(), prepared)      # one backward pass, one weight update
    ... # doctest: +SKIP

As in MEND: u and δ are standardised per feature (statistics from the first `norm_cases` train edits); one
network per weight shape is shared by the layers of that shape, each layer adding its own scale and shift and its
own learned edit step (lr); the network is a residual low-rank MLP that starts as the identity. Training
(Algorithm 1): L = c_edit·L_edit + L_loc, L_edit the NLL of the target on the edit and its text and image
rephrases, L_loc the KL of the unedited vs edited predictions on a text and a multimodal locality input.
`mend` edits the FFN of the last three decoder layers (OPT fc1/fc2, LLaMA up/down); `mend-vision` the FFN of the
last ViT block and the last Q-Former layer (MMEdit's "editing the vision module").
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
class MENDHparams:
    sites: tuple[str, ...] = prepare_field(("ffn_in", "ffn_out"))
    layers: tuple[int, ...] = prepare_field((-3, -2, -1))  # the last three decoder layers (MEND on GPT; MMEdit)
    rank: int = prepare_field(1920)  # hidden width of the editor MLP (MEND)
    c_edit: float = prepare_field(0.1)  # MEND's edit-loss weight
    lr: float = prepare_field(1e-6)  # Adam on the editor networks (MEND)
    edit_lr_init: float = prepare_field(1e-4)  # initial learned edit step per layer (MEND)
    steps: int = prepare_field(100000)  # MEND trains for up to 100K edits, with early stopping
    norm_cases: int = prepare_field(100)
    seed: int = prepare_field(0)


@dataclasses.dataclass
class MENDVisionHparams(MENDHparams):
    sites: tuple[str, ...] = prepare_field(("vision_ffn_in", "vision_ffn_out", "qformer_ffn_in", "qformer_ffn_out"))
    layers: tuple[int, ...] = prepare_field((-1,))


class MENDNet(torch.nn.Module):
    def __init__(self, shapes: dict[str, tuple[int, int]], rank: int, edit_lr_init: float):
        super().__init__()
        self.paths = list(shapes)
        self.shape_of = {p: f"{s[0]}x{s[1]}" for p, s in shapes.items()}
        self.nets = torch.nn.ModuleDict()
        for key, (d_out, d_in) in {self.shape_of[p]: s for p, s in shapes.items()}.items():
            dim = d_in + d_out
            up = torch.nn.Linear(rank, dim)
            torch.nn.init.zeros_(up.weight)
            torch.nn.init.zeros_(up.bias)
            self.nets[key] = torch.nn.Sequential(torch.nn.Linear(dim, rank), torch.nn.ReLU(), up)
        dims = [sum(shapes[p]) for p in self.paths]
        self.scale = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(d)) for d in dims])
        self.shift = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(d)) for d in dims])
        self.edit_lr_init = edit_lr_init
        self.log_edit_lr = torch.nn.Parameter(torch.zeros(len(self.paths)))  # lr = init·exp(·): a relative step
        for i, d in enumerate(dims):
            self.register_buffer(f"mean_{i}", torch.zeros(d))
            self.register_buffer(f"std_{i}", torch.ones(d))

    def set_statistics(self, samples: dict[str, torch.Tensor], d_in: dict[str, int]) -> None:
        """Per-feature mean and std of [u, δ]; a feature (nearly) constant in the sample (a ReLU unit that never
        fired) gets a tenth of its half's mean std, so it cannot blow up when it does fire later."""
        for i, path in enumerate(self.paths):
            z = samples[path]
            std = z.std(0)
            floor = torch.cat([std[:d_in[path]].mean().expand(d_in[path]), std[d_in[path]:].mean().expand(
                len(std) - d_in[path])])
            getattr(self, f"mean_{i}").copy_(z.mean(0))
            getattr(self, f"std_{i}").copy_(torch.maximum(std, 0.1 * floor))

    def pseudo(self, path: str, u: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        i = self.paths.index(path)
        z = (torch.cat([u, d], -1) - getattr(self, f"mean_{i}")) / getattr(self, f"std_{i}")
        out = z + self.nets[self.shape_of[path]](z * self.scale[i] + self.shift[i])
        return out[:, :u.shape[-1]], out[:, u.shape[-1]:]

    def delta_function(self, path: str, u: torch.Tensor, d: torch.Tensor):
        u_t, d_t = self.pseudo(path, u, d)
        lr = self.edit_lr(path)
        return lambda x: -lr * ((x @ u_t.T) @ d_t)

    def delta_weight(self, path: str, u: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        u_t, d_t = self.pseudo(path, u, d)
        return -self.edit_lr(path) * (d_t.T @ u_t)

    def edit_lr(self, path: str) -> torch.Tensor:
        return self.edit_lr_init * self.log_edit_lr[self.paths.index(path)].exp()


def prepare_mend(bb: Backbone, train, hp: MENDHparams) -> dict:
    paths = edit_paths(bb, hp.sites, hp.layers)
    net = MENDNet({p: linear_shape(bb, p) for p in paths}, hp.rank, hp.edit_lr_init)
    generator = torch.Generator().manual_seed(hp.seed)
    samples = {p: [] for p in paths}
    for i in torch.randperm(len(train), generator=generator)[:hp.norm_cases].tolist():
        factors, _ = gradient_factors(bb, [train[i].request.query], paths)
        for p, (u, d) in factors.items():
            samples[p].append(torch.cat([u, d], -1))
    net.set_statistics({p: torch.cat(s) for p, s in samples.items()}, {p: linear_shape(bb, p)[1] for p in paths})

    def deltas(factors, case):
        return {p: net.delta_function(p, *factors[p]) for p in paths}

    history = train_editor(bb, train, paths, net, deltas, lambda l_edit, l_loc: hp.c_edit * l_edit + l_loc,
                           hp.steps, hp.lr, hp.seed)
    return {"net": net.requires_grad_(False), "paths": paths, "history": history}


def apply_mend(bb: Backbone, request: EditRequest, hp: MENDHparams, prepared: dict) -> WeightEdit:
    paths, net = prepared["paths"], prepared["net"]
    factors, _ = gradient_factors(bb, [request.query], paths)
    with torch.no_grad():
        return add_to_weights(bb, {p: net.delta_weight(p, *factors[p]) for p in paths})


def _memory(shapes: str):
    def memory(s, hp: MENDHparams) -> Memory:
        """The update formed while editing and kept to restore (the edited Linears); the editor networks."""
        linears = getattr(s, shapes)
        edited = sum(o * i + o for o, i in linears.values())
        with torch.device("meta"):
            net = sum(p.numel() for p in MENDNet(linears, hp.rank, 1e-4).parameters())
        return Memory(edited * FP16, edited * FP16, net * FP32)
    return memory


QUICK, QUICK_CASES, SMOKE = {"steps": 5}, ("norm_cases",), {"steps": 20, "norm_cases": 5}
SPECS = (
    EditorSpec("mend", MENDHparams, apply_mend, prepare_mend, label="MEND", memory=_memory("edited_ffns"),
               quick=QUICK, quick_cases=QUICK_CASES, smoke=SMOKE,
               summary="MEND: editor networks on the gradient factors of the last three FFNs"),
    EditorSpec("mend-vision", MENDVisionHparams, apply_mend, prepare_mend, label="MEND (vision module)",
               memory=_memory("vision_ffns"), quick=QUICK, quick_cases=QUICK_CASES, smoke=SMOKE,
               summary="MEND on the vision module: the last ViT block's and Q-Former layer's FFN"),
)
