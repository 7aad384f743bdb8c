"""UniKE (Pan et al., NeurIPS 2024): intrinsic key-value editing + latent in-context memory + disentangling.

    >>> prepared = prepare_unike(bb, train, UniKEHparams())   # knowledge memory, encoders, patch memory, demos
    ... # doctest: +SKIP
    >>> edit = apply_unike(bb, request, UniKEHparams(), prepared)                        # doctest: +SKIP
    >>> edit.restore()                                                                    # doctest: +SKIP

One edit, at the last `n_layers` decoder layers (paper: 4):
1. *Accommodation* (`external="latent"`, §3.2): the edit's own (h_sem, h_pos) joins the knowledge memory
   built from the train split's errors, and `latent_ike.LatentMemoryEdit` shifts every attention output towards the
   top-K retrieved positive states (K = 40). The edit must be in the memory: UniKE's "only Latent-IKE" row
   reaches 94.6 reliability (Table 4), which no memory of other facts could give.
2. *Assimilation* (`intrinsic`, Eq. 3): n_e = 10 extra key-value pairs per layer, trained on the edit in the
   T-Patcher manner (edit loss, activation loss, memory losses) with the latent shift already in place, so the
   new keys see the in-context-shifted states (the synergy of §3.2). On LLaMA they are SwiGLU pairs (gate/up
   keys, down values), on OPT ReLU like OPT's own FFN.
3. *Collaboration* (§3.3): the extra values get β·ζ' (Eq. 6; `zeta` picks the treatment of Figure 4c) and α is
   dynamic (Eq. 7; `alpha_mode="fixed"` uses `alpha`, Figure 4b). `alpha_reading` picks which term α weights
   (see `latent_ike`: the paper's results need α on the knowledge; "literal" is Eq. 7 as printed).
Sequential editing (Tables 2, 3): the K edits' extra key-value pairs stack, and their latent entries join one
memory installed once (`latent_ike.LatentMemoryEdit`), so every attention output is shifted once, against the
train errors plus the K edits; `external="vanilla"` keeps one edit at a time (`sequential_problem`).
Ablations (Table 4) are switches: only intrinsic (`external="none"`), only Latent-IKE (`intrinsic=False`),
intrinsic + vanilla IKE (`external="vanilla"`: IKE's demonstrations and the new fact as text), intrinsic +
Latent-IKE without collaboration (`zeta="none", alpha_mode="fixed"`), and the full method.
"""
from __future__ import annotations

import dataclasses

import torch

from ..backbones.backbone import Backbone
from .base import Edit, EditRequest
from .disentangle import DisentangleConfig, train_encoders, zeta_direction
from .ffn_patch import FFNPatch, PatchEdit, patched
from .ike import IKEHparams, prepare_ike, retrieve
from .knowledge_memory import error_triplets, extract_states, query_states
from .latent_ike import READINGS, LatentConfig, LatentMemoryEdit, LatentStore, installed_stores, suspended
from .routing import InContextRouter, RouterEdit, fact_context, in_context
from .spec import FP16, FP32, EditorSpec, Memory, adam_bytes, prepare_field
from .tpatcher import TPatcherHparams, fit_patches, prepare_tpatcher

EXTERNAL = ("latent", "vanilla", "none")
ZETAS = ("truthful", "semantic", "random", "none")


