"""Aggregates over results rows: means with bootstrap 95% CIs (resampling cases), and BalancEdit's HM.

    >>> round(harmonic_mean([96.58, 97.77, 68.82]), 1)   # BalancEdit Table 3, MEND, MiniGPT-4, MMEDIT: 85.43
    85.4
    >>> summary = summarize(rows)                       # doctest: +SKIP
    >>> summary.loc["rel", ["mean", "ci_low", "ci_high"]]   # doctest: +SKIP

`hm` is the harmonic mean of T-Gen, I-Gen (= `m_gen`) and Loc, as BalancEdit defines it. BalancEdit reports one
"Loc", measured on images (unrelated and look-alike pictures), so `hm` takes `m_loc` by default; `hm_locality`
selects `t_loc` or the mean of both instead.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

METRICS = ("rel", "t_gen", "m_gen", "t_loc", "m_loc")  # the five scores of every row: the one place they are named
HM_LOCALITY = ("m_loc", "t_loc", "mean")
N_BOOTSTRAP = 1000


def harmonic_mean(values) -> float:
    """NaN when a score is missing (NaN: a metric the benchmark does not score)."""
    values = np.asarray(values, dtype=float)
    if np.any(np.isnan(values)):
        return float("nan")
    if np.any(values < 0):
        raise ValueError("the harmonic mean takes non-negative scores")
    if np.any(values == 0):
        return 0.0
    return float(len(values) / np.sum(1.0 / values))


def hm_from_means(means: dict, hm_locality: str = "m_loc") -> float:
    if hm_locality not in HM_LOCALITY:
        raise ValueError(f"hm_locality is one of {HM_LOCALITY}; got {hm_locality!r}")
    loc = (means["t_loc"] + means["m_loc"]) / 2 if hm_locality == "mean" else means[hm_locality]
    return harmonic_mean([means["t_gen"], means["m_gen"], loc])


def bootstrap(statistic, sizes, n_boot: int = N_BOOTSTRAP, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """The package's one bootstrap: the percentile CI of `statistic(picks)`, where `picks` holds one index array
    per sample (`sizes[i]` units each), every sample resampled with replacement independently, in order.
    A mean over cases is `bootstrap(lambda p: x[p[0]].mean(), [len(x)])`; a ratio of two runs
    `bootstrap(lambda p: a[p[0]].mean() / b[p[1]].mean(), [len(a), len(b)])`; a paired difference resamples one
    index into both runs.

        >>> bootstrap(lambda p: np.arange(10.0)[p[0]].mean(), [10], n_boot=200)
        (2.9, 6.4)
    """
    if not sizes or min(sizes) == 0:
        raise ValueError("no cases to bootstrap")
    rng = np.random.default_rng(seed)
    stats = np.array([statistic([rng.integers(0, n, size=n) for n in sizes]) for _ in range(n_boot)])
    tail = (1 - level) / 2 * 100
    return float(np.percentile(stats, tail)), float(np.percentile(stats, 100 - tail))


def bootstrap_ci(values, statistic=np.mean, n_boot: int = N_BOOTSTRAP, seed: int = 0,
                 level: float = 0.95, groups=None) -> tuple[float, float]:
    """Percentile CI of `statistic` over cases resampled with replacement (rows of `values`); with `groups` (one
    label per row), whole groups are resampled instead (a cluster bootstrap: a sequence's cases share its edits)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        raise ValueError("no cases to bootstrap")
    if groups is None:
        return bootstrap(lambda picks: statistic(values[picks[0]]), [len(values)], n_boot, seed, level)
    labels = np.asarray(groups)
    if len(labels) != len(values):
        raise ValueError(f"{len(labels)} group labels for {len(values)} rows")
    members = [np.flatnonzero(labels == g) for g in dict.fromkeys(labels.tolist())]
    return bootstrap(lambda picks: statistic(values[np.concatenate([members[j] for j in picks[0]])]),
                     [len(members)], n_boot, seed, level)


def check_one_protocol(rows: list[dict]) -> tuple[str, str]:
    """The (accuracy, locality) protocol shared by all rows; ValueError if they mix protocols."""
    found = {(r["accuracy_protocol"], r["locality_protocol"]) for r in rows}
    if len(found) != 1:
        raise ValueError(f"rows mix metric protocols {sorted(found)}; aggregate each protocol separately")
    return found.pop()


BY = ("case", "group")


def resampling_groups(rows: list[dict], by: str):
    """What the bootstrap resamples: None for cases, else each row's sequence (`group`)."""
    if by not in BY:
        raise ValueError(f"by is one of {BY}; got {by!r}")
    return None if by == "case" else [r["group"] for r in rows]


def check_one_metric_set(rows: list[dict]) -> None:
    """ValueError when some rows score a metric and others do not (a benchmark's rows hold None, in every row, for
    the metrics it does not score)."""
    for metric in METRICS:
        if len({r[metric] is None for r in rows}) > 1:
            raise ValueError(f"some rows score {metric} and others do not: aggregate each benchmark separately")


def summarize(rows: list[dict], hm_locality: str = "m_loc", n_boot: int = N_BOOTSTRAP, seed: int = 0,
              scale: float = 100.0, by: str = "case") -> pd.DataFrame:
    """Per metric (rel, t_gen, m_gen, t_loc, m_loc, hm): mean and 95% CI, in percent by default. The CI resamples
    cases (`by="case"`) or whole sequences (`by="group"`, for sequential and cross-task runs). A metric the rows'
    benchmark does not score is NaN, and so is `hm` when it needs one."""
    check_one_protocol(rows)
    check_one_metric_set(rows)
    groups = resampling_groups(rows, by)
    matrix = np.array([[r[m] for m in METRICS] for r in rows], dtype=float) * scale  # None (not scored) -> NaN
    out = {}
    for j, metric in enumerate(METRICS):
        low, high = bootstrap_ci(matrix[:, j], n_boot=n_boot, seed=seed, groups=groups)
        out[metric] = (matrix[:, j].mean(), low, high)

    def hm_stat(block):
        return hm_from_means(dict(zip(METRICS, block.mean(0))), hm_locality)
    low, high = bootstrap_ci(matrix, hm_stat, n_boot=n_boot, seed=seed, groups=groups)
    out["hm"] = (hm_stat(matrix), low, high)
    frame = pd.DataFrame(out, index=["mean", "ci_low", "ci_high"]).T
    frame["n"] = len(rows)
    return frame


AVERAGES = {"generality": ("t_gen", "m_gen"), "locality": ("t_loc", "m_loc")}  # UniKE Table 5, Figure 4


def summarize_with_averages(rows: list[dict], n_boot: int = N_BOOTSTRAP, seed: int = 0,
                            scale: float = 100.0, by: str = "case") -> pd.DataFrame:
    """summarize() plus UniKE's averaged metrics: generality = (T-Gen + M-Gen) / 2 and locality =
    (T-Loc + M-Loc) / 2 per case, with their own bootstrap CIs.

        >>> summarize_with_averages(rows).loc["locality", "mean"]                      # doctest: +SKIP
    """
    frame = summarize(rows, n_boot=n_boot, seed=seed, scale=scale, by=by)
    for name, parts in AVERAGES.items():
        values = np.array([np.mean(np.array([r[p] for p in parts], dtype=float)) for r in rows]) * scale
        low, high = bootstrap_ci(values, n_boot=n_boot, seed=seed, groups=resampling_groups(rows, by))
        frame.loc[name] = [values.mean(), low, high, len(rows)]
    return frame


def format_summary(frame: pd.DataFrame) -> str:
    """`rel  98.5 [96.0, 100.0]` lines, one per metric."""
    return "\n".join(f"{m:6s} {r['mean']:6.1f} [{r['ci_low']:5.1f}, {r['ci_high']:5.1f}]"
                     for m, r in frame.iterrows())
