"""One-step runs for a table: every (backbone, task, editor) run (or reused), summarised per method.

    >>> table = onestep_table(["tiny-blip2-opt"], ["vqa"], ["unedited", "mend"], LABELS, n=200)   # doctest: +SKIP
    >>> table.summaries[("tiny-blip2-opt", "vqa", "MEND")].loc["rel", "mean"]                     # doctest: +SKIP

The table notebooks (MMEdit Table 2, UniKE Table 1) share their runs: the same parameters give the same run key,
so a run computed for one is reused by the other.

Protocols: a name scores every editor with it; "paper" with `paper=(paper, item)` scores each editor with the
protocols its row of that paper table was scored with (`metrics.provenance`), e.g. MMEdit's MEND with `topk-all`
and its IKE with `answer-argmax`; a dict editor -> name sets them one by one. Every run records its own.
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from ..editors.registry import LABELS, SHORT_LABELS, SMOKE_HPARAMS  # noqa: F401  (the editors' specs say them)
from ..metrics.aggregate import METRICS, summarize, summarize_with_averages
from ..metrics.provenance import resolve_protocols
from ..runners.run import RunSpec, run
from ..world.ensure import ensure_world, runs_dir


@dataclasses.dataclass
class OneStepTable:
    summaries: dict  # (backbone, task, label) -> summarize(rows)
    runs: pd.DataFrame  # one row per run: ids, reuse, prepare and edit times
    rows: dict = dataclasses.field(default_factory=dict)  # (backbone, task, label) -> the run's results rows


def onestep_table(backbones, tasks, editors, labels=LABELS, n=200, seed=0, accuracy_protocol="tf-token",
                  locality_protocol="answer-argmax", data_dir=None, smoke=False, reuse_only=False,
                  paper: tuple[str, str] | None = None) -> OneStepTable:
    """One-step runs of every (backbone, task, editor), each scored with its protocols (see the module docstring).

        >>> onestep_table(["tiny-blip2-opt"], ["vqa"], ["mend", "ike"], accuracy_protocol="paper",
        ...               locality_protocol="paper", paper=("mmedit", "Table 2")).runs.locality_protocol
        ... # doctest: +SKIP
    """
    from ..backbones.registry import load_backbone
    protocols = resolve_protocols(editors, accuracy_protocol, locality_protocol, paper)
    summaries, runs, all_rows = {}, [], {}
    for backbone in backbones:
        bb = load_backbone(backbone)
        root = data_dir or ensure_world(backbone, smoke=smoke, seed=seed, bb=bb)
        for task in tasks:
            for editor in editors:
                accuracy, locality = protocols[editor]
                spec = RunSpec(editor=editor, backbone=backbone, task=task, n=n, seed=seed,
                               accuracy_protocol=accuracy, locality_protocol=locality,
                               data_dir=str(root), hparams=SMOKE_HPARAMS.get(editor, {}) if smoke else {})
                result = run(spec, bb=bb, runs_dir=runs_dir(smoke), progress=False, reuse_only=reuse_only)
                summaries[(backbone, task, labels[editor])] = summarize(result.rows)
                all_rows[(backbone, task, labels[editor])] = result.rows
                rows = pd.DataFrame(result.rows)
                runs.append({"backbone": backbone, "task": task, "editor": editor, "run": result.run_id,
                             "accuracy_protocol": accuracy, "locality_protocol": locality,
                             "rows": len(rows), "reused": result.reused,
                             "prepare_s": float(rows.prepare_seconds.iloc[0]) if "prepare_seconds" in rows else 0.0,
                             "edit_s": float(rows.edit_seconds.mean())})
    return OneStepTable(summaries, pd.DataFrame(runs), all_rows)


def for_cell(table: OneStepTable, backbone: str, task: str) -> dict:
    """label -> summary for one (backbone, task)."""
    return {m: s for (b, t, m), s in table.summaries.items() if b == backbone and t == task}


def variant_rows(backbone: str, task: str, variants: dict[str, dict], editor: str = "unike", n=50, seed=0,
                 data_dir=None, smoke=False, setting: str = "one-step", k: int = 1, bb=None,
                 accuracy_protocol="tf-token", locality_protocol="answer-argmax",
                 paper: tuple[str, str] | None = None) -> dict[str, list[dict]]:
    """label -> the results rows of a run of `editor` with each variant's hparams (a variant's "editor" entry, if
    any, names another editor), one-step or (`setting="seq"`, `k`) sequential, scored with the protocols resolved
    per editor as in `onestep_table`. Runs are reused by key, so notebooks that share a variant share its run.

        >>> variant_rows("tiny-minigpt4", "vqa", {"no latent memory": {"external": "none"}}, setting="seq", k=20)
        ... # doctest: +SKIP
    """
    from ..backbones.registry import load_backbone
    bb = bb or load_backbone(backbone)
    root = data_dir or ensure_world(backbone, smoke=smoke, seed=seed, bb=bb)
    out = {}
    for label, variant in variants.items():
        hparams = dict(variant)
        name = hparams.pop("editor", editor)
        hparams = {**(SMOKE_HPARAMS.get(name, {}) if smoke else {}), **hparams}
        accuracy, locality = resolve_protocols([name], accuracy_protocol, locality_protocol, paper)[name]
        spec = RunSpec(editor=name, backbone=backbone, task=task, setting=setting, k=k, n=n, seed=seed,
                       accuracy_protocol=accuracy, locality_protocol=locality, data_dir=str(root), hparams=hparams)
        out[label] = run(spec, bb=bb, runs_dir=runs_dir(smoke), progress=False).rows
    return out


def variant_runs(backbone: str, task: str, variants: dict[str, dict], editor: str = "unike", n=50, seed=0,
                 data_dir=None, smoke=False, **protocols) -> dict[str, pd.DataFrame]:
    """label -> summary (summarize_with_averages) of a one-step run of `editor` with each variant's hparams.

        >>> variant_runs("tiny-minigpt4", "vqa", {"only Intrin": {"external": "none"}, "UniKE": {}}, n=30)
        ... # doctest: +SKIP
    """
    rows = variant_rows(backbone, task, variants, editor, n, seed, data_dir, smoke, **protocols)
    return {label: summarize_with_averages(r) for label, r in rows.items()}


def hparam_sweep(backbone: str, task: str, editor: str, name: str, values, n=50, seed=0, data_dir=None,
                 smoke=False, protocols: dict | None = None, **fixed) -> pd.DataFrame:
    """One-step runs of `editor` with hparam `name` set to each of `values` (others as `fixed`): one row per value,
    mean and 95% CI of every metric (columns `<metric>`, `<metric>_low`, `<metric>_high`), in percent.
    `protocols` (accuracy_protocol, locality_protocol, paper) go to `variant_rows`.

        >>> hparam_sweep("tiny-blip2-opt", "vqa", "ike", "k", [0, 8, 32], n=50)      # doctest: +SKIP
    """
    summaries = variant_runs(backbone, task, {str(value): {**fixed, name: value} for value in values}, editor=editor,
                             n=n, seed=seed, data_dir=data_dir, smoke=smoke, **(protocols or {}))
    return sweep_frame(summaries, name, values)


def sweep_frame(summaries: dict[str, pd.DataFrame], name: str, values) -> pd.DataFrame:
    """One row per value: `name`, then every metric's mean, `_low` and `_high` (percent)."""
    rows = []
    for value, summary in zip(values, summaries.values()):
        row = {name: value}
        for metric, stats in summary.iterrows():
            row.update({metric: stats["mean"], f"{metric}_low": stats["ci_low"], f"{metric}_high": stats["ci_high"]})
        rows.append(row)
    return pd.DataFrame(rows)


