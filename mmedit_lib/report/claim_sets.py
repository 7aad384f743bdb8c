"""The papers' one-step claims, stated once: MMEdit Table 2's, UniKE Table 1's, BalancEdit Table 3's.

    >>> from mmedit_lib.report.claim_sets import decide, mmedit_table2
    >>> rows = decide(mmedit_table2, table, "tiny-blip2-opt", "vqa")      # one dict per claim   # doctest: +SKIP

Each function takes where the claim is tested (`backbone, task`, as text) and returns the `tables.Claim`s of one
(backbone, task) cell, each as strong as the paper's own sentence and numbers (the source says which). The chapter
of each table tests them on the backbone the paper stands for; "Does it hold on a LLaVA-class model?" tests the
same statements on `tiny-llava`, which none of the papers ran. `decide` turns a one-step table's cell into
verdicts (`tables.verdict`: one rule, on bootstrap intervals).
"""
from __future__ import annotations

from typing import Callable

from .tables import Claim, verdict

FT, IKE, TP = "FT (last layer)", "In-Context Editing", "T-Patcher"
PAPER_BACKBONES = ("blip2-opt", "minigpt4")


def mmedit_table2(where: str, task: str) -> list[Claim]:
    """MMEdit Table 2 (Cheng et al. 2023), its text and numbers (the survey's copy of the table)."""
    return [
        Claim(f"FT (last layer) damages T-Locality ({where})", FT, "t_loc", "below", threshold=100.0,
              source="MMEdit Table 2: T-Loc 35.5-78.9"),
        Claim(f"FT (last layer) damages M-Locality ({where})", FT, "m_loc", "below", threshold=100.0,
              source="MMEdit Table 2: M-Loc 2.9-16.4"),
        Claim(f"IKE reaches high reliability (> 80%) ({where})", IKE, "rel", "above", threshold=80.0,
              source="MMEdit Table 2: 68.6-99.95; 'superior reliability'"),
        Claim(f"IKE has poor M-Locality (below MEND's) ({where})", IKE, "m_loc", "below", other_method="MEND",
              source="MMEdit Table 2: IKE M-Loc 1.9-3.0 vs MEND 55.7-71.3"),
        Claim(f"SERAC reaches high reliability (> 80%) ({where})", "SERAC", "rel", "above", threshold=80.0,
              source="MMEdit Table 2: 40.2-94.4; 'superior reliability'"),
        Claim(f"SERAC has poor M-Locality (below MEND's) ({where})", "SERAC", "m_loc", "below", other_method="MEND",
              source="MMEdit Table 2: SERAC M-Loc 0.3-1.0 vs MEND 55.7-71.3"),
        Claim(f"MEND keeps T-Locality (> 90%) ({where})", "MEND", "t_loc", "above", threshold=90.0,
              source="MMEdit Table 2: 92.7-98.7"),
        Claim(f"MEND keeps M-Locality better than FT (last layer) ({where})", "MEND", "m_loc", "above",
              other_method=FT, source="MMEdit Table 2: 55.7-71.3 vs 2.9-16.4"),
        Claim(f"MEND generalizes to rephrased text (T-Gen > 80%) ({where})", "MEND", "t_gen", "above",
              threshold=80.0, source="MMEdit Table 2: 84.1-95.3 (38.0 on BLIP-2 OPT E-IC)"),
        Claim(f"Editing the language module is more reliable than the vision module, MEND ({where})", "MEND", "rel",
              "above", other_method="MEND (vision module)", source="MMEdit: 92.6% vs 14.1%"),
        Claim(f"Editing the language module is more reliable than the vision module, FT ({where})", FT, "rel",
              "above", other_method="FT (vision block)",
              source="MMEdit Table 2: FT rel 58.7/39.6 (last layer) vs 56.3/39.6 (vision block) on E-VQA"),
    ]


def unike_range(method: str, metric: str, other: str | None = None, tasks=("vqa", "caption")) -> str:
    """UniKE Table 1's range of `metric` for `method` over its two backbones and `tasks` (and `other`'s), as text."""
    from ..reference import paper_table

    def span(m):
        values = [paper_table("unike", "Table 1", backbone=b, task=t).loc[m, metric]
                  for b in PAPER_BACKBONES for t in tasks]
        return f"{min(values):.1f}-{max(values):.1f}"
    return f"UniKE Table 1, {metric}: {method} {span(method)}" + (f" vs {other} {span(other)}" if other else "")


