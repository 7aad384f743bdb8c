"""Tables shared by the notebooks: ours (mean and 95% CI) beside the paper's numbers, and claim verdicts.

    >>> ours = {"FT (last layer)": summarize(rows)}                                    # doctest: +SKIP
    >>> side_by_side(paper_table("unike", "Table 1", backbone="minigpt4", task="vqa"), ours)  # doctest: +SKIP

Every number comes from results rows (`summarize`) or the reference CSV; methods with no run yet are shown as
"not yet run". A verdict is computed from CIs: `reproduced` when our interval lies on the side of the threshold
the claim states, `not reproduced` when it lies on the other side, `inconclusive` when it straddles it.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

NOT_YET_RUN = "not yet run"


def fmt_ci(row) -> str:
    return f"{row['mean']:.1f} [{row['ci_low']:.1f}, {row['ci_high']:.1f}]"


def side_by_side(paper: pd.DataFrame, ours: dict[str, pd.DataFrame], metrics=None) -> pd.DataFrame:
    """Rows = the paper's methods (plus any of ours it lacks); columns = (metric, paper | ours)."""
    metrics = list(metrics or paper.columns)
    methods = list(paper.index) + [m for m in ours if m not in paper.index]
    data = {}
    for metric in metrics:
        data[(metric, "paper")] = [f"{paper.loc[m, metric]:.1f}" if m in paper.index and metric in paper.columns
                                   and pd.notna(paper.loc[m, metric]) else "–" for m in methods]
        data[(metric, "ours")] = [fmt_ci(ours[m].loc[metric]) if m in ours else NOT_YET_RUN for m in methods]
    table = pd.DataFrame(data, index=methods)
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    table.index.name = "method"
    return table


@dataclasses.dataclass
class Claim:
    """`our interval of <metric> for <method> lies below/above <threshold>` (or beside another method's)."""
    text: str
    method: str
    metric: str
    direction: str  # "below" | "above"
    threshold: float | None = None  # a fixed number (percent), or:
    other_method: str | None = None  # compare with another method's interval on the same metric
    other_metric: str | None = None  # or with another metric of the same method
    source: str = ""


def verdict(claim: Claim, ours: dict[str, pd.DataFrame]) -> dict:
    if claim.method not in ours or (claim.other_method and claim.other_method not in ours):
        return {"claim": claim.text, "source": claim.source, "verdict": NOT_YET_RUN, "evidence": ""}
    row = ours[claim.method].loc[claim.metric]
    if claim.threshold is not None:
        low, high, against = claim.threshold, claim.threshold, f"{claim.threshold:g}"
    else:
        other = ours[claim.other_method or claim.method].loc[claim.other_metric or claim.metric]
        low, high = other["ci_low"], other["ci_high"]
        against = f"{claim.other_method or claim.method} {claim.other_metric or claim.metric} {fmt_ci(other)}"
    if claim.direction == "below":
        result = "reproduced" if row["ci_high"] < low else "not reproduced" if row["ci_low"] >= high else "inconclusive"
    elif claim.direction == "above":
        result = "reproduced" if row["ci_low"] > high else "not reproduced" if row["ci_high"] <= low else "inconclusive"
    else:
        raise ValueError(f"direction is 'below' or 'above'; got {claim.direction!r}")
    evidence = f"{claim.method} {claim.metric} {fmt_ci(row)} vs {against}"
    return {"claim": claim.text, "source": claim.source, "verdict": result, "evidence": evidence}


def record_verdicts(notebook: str, verdicts: list[dict], folder: str | Path) -> Path:
    """Write a notebook's verdicts where the book's status page reads them."""
    path = Path(folder) / f"{notebook}.verdicts.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(verdicts, indent=1) + "\n")
    return path
