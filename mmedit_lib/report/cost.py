"""The cost of editing, from the results rows every run records: prepare time, time and peak memory per edit,
evaluation throughput; and ratios between editors, the only comparison that survives a change of hardware.

    >>> table = onestep_table(["tiny-blip2-opt"], ["vqa"], ["ft-last", "unike"], n=30)   # doctest: +SKIP
    >>> cost_frame(table.rows)                                                           # doctest: +SKIP
    >>> ratio(table.rows[key_a], table.rows[key_b], "edit_seconds")                      # doctest: +SKIP
    {'mean': 9.1, 'ci_low': 8.2, 'ci_high': 10.3}

Fields (see `runners.run`): `prepare_seconds` is the time `prepare` took when it was built (a cached artefact keeps
its build time); `edit_seconds` one edit; `edit_peak_mb` the memory high-water mark during the edit above what
was in use before it (CPU: resident memory; GPU: allocated memory); `eval_seconds` a case's share of its
evaluation pass (every probe, teacher-forced), so 1 / mean is the evaluation throughput under that editor.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def cost_frame(rows_by_key: dict) -> pd.DataFrame:
    """One row per run key (backbone, task, method): prepare s, mean edit s, median / max edit peak MB, eval
    cases per second. Rows recorded before a field existed show NaN for it."""
    out = []
    for (backbone, task, method), rows in rows_by_key.items():
        frame = pd.DataFrame(rows)
        peak = frame["edit_peak_mb"] if "edit_peak_mb" in frame else pd.Series(dtype=float)
        evals = frame["eval_seconds"] if "eval_seconds" in frame else pd.Series(dtype=float)
        out.append({"backbone": backbone, "task": task, "method": method, "cases": len(frame),
                    "prepare_s": float(frame.prepare_seconds.iloc[0]), "edit_s": float(frame.edit_seconds.mean()),
                    "edit_peak_mb_median": float(peak.median()) if len(peak) else np.nan,
                    "edit_peak_mb_max": float(peak.max()) if len(peak) else np.nan,
                    "eval_cases_per_s": float(1 / evals.mean()) if len(evals) else np.nan})
    return pd.DataFrame(out)


def ratio(rows_a: list[dict], rows_b: list[dict], field: str = "edit_seconds", n_boot: int = 1000,
          seed: int = 0) -> dict:
    """mean(a.field) / mean(b.field) with a 95% bootstrap CI (each run's cases resampled independently)."""
    a = np.array([r[field] for r in rows_a], dtype=float)
    b = np.array([r[field] for r in rows_b], dtype=float)
    if b.mean() <= 0:
        raise ValueError(f"{field} of the denominator averages {b.mean()}: no ratio")
    from ..metrics.aggregate import bootstrap
    low, high = bootstrap(lambda picks: a[picks[0]].mean() / b[picks[1]].mean(), [len(a), len(b)], n_boot, seed)
    return {"mean": float(a.mean() / b.mean()), "ci_low": low, "ci_high": high}


def paper_ratio(a: str, b: str, metric: str) -> float:
    """BalancEdit Table 5's a / b of `metric` (its text, §4.5); NaN where it reports one of them not."""
    from ..reference import paper_numbers
    ref = paper_numbers()

    def value(method):
        row = ref[(ref.paper == "balancedit") & (ref["item"].str.startswith("Table 5")) & (ref.method == method)
                  & (ref.metric == metric)]
        return float(row.value.iloc[0]) if len(row) else np.nan
    return value(a) / value(b)


# (a, b, the field of a / b, the papers' a / b where one reports both: BalancEdit Table 5's names for them)
PAIRS = [("UniKE", "FT (last layer)", "edit_seconds", None),
         ("T-Patcher", "FT (last layer)", "edit_seconds", None),
         ("GRACE", "BalancEdit", "edit_seconds", ("GRACE", "BalancEdit", "edit_seconds")),
         ("UniKE", "T-Patcher", "edit_seconds", None),
         ("MEND", "In-Context Editing", "prepare_seconds", ("MEND", "IKE", "pretrain_hours"))]


def ratio_table(rows_by_key: dict, backbones, task: str) -> tuple[pd.DataFrame, dict]:
    """Every pair of PAIRS that both ran, per backbone: (a table of ours beside the paper's ratio, backbone ->
    {"a / b": ratio with CI}). Prepare times are single measurements: their ratio has no interval."""
    from .tables import fmt_ci
    ratios, summaries = [], {}
    for backbone in backbones:
        for a, b, field, paper_of in PAIRS:
            rows_a, rows_b = rows_by_key.get((backbone, task, a)), rows_by_key.get((backbone, task, b))
            if rows_a is None or rows_b is None:
                continue
            if field == "prepare_seconds":
                value = rows_a[0][field] / rows_b[0][field]
                r = {"mean": value, "ci_low": value, "ci_high": value}
            else:
                r = ratio(rows_a, rows_b, field)
            paper = paper_ratio(*paper_of) if paper_of else None
            name = f"{a} / {b}"
            summaries.setdefault(backbone, {})[name] = r
            ratios.append({"backbone": backbone, "ratio": name, "of": field.replace("_", " "),
                           "ours": fmt_ci(r) if field != "prepare_seconds" else f"{r['mean']:.2f}",
                           "paper": f"{paper:.2f}" if paper == paper and paper is not None else "not reported"})
    return pd.DataFrame(ratios), summaries


def harness_table(backbones, task: str, n: int, seed: int = 0, data_dir=None, smoke: bool = False) -> pd.DataFrame:
    """`runners.throughput.evaluation_throughput` on `n` cases per backbone, one case and ten cases per pass."""
    from ..backbones.registry import load_backbone
    from ..runners.cases import load_cases
    from ..runners.throughput import evaluation_throughput
    from ..world.ensure import ensure_world
    harness = []
    for backbone in backbones:
        bb = load_backbone(backbone)
        root = data_dir or ensure_world(backbone, smoke=smoke, seed=seed, bb=bb)
        cases = load_cases(bb, root, task, n, seed)
        for group_size in (1, 10):
            r = evaluation_throughput(bb, cases, group_size=min(group_size, len(cases)))
            harness.append({"backbone": backbone, "cases per pass": r["group_size"],
                            "raw cases/s": r["raw_cases_per_s"], "harness cases/s": r["evaluate_cases_per_s"],
                            "share of raw": r["ratio"], "best of": r["repeats"]})
    return pd.DataFrame(harness)


def claims(summaries: dict, harness: pd.DataFrame, backbones) -> list[dict]:
    """The cost claims per backbone, decided from the ratios' CIs (`tables.verdict`) and, for the harness's design
    goal (at least 80% of raw forward throughput), from its best-of-N share at the largest pass."""
    from .sequential import as_summary
    from .tables import Claim, verdict
    verdicts = []
    for backbone in backbones:
        ours = {name: as_summary(ratio=r) for name, r in summaries.get(backbone, {}).items()}
        if "GRACE / BalancEdit" in ours:
            verdicts.append(verdict(Claim(f"BalancEdit edits faster than GRACE ({backbone})", "GRACE / BalancEdit",
                                          "ratio", "above", threshold=1.0,
                                          source="BalancEdit §4.5: 32.67 s vs 8.04 s per edit"), ours))
        if "MEND / In-Context Editing" in ours:
            verdicts.append(verdict(Claim(f"MEND's pre-training costs more than IKE's indexing ({backbone})",
                                          "MEND / In-Context Editing", "ratio", "above", threshold=1.0,
                                          source="BalancEdit §4.5: 22 h vs 12 h"), ours))
        share = harness[(harness.backbone == backbone)
                        & (harness["cases per pass"] == harness["cases per pass"].max())]
        value = float(share["share of raw"].iloc[0])
        verdicts.append({"claim": f"The evaluation harness keeps at least 80% of raw forward throughput ({backbone})",
                         "source": "this package's design goal (runners/evaluate.py)",
                         "verdict": "reproduced" if value >= 0.8 else "not reproduced",
                         "evidence": f"share of raw throughput {value:.2f} (best of {int(share['best of'].iloc[0])} "
                                     "interleaved timings each)"})
    return verdicts