@dataclasses.dataclass
class UniKEHparams:
    n_layers: int = prepare_field(4)  # the last L decoder layers (paper: 4)
    n_extra: int = 10  # n_e extra key-value pairs per layer (paper: 10)
    intrinsic: bool = True  # assimilation: the extra key-value pairs
    external: str = "latent"  # accommodation: latent | vanilla (text IKE) | none
    top_k: int = 40  # K retrieved hidden states (paper: 40)
    alpha_mode: str = "dynamic"  # dynamic (Eq. 7) | fixed
    alpha: float = 0.4  # the fixed α (alpha_mode="fixed")
    alpha_reading: str = "knowledge"  # knowledge (α weights h_know) | literal (Eq. 7 as printed)
    zeta: str = "truthful"  # truthful | semantic | random | none (Figure 4c)
    beta: float = 0.1  # β of Eq. 6 (the paper gives no value)
    memory_with_edit: bool = True  # the edit's own (h_sem, h_pos) joins the latent memory
    # intrinsic training, T-Patcher's losses and optimiser
    steps: int = 60
    lr: float = 1e-2
    act_weight: float = 1.0
    memory_weight: float = 1.0
    patch_beta: float = -3.0  # T-Patcher's β (memory activation threshold)
    patch_gamma: float = -3.0  # T-Patcher's γ (margin)
    patch_topk: int = 1000
    # what prepare builds
    memory_triplets: int = prepare_field(3000)  # knowledge-memory triplets (paper: >15K; the issue: >= 3000)
    patch_memory_cases: int = prepare_field(300)  # train cases whose FFN inputs form the patch memory
    patch_memory_size: int = prepare_field(4000)
    encoder_epochs: int = prepare_field(30)
    encoder_lr: float = prepare_field(1e-4)  # Adam (UniKE D.3)
    temperature: float = prepare_field(0.1)
    ike_k: int = 32  # demonstrations for external="vanilla"
    seed: int = prepare_field(0)

    def __post_init__(self):
        choices = {"external": EXTERNAL, "alpha_mode": ("dynamic", "fixed"), "alpha_reading": READINGS,
                   "zeta": ZETAS}
        for field, allowed in choices.items():
            if getattr(self, field) not in allowed:
                raise ValueError(f"unike.{field} must be one of {', '.join(allowed)}; got {getattr(self, field)!r}")
        if not self.intrinsic and self.external == "none":
            raise ValueError("unike with intrinsic=False and external='none' edits nothing")

    def sequential_problem(self) -> str | None:
        """Why these settings cannot keep several edits at once (None: they can)."""
        if self.external == "vanilla":
            return ("its external knowledge is a text context (IKE's demonstrations and the new fact), which the "
                    "next edit would replace, as IKE's would")
        return None


def edited_layers(bb: Backbone, hp: UniKEHparams) -> tuple[int, ...]:
    if not 1 <= hp.n_layers <= bb.n_layers:
        raise ValueError(f"unike.n_layers must be between 1 and {bb.n_layers}; got {hp.n_layers}")
    return tuple(range(bb.n_layers - hp.n_layers, bb.n_layers))


def _patch_hparams(hp: UniKEHparams, layers) -> TPatcherHparams:
    return TPatcherHparams(layers=layers, steps=hp.steps, lr=hp.lr, act_weight=hp.act_weight,
                           memory_weight=hp.memory_weight, beta=hp.patch_beta, gamma=hp.patch_gamma,
                           topk=hp.patch_topk, memory_size=hp.patch_memory_size,
                           memory_cases=hp.patch_memory_cases, seed=hp.seed)


def prepare_unike(bb: Backbone, train, hp: UniKEHparams) -> dict:
    """The knowledge memory and its encoders per layer, the patch memory, and IKE's demonstrations."""
    layers = edited_layers(bb, hp)
    triplets = error_triplets(train, limit=hp.memory_triplets)
    memory = extract_states(bb, triplets, layers)
    cfg = DisentangleConfig(lr=hp.encoder_lr, epochs=hp.encoder_epochs, temperature=hp.temperature, seed=hp.seed)
    encoders = {layer: train_encoders(memory[layer], cfg) for layer in layers}
    patch_memory = prepare_tpatcher(bb, train, TPatcherHparams(  # the fields T-Patcher's prepare reads
        layers=layers, memory_size=hp.patch_memory_size, memory_cases=hp.patch_memory_cases, seed=hp.seed))["memory"]
    return {"layers": layers, "memory": memory, "encoders": encoders, "patch_memory": patch_memory,
            "ike": prepare_ike(bb, train, IKEHparams()), "triplets": len(triplets)}


class CompositeEdit(Edit):
    """Edits applied in order, restored in reverse."""

    def __init__(self, edits: list[Edit]):
        self.edits, self.restored = edits, False

    def restore(self) -> None:
        for edit in reversed(self.edits):
            edit.restore()
        self.restored = True


def _train_patches(bb: Backbone, query, layers, hp: UniKEHparams, prepared: dict, shifts: dict) -> dict:
    """layer -> trained FFNPatch of n_extra pairs for `query` (whatever hooks are installed stay in place)."""
    batch = bb.encode([query])
    positions = list(range(batch.target_slices[0].start - 1, batch.target_slices[0].stop - 1))
    d = bb.model.config.text_config.hidden_size
    gated = bb.gated_ffn
    with torch.no_grad(), patched(bb, {layer: [] for layer in layers}) as seen:
        bb.logits(batch)
    generator = torch.Generator().manual_seed(hp.seed)
    owner = torch.arange(hp.n_extra) % len(positions)  # neuron j answers target position j mod T
    patches, params = {}, []
    for layer in layers:
        q_own = seen[layer].reshape(1, -1, d)[0, positions].detach()[owner].float()
        base = q_own / q_own.norm(dim=-1, keepdim=True).pow(2)  # q·k = 1 at the start, as in T-Patcher
        keys = (base + 1e-3 * base.norm(dim=-1, keepdim=True) * torch.randn(base.shape, generator=generator)
                / d ** 0.5).requires_grad_(True)
        up = base.clone().requires_grad_(True) if gated else None
        patch = FFNPatch(keys, torch.zeros(hp.n_extra, requires_grad=True),
                         torch.zeros(hp.n_extra, d, requires_grad=True), up, shifts.get(layer))
        patches[layer] = patch
        params += [t for t in (patch.keys, patch.bias, patch.values, patch.up_keys) if t is not None]
    fit_patches(bb, batch, positions, patches, params, prepared["patch_memory"], _patch_hparams(hp, layers),
                owner)
    return {layer: [p.detached()] for layer, p in patches.items()}


