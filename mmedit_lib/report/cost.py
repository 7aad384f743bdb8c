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