ROW_METRICS = list(METRICS)  # a list: pandas reads a tuple in .loc as one key


def paper_comparisons(table: OneStepTable, backbones, tasks, paper: str, item: str,
                      metrics=ROW_METRICS) -> list[tuple[str, pd.DataFrame]]:
    """Per (backbone, task): a heading and the paper's rows beside ours (`tables.side_by_side`), the paper's
    backbone being the one each backbone stands for.

        >>> for heading, frame in paper_comparisons(table, ["tiny-blip2-opt"], ["vqa"], "mmedit", "Table 2"):
        ...     print(heading)                                                       # doctest: +SKIP
    """
    from ..backbones.registry import PAPER_BACKBONE
    from ..data.benchmarks import BENCHMARKS
    from ..reference import paper_table
    from .tables import side_by_side
    out = []
    for backbone in backbones:
        for task in tasks:
            stands_for = PAPER_BACKBONE.get(backbone) or backbone
            reference = paper_table(paper, item, backbone=stands_for, task=task)
            out.append((f"{backbone}, {BENCHMARKS[task].label} (paper: {paper_label(paper)} {item}, {stands_for})",
                        side_by_side(reference, for_cell(table, backbone, task), metrics)))
    return out


def show_comparisons(table: OneStepTable, backbones, tasks, paper: str, item: str, metrics=ROW_METRICS) -> None:
    """Display `paper_comparisons`: per (backbone, task) its heading and the paper's rows beside ours.

        >>> show_comparisons(table, ["tiny-blip2-opt"], ["vqa"], "mmedit", "Table 2")     # doctest: +SKIP
    """
    from IPython.display import Markdown, display
    for heading, frame in paper_comparisons(table, backbones, tasks, paper, item, metrics):
        display(Markdown(f"**{heading}**"))
        display(frame.style.set_caption(f"{paper_label(paper)} {item} reproduction: {heading}"))


def paper_label(paper: str) -> str:
    return {"mmedit": "MMEdit", "unike": "UniKE", "balancedit": "BalancEdit"}.get(paper, paper)


def onestep_figure(table: OneStepTable, title: str, metrics=ROW_METRICS):
    """Every method's mean and 95% CI per metric, one panel per (backbone, task) (`figures.mean_ci_bars`)."""
    from .figures import mean_ci_bars
    cells = {}
    for (backbone, task, method), summary in table.summaries.items():
        cells.setdefault(("one-step", f"{backbone}, {task}"), {})[method] = summary
    fig = mean_ci_bars(cells, metrics, [group for _, group in cells])
    fig.suptitle(title, y=1.0)
    return fig


def sweep_reading(sweep: pd.DataFrame, name: str, metric: str = "rel", what: str = "IKE's reliability") -> str:
    """What a sweep's ends say about `metric` (`hparam_sweep`'s frame): whether the last value's 95% interval lies
    below / above the first's, or they overlap. The one rule for a sweep's direction; the sentence a chapter shows.

        >>> sweep_reading(hparam_sweep("tiny-blip2-opt", "vqa", "ike", "k", [0, 8, 32]), "k")     # doctest: +SKIP
    """
    first, last = sweep.iloc[0], sweep.iloc[-1]
    subject = what[:1].upper() + what[1:]
    values = (f"{subject} with {name} = {first[name]:g}: {first[metric]:.1f}%; "
              f"with {name} = {last[name]:g}: {last[metric]:.1f}%. ")
    if last[f"{metric}_high"] < first[f"{metric}_low"]:
        return values + f"A larger {name} **lowers** {what} on this backbone (the intervals do not overlap)."
    if last[f"{metric}_low"] > first[f"{metric}_high"]:
        return values + f"A larger {name} **raises** {what} on this backbone (the intervals do not overlap)."
    return values + f"The intervals overlap: {name} does not clearly move {what} here."
