"""T-Patcher (Huang et al., ICLR 2023): one patch neuron per target token in the last FFN layer, trained per edit.

    >>> prepared = prepare_tpatcher(bb, train, TPatcherHparams())   # the memory M of irrelevant FFN inputs
    ... # doctest: +SKIP
    >>> edit = apply_tpatcher(bb, request, TPatcherHparams(), prepared)                  # doctest: +SKIP

Patch j (key k_j, bias b_j, value v_j) answers target token j: q_e,j is the FFN input at the position that
predicts it. The loss is the survey's Eq. 19, l_p = l_e + a·l_a + m·(l_m1 + l_m2):
- l_e: the edit's negative log-likelihood under the patched model;
- l_a = exp(-(q_e·k + b)) (Eq. 13), keeping the patch active on its own input;
- l_m1 = S(M·k + b - β; k) (Eq. 16), pushing its activation on the memory of irrelevant queries below β;
- l_m2 = S((M - q_e)·k + b - γ; k) (Eq. 18), a margin between the edit's activation and the memory's;
with S(v; k) = mean of the top-k of exp(v) (Eq. 17). The memory M holds FFN inputs (every position) of
train-split inputs: edit questions, text and multimodal locality questions. Adam; training stops once every
target token is the argmax and no memory query activates the patch.
"""
from __future__ import annotations

import dataclasses

import torch

from ..backbones.backbone import Backbone
from .base import EditRequest, frozen
from .float32 import Float32Adam
from .ffn_patch import FFNPatch, PatchEdit, patched
from .spec import FP16, FP32, EditorSpec, Memory, adam_bytes, prepare_field


@dataclasses.dataclass
class TPatcherHparams:
    layers: tuple[int, ...] = prepare_field((-1,))  # the last FFN layer (T-Patcher)
    steps: int = 60  # most optimisation steps per edit
    lr: float = 1e-2
    act_weight: float = 1.0  # a
    memory_weight: float = 1.0  # m
    beta: float = -3.0  # memory activation threshold β
    gamma: float = -3.0  # margin γ
    topk: int = 1000  # k of S(.; k)
    memory_size: int = prepare_field(4000)  # queries kept in M
    memory_cases: int = prepare_field(300)  # train cases whose inputs fill M
    seed: int = prepare_field(0)


def prepare_tpatcher(bb: Backbone, train, hp: TPatcherHparams) -> dict:
    """layer -> M (memory_size, d): FFN inputs of train-split inputs, sampled without replacement by `seed`."""
    generator = torch.Generator().manual_seed(hp.seed)
    picks = torch.randperm(len(train), generator=generator)[:hp.memory_cases].tolist()
    seen_all: dict[int, list[torch.Tensor]] = {layer: [] for layer in hp.layers}
    with torch.no_grad():
        for start in range(0, len(picks), 16):
            cases = [train[i] for i in picks[start:start + 16]]
            queries = [c.probes[p] for c in cases for p in ("rel", "t_loc", "m_loc")]
            batch = bb.encode(queries)
            with patched(bb, {layer: [] for layer in hp.layers}) as seen:
                bb.logits(batch)
            mask = batch.attention_mask.bool()
            for layer in hp.layers:
                seen_all[layer].append(seen[layer].reshape(*mask.shape, -1)[mask].detach())  # OPT flattens (B, L)
    memory = {}
    for layer, chunks in seen_all.items():
        states = torch.cat(chunks)
        keep = torch.randperm(len(states), generator=generator)[:hp.memory_size]
        memory[layer] = states[keep].float().clone()  # float32, as the patches it constrains
    return {"memory": memory}


def _soft_top(values: torch.Tensor, k: int) -> torch.Tensor:
    """S(v; k) per patch: the mean of the k largest exp(v) over the memory; values (n_patches, d_m)."""
    return torch.exp(values.clamp(max=30.0)).topk(min(k, values.shape[-1]), dim=-1).values.mean(-1)


