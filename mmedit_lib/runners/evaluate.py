"""Batched evaluation of cases: their probes go through the backbone in as few forward passes as possible.

    >>> reference = locality_reference(bb, cases, "answer-argmax")        # pre-edit, once per case
    ... # doctest: +SKIP
    >>> scores = evaluate_cases(bb, cases, reference, "tf-token", "answer-argmax")   # doctest: +SKIP
    >>> scores[0]                                                                    # doctest: +SKIP
    {'rel': 1.0, 't_gen': 1.0, 'm_gen': 0.5, 't_loc': 1.0, 'm_loc': 0.5}

A metric with several probes (OKEDIT's `t_gen`, `t_gen:1`, ...) scores their mean. Locality is always measured
against the *unedited* model's fingerprint (`locality_reference`, computed before
any edit of a run), also after K sequential edits.
"""
from __future__ import annotations

import torch

from ..backbones.backbone import Backbone
from ..metrics.protocols import accuracy_score, locality_fingerprint, locality_score
from .cases import ACCURACY_PROBES, LOCALITY_PROBES, Case, metric_of

MAX_BATCH = 64  # queries per forward pass


def _forward(bb: Backbone, queries, max_batch: int = MAX_BATCH):
    out = []
    for start in range(0, len(queries), max_batch):
        out += bb.query_logits(queries[start:start + max_batch])
    return out


@torch.no_grad()
def locality_reference(bb: Backbone, cases: list[Case], protocol: str,
                       max_batch: int = MAX_BATCH) -> dict[str, dict[str, torch.Tensor]]:
    """case id -> probe -> the unedited model's locality fingerprint, batched across cases."""
    names = [(c, p) for c in cases for p in c.probes if metric_of(p) in LOCALITY_PROBES]
    outs = _forward(bb, [c.probes[p] for c, p in names], max_batch)
    reference = {c.case_id: {} for c in cases}
    for (case, probe), lg in zip(names, outs):
        reference[case.case_id][probe] = locality_fingerprint(protocol, lg.sequence, lg.target,
                                                              case.probes[probe].image is not None)
    return reference


@torch.no_grad()
def evaluate_cases(bb: Backbone, cases: list[Case], reference: dict, accuracy_protocol: str,
                   locality_protocol: str, max_batch: int = MAX_BATCH) -> list[dict[str, float]]:
    """Per case, rel / t_gen / m_gen / t_loc / m_loc in [0, 1] under the two named protocols (None for a metric
    the case has no probe for: its benchmark does not score it)."""
    names = [(i, p) for i, c in enumerate(cases) for p in c.probes
             if metric_of(p) in ACCURACY_PROBES + LOCALITY_PROBES]
    if accuracy_protocol == "gen-exact":  # accuracy from greedy answers; one teacher-forced pass for locality
        loc_names = [(i, p) for i, p in names if metric_of(p) in LOCALITY_PROBES]
        acc_names = [(i, p) for i, p in names if metric_of(p) in ACCURACY_PROBES]
        outs = dict(zip(loc_names, _forward(bb, [cases[i].probes[p] for i, p in loc_names], max_batch)))
        answers = []
        for start in range(0, len(acc_names), max_batch):
            answers += bb.greedy([cases[i].probes[p] for i, p in acc_names[start:start + max_batch]])
        generated = dict(zip(acc_names, answers))
    else:
        outs = dict(zip(names, _forward(bb, [cases[i].probes[p] for i, p in names], max_batch)))
    per_probe: dict[tuple[int, str], float] = {}
    for i, probe in names:
        q = cases[i].probes[probe]
        if metric_of(probe) in LOCALITY_PROBES:
            lg = outs[(i, probe)]
            after = locality_fingerprint(locality_protocol, lg.sequence, lg.target, q.image is not None)
            per_probe[(i, probe)] = locality_score(reference[cases[i].case_id][probe], after)
        elif accuracy_protocol == "gen-exact":
            per_probe[(i, probe)] = accuracy_score("gen-exact", generated=generated[(i, probe)], target=q.target)
        else:
            lg = outs[(i, probe)]
            per_probe[(i, probe)] = accuracy_score(accuracy_protocol, lg.target, lg.target_ids)
    grouped: list[dict[str, list[float]]] = [{} for _ in cases]
    for (i, probe), value in per_probe.items():
        grouped[i].setdefault(metric_of(probe), []).append(value)
    # a metric the case's benchmark does not score (no probe for it) is None
    return [{m: sum(row[m]) / len(row[m]) if m in row else None for m in ACCURACY_PROBES + LOCALITY_PROBES}
            for row in grouped]