def latent_stores(bb: Backbone, request: EditRequest, hp: UniKEHparams, prepared: dict) -> dict:
    """layer -> the latent memory an edit installs: the train errors' states (plus the entries of the edits
    already installed, in sequential editing) and, with `memory_with_edit`, the edit's own (h_sem, h_pos), read
    with the installed shift switched off, as the train errors' states were read from the unshifted model."""
    layers = prepared["layers"]
    stores = installed_stores(bb) or {layer: LatentStore(prepared["memory"][layer].h_sem,
                                                         prepared["memory"][layer].h_pos) for layer in layers}
    if hp.memory_with_edit:
        query = request.query
        with suspended(bb):
            sem, final = query_states(bb, query, query.target, layers)
        stores = {layer: store.with_entry(sem[layer], final[layer]) for layer, store in stores.items()}
    return stores


def apply_unike(bb: Backbone, request: EditRequest, hp: UniKEHparams, prepared: dict) -> Edit:
    layers = prepared["layers"]
    if tuple(layers) != edited_layers(bb, hp):
        raise ValueError(f"prepared for layers {layers}, but n_layers={hp.n_layers} asks for {edited_layers(bb, hp)}")
    edits: list[Edit] = []
    query = request.query
    try:
        if hp.external == "latent":
            cfg = LatentConfig(top_k=hp.top_k, alpha=None if hp.alpha_mode == "dynamic" else hp.alpha,
                               reading=hp.alpha_reading)
            semantic = {layer: prepared["encoders"][layer].semantic for layer in layers}
            edits.append(LatentMemoryEdit(bb, latent_stores(bb, request, hp, prepared), cfg, semantic))
        elif hp.external == "vanilla":
            if bb.router is not None:
                raise RuntimeError(f"unike with external='vanilla' keeps one edit at a time: {hp.sequential_problem()}")
            demos = retrieve(bb, request, IKEHparams(k=hp.ike_k), prepared["ike"])
            context = fact_context(bb, query, " ".join(demos))
            edits.append(RouterEdit(bb, InContextRouter(bb, context)))
            query = in_context(bb, query, context)
        if hp.intrinsic:
            shifts = {}
            for layer in layers:
                zeta = zeta_direction(prepared["encoders"][layer], prepared["memory"][layer], hp.zeta, hp.seed)
                if zeta is not None:
                    shifts[layer] = hp.beta * zeta
            edits.append(PatchEdit(bb, _train_patches(bb, query, layers, hp, prepared, shifts)))
    except BaseException:
        for edit in reversed(edits):
            edit.restore()
        raise
    return CompositeEdit(edits)


def memory(s, hp: UniKEHparams) -> Memory:
    """Its extra key-value pairs per edited layer (trained, then kept with the edit's latent entry); the knowledge
    memory, its two encoders and the patch memory per layer."""
    layers = min(hp.n_layers, s.n_layers)
    pair = 3 * s.d if s.gated_ffn else 2 * s.d + 1  # a SwiGLU key-value pair (gate, up, down) or a ReLU one
    pairs = hp.n_extra * pair * layers
    resident = layers * (3 * hp.memory_triplets * s.d + 2 * (4 * s.d * s.d) + hp.patch_memory_size * s.d)
    return Memory(adam_bytes(pairs), pairs * FP16 + 2 * s.d * layers * FP32, resident * FP32)


SPEC = EditorSpec("unike", UniKEHparams, apply_unike, prepare_unike, label="UniKE", edit_steps="steps",
                  memory=memory,
                  quick={"encoder_epochs": 1, "steps": 5}, quick_cases=("memory_triplets", "patch_memory_cases"),
                  smoke={"memory_triplets": 64, "encoder_epochs": 2, "patch_memory_cases": 10, "steps": 10},
                  summary="UniKE: extra FFN key-value pairs + latent in-context memory, collaborating via ζ and α")
