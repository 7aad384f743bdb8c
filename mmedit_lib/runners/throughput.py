"""How much evaluation costs over the bare forward passes it needs: cases/s of `evaluate_cases` against a raw
batched forward of the same queries (same groups), after the pre-edit reference is cached; each is timed `repeats`
times, interleaved, and the best time of each counts.

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
                          locality_protocol: str = "answer-argmax", repeats: int = 5) -> dict:
    reference = locality_reference(bb, cases, locality_protocol)
    groups = [cases[i:i + group_size] for i in range(0, len(cases), group_size)]
    probes = ACCURACY_PROBES + LOCALITY_PROBES

    def raw():
        for g in groups:
            bb.logits(bb.encode([c.probes[p] for c in g for p in probes]))

    def full():
        for g in groups:
            evaluate_cases(bb, g, reference, accuracy_protocol, locality_protocol)

    steps = [("raw", raw), ("evaluate", full)]
    for _, fn in steps:  # warm-up
        fn()
    timings = {"raw": float("inf"), "evaluate": float("inf")}
    for repeat in range(repeats):  # interleaved, in alternating order: a load that comes and goes hits both alike
        for name, fn in (steps if repeat % 2 == 0 else steps[::-1]):
            started = time.perf_counter()
            fn()
            timings[name] = min(timings[name], time.perf_counter() - started)
    return {"cases": len(cases), "group_size": group_size, "raw_cases_per_s": len(cases) / timings["raw"],
            "evaluate_cases_per_s": len(cases) / timings["evaluate"], "ratio": timings["raw"] / timings["evaluate"],
            "repeats": repeats}
