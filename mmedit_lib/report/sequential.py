"""Sequential and cross-task runs for a table (UniKE Tables 2 and 3), and the methods that cannot take part.

    >>> table = sequential_table("tiny-minigpt4", ["vqa"], [10, 20], ["ft-last", "ike", "unike"], n=100)
    ... # doctest: +SKIP
    >>> table.summaries[("vqa", "seq-10", "UniKE")].loc["rel", "mean"]                 # doctest: +SKIP
    >>> table.not_applicable                      # {"In-Context Editing": "does not support sequential editing: ..."}
    ... # doctest: +SKIP

Sequences are drawn deterministically from the eval split (n cases by the seed, K at a time, in record order);
every case of a sequence is scored after the sequence's K-th edit, locality against the unedited model, and the
metrics average over all cases of all sequences (UniKE Appendix B.2, Eqs. 16-20). Cross-task sequences hold
5 E-VQA and 5 E-IC cases, pooled (Appendix B.3).

CIs resample *sequences*, not cases: the cases of one sequence share its K edits and are not independent.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ..editors.registry import make_hparams, sequential_problem
from ..metrics.aggregate import AVERAGES, METRICS, bootstrap, summarize_with_averages
from ..metrics.provenance import resolve_protocols
from ..runners.run import CROSS_TASK_K, RunSpec, run
from ..world.ensure import ensure_world, runs_dir
from .onestep import LABELS, SMOKE_HPARAMS


@dataclasses.dataclass
class SequentialTable:
    summaries: dict  # (task, setting label, method label) -> summarize_with_averages(rows, by="group")
    runs: pd.DataFrame  # one row per run: ids, reuse, sequences, times
    not_applicable: dict  # method label -> why it cannot keep several edits
    rows: dict = dataclasses.field(default_factory=dict)  # (task, setting label, method label) -> results rows


def why_not_sequential(editor: str, backbone: str, hparams: dict | None = None) -> str | None:
    """Why `editor` (with `backbone`'s hparams and `hparams`) cannot keep several edits at once; None when it can."""
    return sequential_problem(editor, make_hparams(editor, backbone, **(hparams or {})))


def settings_of(tasks, ks) -> list[tuple[str, str, int]]:
    """(task, run setting, K) for each task × K; the task "cross-task" has K = 10 only."""
    out = []
    for task in tasks:
        if task == "cross-task":
            out.append((task, "cross-task", CROSS_TASK_K))
        else:
            out += [(task, "seq", k) for k in ks]
    return out


def label_of(setting: str, k: int) -> str:
    return "cross-task" if setting == "cross-task" else f"seq-{k}"


def sequential_table(backbone: str, tasks, ks, editors, n: int = 100, seed: int = 0, labels=LABELS,
                     data_dir=None, smoke: bool = False, bb=None, reuse_only: bool = False,
                     accuracy_protocol="tf-token", locality_protocol="answer-argmax",
                     paper: tuple[str, str] | None = None) -> SequentialTable:
    """Sequential (and cross-task) runs of every editor that keeps several edits, each scored with its protocols
    (a name for all, or "paper" with `paper=(paper, item)`: `metrics.provenance`, as `onestep.onestep_table`).

        >>> sequential_table("tiny-minigpt4", ["vqa"], [10], ["mend", "unike"], locality_protocol="paper",
        ...                  paper=("unike", "Table 2")).runs.locality_protocol                # doctest: +SKIP
    """
    from ..backbones.registry import load_backbone
    protocols = resolve_protocols(editors, accuracy_protocol, locality_protocol, paper)
    bb = bb or load_backbone(backbone)
    root = data_dir or ensure_world(backbone, smoke=smoke, seed=seed, bb=bb)
    summaries, runs, not_applicable, all_rows = {}, [], {}, {}
    for editor in editors:
        hparams = SMOKE_HPARAMS.get(editor, {}) if smoke else {}
        reason = why_not_sequential(editor, backbone, hparams)
        if reason:
            not_applicable[labels[editor]] = reason
            continue
        for task, setting, k in settings_of(tasks, ks):
            accuracy, locality = protocols[editor]
            spec = RunSpec(editor=editor, backbone=backbone, task=task, setting=setting, k=k, n=n, seed=seed,
                           accuracy_protocol=accuracy, locality_protocol=locality, data_dir=str(root),
                           hparams=hparams)
            result = run(spec, bb=bb, runs_dir=runs_dir(smoke), progress=False, reuse_only=reuse_only)
            key = (task, label_of(setting, k), labels[editor])
            summaries[key] = summarize_with_averages(result.rows, by="group")
            all_rows[key] = result.rows
            frame = pd.DataFrame(result.rows)
            runs.append({"task": task, "setting": key[1], "editor": editor, "run": result.run_id,
                         "accuracy_protocol": accuracy, "locality_protocol": locality,
                         "sequences": frame.group.nunique(), "rows": len(frame), "reused": result.reused,
                         "prepare_s": float(frame.prepare_seconds.iloc[0]), "edit_s": float(frame.edit_seconds.mean())})
    return SequentialTable(summaries, pd.DataFrame(runs), not_applicable, all_rows)


def cell(table: SequentialTable, task: str, setting: str) -> dict:
    """method label -> summary for one (task, setting)."""
    return {m: s for (t, st, m), s in table.summaries.items() if t == task and st == setting}


def with_not_applicable(frame: pd.DataFrame, not_applicable: dict) -> pd.DataFrame:
    """`frame` (a side-by-side table) with one row per method that cannot edit sequentially, saying why."""
    extra = pd.DataFrame({column: [f"n/a: {why}" if column[1] == "ours" else "–" for why in not_applicable.values()]
                          for column in frame.columns}, index=list(not_applicable))
    extra.columns = frame.columns
    return pd.concat([frame, extra])


SCORES = {**{metric: (metric,) for metric in METRICS}, **AVERAGES,
          "overall": METRICS}  # a case's score: the mean of these metrics


def _units(rows: list[dict], score: str, by: str) -> list[np.ndarray]:
    """The resampling units of a run: per sequence (`by="group"`) or per case, each case's `score` in percent."""
    parts = SCORES[score]
    units: dict = {}
    for i, r in enumerate(rows):
        units.setdefault(r["group"] if by == "group" else i, []).append(100 * np.mean([r[p] for p in parts]))
    return [np.asarray(v) for v in units.values()]


def contrast(terms, score: str, by: str = "group", n_boot: int = 1000, seed: int = 0) -> dict:
    """Σ weight × mean `score` over `terms` [(rows, weight), ...] (percent), with a 95% CI that resamples each
    run's sequences (or cases) independently: a difference is [(a, 1), (b, -1)], an average [(r, 1/n), ...].

        >>> contrast([(rows_k10, 1), (rows_k20, -1)], "overall")    # the decline from K = 10 to K = 20
        ... # doctest: +SKIP
    """
    runs = [(_units(rows, score, by), weight) for rows, weight in terms]

    def value(picks):
        return sum(w * np.concatenate([u[i] for i in pick]).mean() for (u, w), pick in zip(runs, picks))
    low, high = bootstrap(value, [len(u) for u, _ in runs], n_boot, seed)
    return {"mean": float(value([range(len(u)) for u, _ in runs])), "ci_low": low, "ci_high": high}


def as_summary(**contrasts) -> pd.DataFrame:
    """name -> contrast, as a summary frame (rows = names; mean, ci_low, ci_high) that `tables.verdict` reads."""
    return pd.DataFrame(contrasts).T[["mean", "ci_low", "ci_high"]]