def unike_table1(where: str, task: str) -> list[Claim]:
    """UniKE Table 1 (Pan et al. 2024): the baselines' trade-offs and UniKE's, each sourced from the paper's range
    over both its backbones and both tasks."""
    src = unike_range
    return [
        Claim(f"FT (last layer) damages locality more than MEND, T-Loc ({where})", FT, "t_loc", "below",
              other_method="MEND", source=src(FT, "t_loc", "MEND")),
        Claim(f"FT (last layer) damages M-Locality ({where})", FT, "m_loc", "below", threshold=100.0,
              source=src(FT, "m_loc")),
        Claim(f"IKE's M-Locality is below T-Patcher's ({where})", IKE, "m_loc", "below", other_method=TP,
              source=src(IKE, "m_loc", TP)),
        Claim(f"SERAC's M-Locality is below MEND's ({where})", "SERAC", "m_loc", "below", other_method="MEND",
              source=src("SERAC", "m_loc", "MEND")),
        Claim(f"MEND is reliable (> 90%) ({where})", "MEND", "rel", "above", threshold=90.0,
              source=src("MEND", "rel")),
        Claim(f"MEND generalizes to rephrased images (M-Gen > 70%) ({where})", "MEND", "m_gen", "above",
              threshold=70.0, source=src("MEND", "m_gen")),
        Claim(f"T-Patcher keeps T-Locality (> 80%) ({where})", TP, "t_loc", "above", threshold=80.0,
              source=src(TP, "t_loc")),
        Claim(f"UniKE keeps reliability high (> 90%) ({where})", "UniKE", "rel", "above", threshold=90.0,
              source=src("UniKE", "rel")),
        Claim(f"UniKE generalizes better than T-Patcher, T-Gen ({where})", "UniKE", "t_gen", "above",
              other_method=TP, source=src("UniKE", "t_gen", TP)),
        Claim(f"UniKE generalizes better than T-Patcher, M-Gen ({where})", "UniKE", "m_gen", "above",
              other_method=TP, source=src("UniKE", "m_gen", TP)),
        Claim(f"UniKE keeps T-Locality better than IKE ({where})", "UniKE", "t_loc", "above",
              other_method=IKE, source=src("UniKE", "t_loc", IKE)),
        Claim(f"UniKE keeps M-Locality better than IKE ({where})", "UniKE", "m_loc", "above",
              other_method=IKE, source=src("UniKE", "m_loc", IKE)),
        Claim(f"UniKE keeps M-Locality better than SERAC ({where})", "UniKE", "m_loc", "above",
              other_method="SERAC", source=src("UniKE", "m_loc", "SERAC")),
    ]


def balancedit_table3(where: str, task: str) -> list[Claim]:
    """BalancEdit Table 3 and §4.3 (its HM beats every baseline's; on OKEDIT, the trade-offs of each baseline).
    `task` is "vqa" (its MMEDIT column) or "okedit"; its methods carry BalancEdit's labels (`report.balancedit`)."""
    from ..data.benchmarks import BENCHMARKS
    dataset = BENCHMARKS[task].paper_dataset
    src = f"BalancEdit Table 3, §4.3 ({dataset})"
    claims = [Claim(f"{where}: BalancEdit's HM beats {other}'s", "BalancEdit", "hm", "above", other_method=other,
                    source=src) for other in ["GRACE", "IKE", "FT", "MEND"]]
    if task == "okedit":
        for text, method, metric, direction, other in [
                ("GRACE keeps locality better than FT", "GRACE", "loc", "above", "FT"),
                ("GRACE keeps locality better than IKE", "GRACE", "loc", "above", "IKE"),
                ("GRACE generalizes to rephrased questions worse than BalancEdit", "GRACE", "t_gen", "below",
                 "BalancEdit"),
                ("GRACE generalizes to other images worse than BalancEdit", "GRACE", "m_gen", "below", "BalancEdit"),
                ("FT generalizes (I-Gen) better than GRACE", "FT", "m_gen", "above", "GRACE"),
                ("IKE generalizes (I-Gen) better than GRACE", "IKE", "m_gen", "above", "GRACE"),
                ("FT breaks locality: its Loc is below BalancEdit's", "FT", "loc", "below", "BalancEdit"),
                ("IKE breaks locality: its Loc is below BalancEdit's", "IKE", "loc", "below", "BalancEdit")]:
            claims.append(Claim(f"{where}: {text}", method, metric, direction, other_method=other, source=src))
        claims.append(Claim(f"{where}: BalancEdit edits reliably (Acc above 95)", "BalancEdit", "rel", "above",
                            threshold=95.0, source=src))
    return claims


def decide(claims: Callable[[str, str], list[Claim]], ours: dict, where: str, task: str) -> list[dict]:
    """The verdicts of `claims(where, task)` on one cell's summaries (`ours`: method label -> summary)."""
    return [verdict(claim, ours) for claim in claims(where, task)]



def decide_table(claims: Callable[[str, str], list[Claim]], table, backbones, tasks) -> list[dict]:
    """The verdicts of `claims` on every (backbone, task) cell of a one-step table (`onestep.OneStepTable`), each
    claim's text naming its cell."""
    from .onestep import for_cell
    return [v for backbone in backbones for task in tasks
            for v in decide(claims, for_cell(table, backbone, task), f"{backbone}, {task}", task)]
