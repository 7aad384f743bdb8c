"""How much evaluation costs over the bare forward passes it needs: cases/s of `evaluate_cases` against a raw
batched forward of the same queries (same groups), after the pre-edit reference is cached.

    >>> r = evaluation_throughput(bb, cases, group_size=1)      # doctest: +SKIP
    >>> r["ratio"]                                              # doctest: +SKIP
    0.93
"""
from __future__ import annotations

import time

import torch

from .cases import ACCURACY_PROBES, LOCALITY_PROBES
from .evaluate import evaluate_cases, locality_reference


@torch.no_grad()
def evaluation_throughput(bb, cases, group_size: int = 1, accuracy_protocol: str = "tf-token",
                          locality_protocol: str = "answer-argmax", repeats: int = 3) -> dict:
    reference = locality_reference(bb, cases, locality_protocol)
    groups = [cases[i:i + group_size] for i in range(0, len(cases), group_size)]
    probes = ACCURACY_PROBES + LOCALITY_PROBES

    def raw():
        for g in groups:
            bb.logits(bb.encode([c.probes[p] for c in g for p in probes]))

    def full():
        for g in groups:
            evaluate_cases(bb, g, reference, accuracy_protocol, locality_protocol)

    timings = {}
    for name, fn in (("raw", raw), ("evaluate", full)):
        fn()  # warm-up
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - started)
        timings[name] = best
    return {"cases": len(cases), "group_size": group_size, "raw_cases_per_s": len(cases) / timings["raw"],
            "evaluate_cases_per_s": len(cases) / timings["evaluate"], "ratio": timings["raw"] / timings["evaluate"]}
