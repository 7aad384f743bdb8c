"""The papers' reported numbers as data: one long table, each row citing paper, table/figure, backbone and task.

    >>> from mmedit_lib.reference import paper_numbers
    >>> t = paper_numbers()
    >>> t.query("paper == 'unike' and item == 'Table 1' and backbone == 'blip2-opt' and task == 'vqa' "
    ...         "and method == 'MEND' and metric == 'rel'").value.item()
    99.4

Sources (all in `../shared/papers/`): UniKE (NeurIPS 2024) Tables 1-5 and the values printed in Figure 4(c);
BalancEdit Tables 3 and 4 and the times printed with Table 5; MMEdit (EMNLP 2023) Table 2 (Rel, T-Gen, T-Loc,
M-Loc; it has no M-Gen column), read from the copy of the table in `survey_editing_llms.txt` (the MMEdit text
shared with this project is a summary without it), plus the two numbers that summary quotes (see `note`).
UniKE Table 1 re-reports the MMEdit baselines (FT, KE, T-Patcher, MEND, IKE, SERAC) on the same benchmark and
both backbones with M-Gen added. Values are percentages unless
the metric names a unit; "NA" cells are missing values. `backbone` is "blip2-opt" or "minigpt4".
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

CSV = Path(__file__).with_name("paper_numbers.csv")
COLUMNS = ("paper", "item", "setting", "backbone", "task", "dataset", "method", "metric", "value", "note")
from ..backbones.registry import PAPER_BACKBONE as TINY_TO_PAPER_BACKBONE  # noqa: E402,F401  (each backbone's spec)


def paper_numbers() -> pd.DataFrame:
    table = pd.read_csv(CSV, na_values=["NA"], keep_default_na=False, dtype={"value": float})
    missing = set(COLUMNS) - set(table.columns)
    if missing:
        raise ValueError(f"{CSV}: missing column(s) {sorted(missing)}")
    return table


def paper_table(paper: str, item: str, **where) -> pd.DataFrame:
    """Methods x metrics for one table (filtered by backbone, task, dataset...), in the paper's row order."""
    t = paper_numbers()
    t = t[(t.paper == paper) & (t["item"] == item)]
    for column, value in where.items():
        t = t[t[column] == value]
    if t.empty:
        raise ValueError(f"no reference numbers for {paper} {item} {where}")
    order = list(dict.fromkeys(t.method))
    wide = t.pivot_table(index="method", columns="metric", values="value", aggfunc="first", dropna=False)
    metrics = list(dict.fromkeys(t.metric))
    return wide.loc[order, metrics]
