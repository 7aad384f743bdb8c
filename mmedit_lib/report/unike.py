"""What the UniKE notebooks share: Table 4's ablation variants, and probes that look inside an edit.

    >>> summaries = variant_runs("tiny-minigpt4", "vqa", ABLATIONS, n=30)          # doctest: +SKIP
    >>> alpha_by_probe(bb, editor, cases).groupby("probe").alpha.mean()            # doctest: +SKIP
    >>> live_scores(bb, editor, cases)        # the explorer: edits scored in memory, no results written
    ... # doctest: +SKIP

Table 4's rows as `unike` hparams. Rows 1-4 have no collaboration (§3.3): ζ is off and α fixed (at the default
0.4; the paper does not say which value its rows used).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..editors.latent_ike import LatentConfig, latent_shift
from ..editors.registry import Editor
from ..editors.unike import latent_stores
from ..metrics.aggregate import METRICS, summarize_with_averages
from ..runners.evaluate import evaluate_cases, locality_reference

NO_COLLABORATION = {"alpha_mode": "fixed", "zeta": "none"}
ABLATIONS = {"only Intrin": {"external": "none", "zeta": "none"},
             "only Latent-IKE": {"intrinsic": False, **NO_COLLABORATION},
             "Intrin+IKE": {"external": "vanilla", "zeta": "none"},
             "Intrin+Latent-IKE": dict(NO_COLLABORATION),
             "UniKE": {}}
PROBES = METRICS  # one α row per metric's probe


@torch.no_grad()
def alpha_by_probe(bb, editor, cases, probes=PROBES) -> pd.DataFrame:
    """One row per (case, probe): the dynamic α (Eq. 7) at the positions that predict the probe's answer, averaged
    over the shifted layers, with the edit of `case` in the latent memory. `editor`: a prepared unike Editor."""
    hp, prepared = editor.hparams, editor.prepared
    semantic = {layer: prepared["encoders"][layer].semantic for layer in prepared["layers"]}
    cfg = LatentConfig(top_k=hp.top_k, alpha=None, reading=hp.alpha_reading)
    rows = []
    for case in cases:
        stores = latent_stores(bb, case.request, hp, prepared)
        for probe in probes:
            batch = bb.encode([case.probes[probe]])
            alphas: list = []
            with latent_shift(bb, stores, cfg, semantic, alphas):
                bb.logits(batch)
            sl = batch.target_slices[0]
            per_layer = torch.stack([a.reshape(-1)[sl.start - 1:sl.stop - 1].mean() for a in alphas])
            rows.append({"case": case.case_id, "probe": probe, "alpha": float(per_layer.mean())})
    return pd.DataFrame(rows)


def live_scores(bb, editor, cases, accuracy_protocol="tf-token", locality_protocol="answer-argmax") -> pd.DataFrame:
    """Edit each case, score its probes, restore: summarize_with_averages() of the rows; nothing is written."""
    reference = locality_reference(bb, cases, locality_protocol)
    rows = []
    for case in cases:
        edit = editor.edit(bb, case.request)
        try:
            scores = evaluate_cases(bb, [case], reference, accuracy_protocol, locality_protocol)
            rows += [{**row, "accuracy_protocol": accuracy_protocol, "locality_protocol": locality_protocol}
                     for row in scores]
        finally:
            edit.restore()
    return summarize_with_averages(rows)


@torch.no_grad()
def knowledge_spaces(encoders, memory, n: int = 400, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """space -> (states, is_positive) for n positive and n negative memory states: the raw h_pos/h_neg and their
    semantic and truthfulness representations (Figure 5a)."""
    index = torch.randperm(len(memory.h_pos), generator=torch.Generator().manual_seed(seed))[:n]
    pos, neg = memory.h_pos[index], memory.h_neg[index]
    labels = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
    return {"hidden state": (torch.cat([pos, neg]).numpy(), labels),
            "semantic space": (torch.cat([encoders.semantic(pos), encoders.semantic(neg)]).numpy(), labels),
            "truthfulness space": (torch.cat([encoders.truthful(pos), encoders.truthful(neg)]).numpy(), labels)}


def neighbour_agreement(states: np.ndarray, labels: np.ndarray, k: int = 5) -> np.ndarray:
    """Per state, 1 if the majority of its k nearest others (cosine) share its truthfulness, else 0: near 1 when
    positive and negative states separate, near 0.5 when they mix."""
    x = F.normalize(torch.as_tensor(states, dtype=torch.float32), dim=-1)
    sim = x @ x.T
    sim.fill_diagonal_(-2.0)
    nearest = sim.topk(k, dim=-1).indices.numpy()
    same = (labels[nearest] == labels[:, None]).mean(1)
    return (same > 0.5).astype(float)


def with_hparams(editor, **changes):
    """A copy of a prepared unike Editor with other per-edit hparams (α, β, K...), sharing what prepare built.

        >>> live = with_hparams(editor, beta=0.5, top_k=8)                            # doctest: +SKIP
    """
    shared = sorted(set(changes) & set(editor.spec.prepare_fields))
    if shared:
        raise ValueError(f"{', '.join(shared)} change what prepare builds; make and prepare a new editor instead")
    copy = Editor(editor.spec, dataclasses.replace(editor.hparams, **changes))
    copy.prepared, copy.prepare_meta = editor.prepared, editor.prepare_meta
    return copy


def prepared_unike(backbone: str, task: str, seed: int = 0, data_dir=None, smoke: bool = False):
    """(backbone, data root, a unike Editor prepared on `task`'s train split) for the notebooks that look inside
    edits; prepare is cached where the runs cache it, so it is the same memory and encoders the runs used.

        >>> bb, root, editor = prepared_unike("tiny-minigpt4", "vqa")                  # doctest: +SKIP
    """
    from ..backbones.registry import load_backbone
    from ..editors.registry import make_editor
    from ..runners.cases import TrainSplit
    from ..world.ensure import ensure_world, runs_dir
    from .onestep import SMOKE_HPARAMS
    bb = load_backbone(backbone)
    root = data_dir or ensure_world(backbone, smoke=smoke, seed=seed, bb=bb)
    editor = make_editor("unike", backbone=backbone, **(SMOKE_HPARAMS["unike"] if smoke else {}))
    editor.prepare(bb, TrainSplit.load(bb, root, [task]), cache_dir=runs_dir(smoke).parent / "prepared")
    return bb, root, editor