def patch_constraints(patch: FFNPatch, q_own: torch.Tensor, memory: torch.Tensor, hp):
    """(a·l_a, m·(l_m1 + l_m2)) for `patch`, whose neuron j answers the FFN input q_own[j] (n, d); and whether
    no memory query activates any neuron. `hp` has act_weight, memory_weight, beta, gamma, topk."""
    act_loss = torch.exp(-patch.preactivation(q_own).diagonal()).mean()
    memory_pre = patch.preactivation(memory).T  # (n, d_m): M·k_j + b_j
    # (M - q_e,j)·k_j + b_j = M·k_j + b_j - q_e,j·k_j, without the (n, d_m, d) difference tensor and its backward
    own = (q_own * patch.keys).sum(-1)  # (n,)
    m1 = _soft_top(memory_pre - hp.beta, hp.topk)
    m2 = _soft_top(memory_pre - own[:, None] - hp.gamma, hp.topk)
    return hp.act_weight * act_loss, hp.memory_weight * (m1 + m2).sum(), bool((memory_pre.detach() <= 0).all())


def fit_patches(bb: Backbone, batch, positions: list[int], patches: dict[int, FFNPatch], params, memory: dict,
                hp, owner: torch.Tensor | None = None) -> None:
    """Adam on `params` (the patches' tensors) for at most hp.steps: edit loss + each patch's constraints, stopping
    once every target token is the argmax and no memory query activates a patch. Neuron j answers the FFN input
    at positions[owner[j]] (owner None: at positions[j])."""
    d = bb.model.config.text_config.hidden_size
    optimizer = Float32Adam(params, lr=hp.lr)
    # only the patched layers and those above them change between steps: run from the lowest (the same logits)
    run = bb.logits_above(batch, min(layer % bb.n_layers for layer in patches))
    with frozen(bb.model):
        for _ in range(hp.steps):
            with patched(bb, {layer: [p] for layer, p in patches.items()}) as seen:
                logits = run()[0, positions]
            loss, quiet = torch.nn.functional.cross_entropy(logits.float(), batch.target_ids[0]), True
            for layer, patch in patches.items():
                q_e = seen[layer].reshape(1, -1, d)[0, positions].detach()
                act, mem, layer_quiet = patch_constraints(patch, q_e if owner is None else q_e[owner], memory[layer],
                                                          hp)
                loss, quiet = loss + act + mem, quiet and layer_quiet
            if quiet and bool((logits.argmax(-1) == batch.target_ids[0]).all()):
                break
            optimizer.step_on(loss)


def apply_tpatcher(bb: Backbone, request: EditRequest, hp: TPatcherHparams, prepared: dict) -> PatchEdit:
    query = request.query
    batch = bb.encode([query])
    positions = list(range(batch.target_slices[0].start - 1, batch.target_slices[0].stop - 1))
    n, d = len(positions), bb.model.config.text_config.hidden_size
    with torch.no_grad(), patched(bb, {layer: [] for layer in hp.layers}) as seen:
        bb.logits(batch)
    patches, params = {}, []
    for layer in hp.layers:
        q_e = seen[layer].reshape(1, -1, d)[0, positions].detach().float()
        keys = (q_e / q_e.norm(dim=-1, keepdim=True).pow(2)).clone().requires_grad_(True)  # q_e·k = 1 at start
        bias = torch.zeros(n, requires_grad=True)
        values = torch.zeros(n, d, requires_grad=True)
        patches[layer] = FFNPatch(keys, bias, values)
        params += [keys, bias, values]
    fit_patches(bb, batch, positions, patches, params, prepared["memory"], hp)
    return PatchEdit(bb, {layer: [p.detached()] for layer, p in patches.items()})


def memory(s, hp: TPatcherHparams) -> Memory:
    """One trained neuron (key, bias, value) per target token; the memory of FFN inputs."""
    neurons = (2 * s.d + 1) * s.answer_tokens
    return Memory(adam_bytes(neurons), neurons * FP16, hp.memory_size * s.d * FP32)


SPEC = EditorSpec("t-patcher", TPatcherHparams, apply_tpatcher, prepare_tpatcher, label="T-Patcher",
                  edit_steps="steps", memory=memory, quick_cases=("memory_cases",),
                  smoke={"memory_cases": 10, "steps": 10},
                  summary="T-Patcher: one trained patch neuron per target token in the last FFN")
