"""What the BalancEdit notebooks share: the paper's row names, its metric names, per-category results.

    >>> table = onestep_table(["tiny-blip2-opt"], ["okedit"], ["grace", "balancedit"], LABELS, n=100)  # doctest: +SKIP
    >>> as_paper_metrics(table.summaries[("tiny-blip2-opt", "okedit", "GRACE")]).loc["loc"]            # doctest: +SKIP

BalancEdit reports one locality, "Loc", measured on images: on OKEDIT the look-alike image (our `m_loc` on the
`okedit` task), on MMEdit the unrelated image (`m_loc`). Its HM is the harmonic mean of T-Gen, I-Gen (`m_gen`) and
that Loc, which is what `metrics.aggregate.summarize` computes as `hm`.
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from ..data.benchmarks import BENCHMARKS
from ..data.loaders import load_records
from ..editors.registry import SHORT_LABELS as LABELS  # noqa: F401  BalancEdit Table 3's row names ("Base", "FT")
from ..metrics.aggregate import METRICS as ROW_METRICS
from ..runners.cases import data_file

DATASETS = {name: b.paper_dataset for name, b in BENCHMARKS.items() if b.paper_dataset}  # task -> BalancEdit's column
from ..backbones.registry import PAPER_BACKBONE  # noqa: E402,F401  (each backbone's spec says it)
METRICS = ["rel", "t_gen", "m_gen", "loc", "hm"]


def as_paper_metrics(summary: pd.DataFrame) -> pd.DataFrame:
    """`summary` with BalancEdit's Loc (= our image locality `m_loc`) as a row named `loc`."""
    out = summary.copy()
    out.loc["loc"] = summary.loc["m_loc"]
    return out


def per_category(rows: list[dict], data_dir, task: str = "okedit", scale: float = 100.0) -> pd.DataFrame:
    """Mean of each metric per question category (OKEDIT's `category`; the world's `kind` on MMEdit-style data),
    one row per category with its number of cases."""
    records = load_records(data_file(data_dir, task))
    category = {str(r.extra.get("case_id")): getattr(r, "category", "") or r.extra.get("kind", "?") for r in records}
    frame = pd.DataFrame(rows)
    frame["category"] = frame.case_id.map(category)
    table = frame.groupby("category")[list(ROW_METRICS)].mean() * scale
    table.insert(0, "cases", frame.groupby("category").size())
    return table.sort_values("cases", ascending=False)


def similarity_verdict(text: str, rows_a: list[dict], rows_b: list[dict], metric: str, margin: float,
                       source: str = "", n_boot: int = 1000, seed: int = 0) -> dict:
    """"A and B give similar `metric`": the paired bootstrap 95% CI of A - B over the cases both ran (percent;
    `hm` from resampled means) lies inside ±margin -> reproduced; entirely outside -> not reproduced; else
    inconclusive.

        >>> similarity_verdict("cosine ~ Euclidean", euc_rows, cos_rows, "hm", 10.0)     # doctest: +SKIP
    """
    import numpy as np

    from ..metrics.aggregate import bootstrap, hm_from_means
    b_by_case = {r["case_id"]: r for r in rows_b}
    pairs = [(r, b_by_case[r["case_id"]]) for r in rows_a if r["case_id"] in b_by_case]
    if not pairs:
        raise ValueError("the two runs share no cases")
    a = np.array([[ra[m] for m in ROW_METRICS] for ra, _ in pairs], dtype=float) * 100
    b = np.array([[rb[m] for m in ROW_METRICS] for _, rb in pairs], dtype=float) * 100

    def stat(ia):
        ma, mb = dict(zip(ROW_METRICS, a[ia].mean(0))), dict(zip(ROW_METRICS, b[ia].mean(0)))
        if metric == "hm":
            return hm_from_means(ma) - hm_from_means(mb)
        column = "m_loc" if metric == "loc" else metric  # BalancEdit's Loc is our image locality
        return ma[column] - mb[column]
    low, high = bootstrap(lambda picks: stat(picks[0]), [len(pairs)], n_boot, seed)  # paired: one index, both runs
    observed = stat(np.arange(len(pairs)))
    result = ("reproduced" if -margin < low and high < margin else
              "not reproduced" if low >= margin or high <= -margin else "inconclusive")
    evidence = (f"{metric} difference {observed:+.1f} [{low:+.1f}, {high:+.1f}] over {len(pairs)} cases, "
                f"margin ±{margin:g}")
    return {"claim": text, "source": source, "verdict": result, "evidence": evidence}


@dataclasses.dataclass
class Ablation:
    """BalancEdit with one hparam at each of its values: the runs' rows and summaries, and the similarity verdicts."""
    rows: dict  # variant label -> results rows
    ours: dict  # variant label -> summary (BalancEdit's metrics, `as_paper_metrics`)
    verdicts: list[dict]  # "A and B give similar <metric>", per metric (`similarity_verdict`)
    n: int


def ablation(backbone: str, task: str, hparam: str, variants: dict, source: str, n: int = 100, seed: int = 0,
             data_dir=None, smoke: bool = False, margin: float = 10.0) -> Ablation:
    """One BalancEdit run per variant (label -> value of `hparam`) and the paper's "similar" claim of its first two
    on every metric: BalancEdit Tables 6 and 7.

        >>> ablation("tiny-blip2-opt", "okedit", "distance", {"Euclidean": "euclidean", "cosine": "cosine"},
        ...          "BalancEdit Table 6, §4.7").verdicts                                        # doctest: +SKIP
    """
    from ..editors.registry import SMOKE_HPARAMS
    from ..metrics.aggregate import summarize
    from ..runners.run import RunSpec, run
    from ..world.ensure import ensure_world, runs_dir
    n = 3 if smoke else n
    root = data_dir or str(ensure_world(backbone, smoke=smoke, seed=seed))
    rows, ours = {}, {}
    for label, value in variants.items():
        hparams = {**(SMOKE_HPARAMS["balancedit"] if smoke else {}), hparam: value}
        spec = RunSpec(editor="balancedit", backbone=backbone, task=task, n=n, seed=seed, data_dir=root,
                       hparams=hparams)
        rows[label] = run(spec, runs_dir=runs_dir(smoke), progress=False).rows
        ours[label] = as_paper_metrics(summarize(rows[label]))
    a, b = list(variants)[:2]
    verdicts = [similarity_verdict(f"{a} and {b} give similar {metric}", rows[a], rows[b], metric, margin, source)
                for metric in METRICS]
    return Ablation(rows, ours, verdicts, n)


def show_ablation(result: Ablation, table: str, what: str, backbone: str, task: str) -> None:
    """An ablation chapter's results: ours per variant (the paper's cells are not in its text) and mean ± CI bars
    (its verdicts, `result.verdicts`, go to `chapter.show_verdicts`).

        >>> show_ablation(ablation(...), "Table 6", "distance", "tiny-blip2-opt", "okedit")     # doctest: +SKIP
    """
    from IPython.display import display

    from .figures import mean_ci_bars, show_figure
    from .tables import side_by_side
    display(side_by_side(pd.DataFrame(columns=METRICS), result.ours, METRICS).style.set_caption(
        f"BalancEdit, {backbone}, {task}, {result.n} cases (the paper's cells for this table are not in the text we "
        "have)"))
    mean_ci_bars({(table, backbone): result.ours}, METRICS, [backbone])
    show_figure(f"BalancEdit with the {' and with the '.join(result.ours)} {what}, per metric, with 95% CIs.")
