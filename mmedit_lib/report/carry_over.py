"""Do the papers' one-step findings carry over to another architecture? The same claims, decided per backbone.

    >>> result = carry_over(["tiny-blip2-opt", "tiny-minigpt4", "tiny-llava"], "vqa", n=100)      # doctest: +SKIP
    >>> result.table[["claim", "tiny-llava"]]                                                  # doctest: +SKIP

Each paper table's claims (`claim_sets`) are decided on each backbone's cell of the runs that paper's chapter runs
(the same editors, protocols, cases and seed, so the runs of the BLIP-2 stand-ins are the chapters' own, reused),
with one rule (`tables.verdict`). `carries` says, per claim, what the verdicts on the paper's stand-ins and on the
new backbone amount to:
- "holds here too": reproduced on the new backbone and on at least one stand-in;
- "holds here, not on the stand-ins": reproduced on the new backbone only;
- "does not carry over": reproduced on a stand-in, not reproduced on the new backbone;
- "fails everywhere": not reproduced on the new backbone nor on any stand-in;
- "undecided here": inconclusive (or not run) on the new backbone.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import pandas as pd

from . import claim_sets
from .onestep import LABELS, OneStepTable, for_cell, onestep_table


def _balancedit_cell(summaries: dict) -> dict:
    from .balancedit import as_paper_metrics
    return {label: as_paper_metrics(s) for label, s in summaries.items()}


@dataclasses.dataclass(frozen=True)
class PaperTable:
    """One paper table's claims, and the runs its chapter decides them on."""
    name: str
    claims: Callable  # (where, task) -> [Claim]
    paper: tuple[str, str]  # the provenance key its rows' protocols come from
    editors: tuple[str, ...]  # its chapter's default editors
    labels: Callable = lambda: LABELS  # editor -> the paper's row name
    cell: Callable = lambda summaries: summaries  # summaries as the claims read them


def _balancedit_labels():
    from .balancedit import LABELS as BALANCEDIT_LABELS
    return BALANCEDIT_LABELS


PAPER_TABLES = (
    PaperTable("MMEdit Table 2", claim_sets.mmedit_table2, ("mmedit", "Table 2"),
               ("unedited", "ft-vision", "ft-last", "ke", "ike", "serac", "mend", "mend-vision")),
    PaperTable("UniKE Table 1", claim_sets.unike_table1, ("unike", "Table 1"),
               ("unedited", "ft-last", "ke", "t-patcher", "mend", "ike", "serac", "unike")),
    PaperTable("BalancEdit Table 3", claim_sets.balancedit_table3, ("balancedit", "Table 3"),
               ("unedited", "ft-last", "ike", "mend", "grace", "balancedit"), _balancedit_labels, _balancedit_cell),
)


@dataclasses.dataclass
class CarryOver:
    table: pd.DataFrame  # one row per claim: paper, claim, source, a verdict column per backbone, carries, evidence
    verdicts: dict  # backbone -> [verdict dict] (as `tables.record_verdicts` writes them)
    cells: dict  # (paper table, backbone) -> {method label -> summary}
    runs: pd.DataFrame  # every run used, with its paper table


OUTCOMES = ("holds here too", "does not carry over", "holds here, not on the stand-ins", "fails everywhere",
            "undecided here")


def outcome_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many claims have each outcome (all five, zeros included)."""
    return {outcome: int((table.carries == outcome).sum()) for outcome in OUTCOMES}


def carries(target: str, others: list[str]) -> str:
    """What a claim's verdicts amount to (the module docstring's five outcomes)."""
    if target not in ("reproduced", "not reproduced"):
        return "undecided here"
    held = any(v == "reproduced" for v in others)
    if target == "reproduced":
        return "holds here too" if held else "holds here, not on the stand-ins"
    return "does not carry over" if held else "fails everywhere"


def carry_over(backbones: list[str], task: str = "vqa", n: int = 100, seed: int = 0, smoke: bool = False,
               data_dir=None, tables=PAPER_TABLES) -> CarryOver:
    """Every paper table's claims on every backbone's cell; the last backbone is the one asked about."""
    rows, verdicts, cells, runs = [], {b: [] for b in backbones}, {}, []
    target = backbones[-1]
    tables_by_spec = {spec.name: [] for spec in tables}
    # the asked-about backbone's runs first (its own), then the stand-ins' (their chapters' runs, reused when those ran
    # first; computed once under the runs' locks when they run beside this one)
    for group in ([target], backbones[:-1]):
        for spec in tables:
            if group:
                tables_by_spec[spec.name].append(onestep_table(
                    group, [task], list(spec.editors), spec.labels(), n=n, seed=seed, accuracy_protocol="paper",
                    locality_protocol="paper", data_dir=data_dir, smoke=smoke, paper=spec.paper))
    for spec in tables:
        summaries = {k: v for t in tables_by_spec[spec.name] for k, v in t.summaries.items()}
        table = OneStepTable(summaries, pd.concat([t.runs for t in tables_by_spec[spec.name]], ignore_index=True))
        runs.append(table.runs.assign(paper_table=spec.name))
        decided = {}
        for backbone in backbones:
            cells[(spec.name, backbone)] = spec.cell(for_cell(table, backbone, task))
            decided[backbone] = claim_sets.decide(spec.claims, cells[(spec.name, backbone)], f"{backbone}, {task}",
                                                  task)
            verdicts[backbone] += decided[backbone]
        statements = spec.claims(task, task)
        for i, claim in enumerate(statements):
            row = {"paper": spec.name, "claim": claim.text.replace(f" ({task})", "").replace(f"{task}: ", ""),
                   "source": claim.source}
            row.update({b: decided[b][i]["verdict"] for b in backbones})
            row["carries"] = carries(row[target], [row[b] for b in backbones[:-1]])
            row["evidence"] = decided[target][i]["evidence"]
            rows.append(row)
    return CarryOver(pd.DataFrame(rows), verdicts, cells, pd.concat(runs, ignore_index=True))
