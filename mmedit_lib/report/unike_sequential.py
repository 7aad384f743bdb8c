"""UniKE's sequential tables: Table 2 (K = 10 and 20) and Table 3 (cross-task). Their paper cells, figures, the
claims of §4.3 and §4.4 decided from the runs, the table of UniKE's parts and the reading of Table 2's verdicts.

    >>> table = sequential_table("tiny-minigpt4", ["vqa", "caption"], [10, 20], editors, paper=("unike", "Table 2"))
    ... # doctest: +SKIP
    >>> verdicts, declines = table2_claims(table, ["vqa", "caption"], [10, 20])               # doctest: +SKIP
    >>> display(Markdown(table2_reading(table, ["vqa", "caption"], [10, 20], declines)))     # doctest: +SKIP
    >>> table3_claims(cross, single)                        # cross-task and single-task K = 10 tables  # doctest: +SKIP

Every claim is stated here once, as strong as the paper's sentence (§4.3 (i)-(iii), §4.4) and its numbers, and
decided by `tables.verdict` on CIs over sequences (`sequential.contrast`). Three are decided by a rule of their own,
said where they are made: "most methods decline" and "most baselines struggle" (`majority`: more than half of the
per-method verdicts), and "SERAC's generality is minimally affected" (the CI of its change inside ±5 points).
"""
from __future__ import annotations

import pandas as pd

from ..reference import paper_table
from .onestep import ROW_METRICS as METRICS
from .sequential import SCORES as SCORE_PARTS, SequentialTable, as_summary, cell, contrast
from .tables import Claim, fmt_ci, verdict

ITEMS = {("vqa", 0): "Table 2(a)", ("vqa", 1): "Table 2(b)", ("caption", 0): "Table 2(c)", ("caption", 1): "Table 2(d)"}
SCORES = ["rel", "generality", "locality", "overall"]
PARTS = {"UniKE": {}, "without the latent memory": {"external": "none"},
         "without the key-value pairs": {"intrinsic": False},
         "without the β·ζ' shift of the values": {"zeta": "none"}}


def majority(claim: str, source: str, verdicts: list[dict], of: str) -> dict:
    """"Most X do Y": reproduced when more than half of the per-X verdicts are, not reproduced when more than half
    are not, else inconclusive."""
    counts = pd.Series([v["verdict"] for v in verdicts]).value_counts()
    half = len(verdicts) / 2
    return {"claim": claim, "source": source,
            "verdict": "reproduced" if counts.get("reproduced", 0) > half else
                       "not reproduced" if counts.get("not reproduced", 0) > half else "inconclusive",
            "evidence": ", ".join(f"{n} {name}" for name, n in counts.items()) + f" of {len(verdicts)} {of}"}


def paper_cells(tasks, ks) -> dict:
    """(task, K) -> the paper's cell for the i-th K (Table 2(a)-(d): K = 10 and 20 of E-VQA and E-IC)."""
    return {(task, k): paper_table("unike", ITEMS[(task, i)]) for task in tasks for i, k in enumerate(ks)}


def methods_of(table: SequentialTable) -> list[str]:
    return list(dict.fromkeys(m for (_, _, m) in table.summaries))


def table2_figure(table: SequentialTable, tasks, ks):
    """Each method's scores against K, ours solid with 95% CIs over sequences, the paper's dashed; returns the
    figure (show it with `figures.show_figure`)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from .figures import ci_line
    methods = methods_of(table)
    palette = dict(zip(methods, sns.color_palette("tab10", len(methods))))
    fig, axes = plt.subplots(len(tasks), len(SCORES), figsize=(3.3 * len(SCORES), 3.0 * len(tasks)), squeeze=False)
    for r, task in enumerate(tasks):
        paper = [paper_table("unike", ITEMS[(task, i)]) for i in range(len(ks))]
        for c, score in enumerate(SCORES):
            ax = axes[r][c]
            for method in methods:
                stats = [contrast([(table.rows[(task, f"seq-{k}", method)], 1)], score) for k in ks]
                frame = pd.DataFrame({"K": ks, score: [s["mean"] for s in stats],
                                      f"{score}_low": [s["ci_low"] for s in stats],
                                      f"{score}_high": [s["ci_high"] for s in stats]})
                ci_line(ax, frame, "K", score, color=palette[method], label=method, capsize=2)
                if method in paper[0].index:
                    parts = list(SCORE_PARTS[score])
                    ax.plot(ks, [p.loc[method, parts].mean() for p in paper], ls="--", color=palette[method],
                            alpha=0.6)
            ax.set_title(f"{task}: {score}")
            ax.set_xticks(ks)
            ax.set_xlabel("K")
            ax.set_ylim(0, 105)
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.suptitle("Sequential editing: ours (solid, 95% CI) and UniKE Table 2 (dashed)", y=1.01)
    fig.tight_layout()
    return fig


def _table2_inputs(table: SequentialTable, tasks, ks):
    """What Table 2's claims and its reading both start from: (the runs, the smallest and largest K, the methods
    run, the paper's cells, `paper_overall(task, k, method)`: the paper's mean of the five metrics)."""
    k_lo, k_hi = ks[0], ks[-1]
    rows = table.rows
    methods_ran = [m for m in methods_of(table) if (tasks[0], f"seq-{k_lo}", m) in rows]
    paper_of = paper_cells(tasks, ks)

    def paper_overall(task, k, method):
        return paper_of[(task, k)].loc[method, METRICS].mean()
    return rows, k_lo, k_hi, methods_ran, paper_of, paper_overall


def table2_claims(table: SequentialTable, tasks, ks) -> tuple[list[dict], list[dict]]:
    """(every verdict of §4.3, the per-method decline verdicts among them), decided from `table`'s runs at the
    smallest and the largest K."""
    rows, k_lo, k_hi, methods_ran, paper_of, paper_overall = _table2_inputs(table, tasks, ks)

    def with_overall(task, k):
        return {m: pd.concat([s, as_summary(overall=contrast([(rows[(task, f"seq-{k}", m)], 1)], "overall"))])
                for m, s in cell(table, task, f"seq-{k}").items()}

    verdicts, declines = [], []
    for task in tasks:
        for method in methods_ran:
            d = contrast([(rows[(task, f"seq-{k_lo}", method)], 1), (rows[(task, f"seq-{k_hi}", method)], -1)],
                         "overall")
            claim = Claim(f"{method} declines from K={k_lo} to K={k_hi} ({task}, mean of the five metrics)",
                          method, "overall", "above", threshold=0.0,
                          source=f"UniKE §4.3 (i); Table 2: {method} {paper_overall(task, k_lo, method):.1f} -> "
                                 f"{paper_overall(task, k_hi, method):.1f}")
            v = verdict(claim, {method: as_summary(overall=d)})
            v["evidence"] = f"decline {fmt_ci(d)} points"
            declines.append(v)
    verdicts += declines
    verdicts.append(majority("Most methods decline as K grows (UniKE §4.3 (i))", "UniKE Table 2", declines,
                             "method x task declines"))
    for task in tasks:
        if "SERAC" in methods_ran:
            g = contrast([(rows[(task, f"seq-{k_lo}", "SERAC")], 1), (rows[(task, f"seq-{k_hi}", "SERAC")], -1)],
                         "generality")
            inside, outside = g["ci_low"] > -5 and g["ci_high"] < 5, g["ci_low"] > 5 or g["ci_high"] < -5
            verdicts.append({"claim": f"SERAC's generality is minimally affected by K ({task}, change within ±5)",
                             "source": "UniKE §4.3 (ii)", "verdict": "reproduced" if inside else
                             "not reproduced" if outside else "inconclusive",
                             "evidence": f"generality K={k_lo} minus K={k_hi}: {fmt_ci(g)}"})
        for k in ks:
            ours = with_overall(task, k)
            stated = []
            if "SERAC" in ours and "UniKE" in ours:
                stated.append(Claim(f"SERAC lacks locality: its M-Loc is below UniKE's ({task}, K={k})", "SERAC",
                                    "m_loc", "below", other_method="UniKE",
                                    source=f"UniKE §4.3 (ii); Table 2: SERAC "
                                           f"{paper_of[(task, k)].loc['SERAC', 'm_loc']} vs UniKE "
                                           f"{paper_of[(task, k)].loc['UniKE', 'm_loc']}"))
            if "UniKE" in ours and "MEND" in ours:
                stated += [Claim(f"UniKE outperforms MEND on {m} ({task}, K={k})", "UniKE", m, "above",
                                 other_method="MEND", source=f"UniKE §4.3 (iii); Table 2: "
                                 f"{paper_of[(task, k)].loc['UniKE', m]} vs {paper_of[(task, k)].loc['MEND', m]}")
                           for m in METRICS]
                best = max((m for m in ours if m != "UniKE"), key=lambda m: ours[m].loc["overall", "mean"])
                stated.append(Claim(f"UniKE stays ahead of every baseline (mean of the five metrics; best baseline "
                                    f"here: {best}) ({task}, K={k})", "UniKE", "overall", "above", other_method=best,
                                    source="UniKE §4.3 (iii)"))
            verdicts += [verdict(c, ours) for c in stated]
        if "UniKE" in methods_ran and "MEND" in methods_ran:
            lead = contrast([(rows[(task, f"seq-{k_hi}", "UniKE")], 1), (rows[(task, f"seq-{k_hi}", "MEND")], -1),
                             (rows[(task, f"seq-{k_lo}", "UniKE")], -1), (rows[(task, f"seq-{k_lo}", "MEND")], 1)],
                            "overall")
            paper_lead = [paper_overall(task, k, "UniKE") - paper_overall(task, k, "MEND") for k in (k_lo, k_hi)]
            v = verdict(Claim(f"UniKE's lead over MEND grows with K ({task}, mean of the five metrics)", "lead",
                              "overall", "above", threshold=0.0,
                              source=f"UniKE §4.3 (iii); Table 2: lead {paper_lead[0]:.1f} -> {paper_lead[1]:.1f}"),
                        {"lead": as_summary(overall=lead)})
            v["evidence"] = f"lead at K={k_hi} minus lead at K={k_lo}: {fmt_ci(lead)} points"
            verdicts.append(v)
    return verdicts, declines


def table2_parts(backbone: str, task: str, k: int, n: int, seed: int = 0, data_dir=None, smoke: bool = False):
    """UniKE at K with each of its parts switched off: (a table of rel, generality and locality with 95% CIs over
    sequences, a sentence naming the part whose removal keeps locality best)."""
    from .onestep import variant_rows
    runs = variant_rows(backbone, task, PARTS, n=n, seed=seed, data_dir=data_dir, smoke=smoke, setting="seq", k=k)
    table = pd.DataFrame([{"variant": label, **{score: fmt_ci(contrast([(r, 1)], score))
                                                for score in ("rel", "generality", "locality")}}
                          for label, r in runs.items()])
    loc = {label: contrast([(r, 1)], "locality") for label, r in runs.items()}
    culprit = min(("without the latent memory", "without the key-value pairs"), key=lambda label: -loc[label]["mean"])
    sentence = (f"Locality is highest {culprit} ({fmt_ci(loc[culprit])}, against {fmt_ci(loc['UniKE'])} for the full "
                "method): the part switched off there is the one that costs locality as edits accumulate.")
    return table, sentence


def table2_reading(table: SequentialTable, tasks, ks, declines: list[dict]) -> str:
    """The verdicts read as Markdown bullets: how many declines are significant against the paper's, and which
    method leads each (task, K) cell."""
    rows, k_lo, k_hi, methods_ran, paper_of, paper_overall = _table2_inputs(table, tasks, ks)
    ranked = {(task, k): sorted(((contrast([(rows[(task, f"seq-{k}", m)], 1)], "overall")["mean"], m)
                                 for m in methods_ran), reverse=True) for task in tasks for k in (k_lo, k_hi)}
    declined = [v for v in declines if v["verdict"] == "reproduced"]
    paper_drops = [paper_overall(t, k_lo, m) - paper_overall(t, k_hi, m) for t in tasks for m in methods_ran
                   if m in paper_of[(t, k_lo)].index]
    our_drops = [contrast([(rows[(t, f"seq-{k_lo}", m)], 1), (rows[(t, f"seq-{k_hi}", m)], -1)], "overall")["mean"]
                 for t in tasks for m in methods_ran]
    lines = [f"- **Declines**: {len(declined)} of {len(declines)} method × task declines from K = {k_lo} to "
             f"{k_hi} are significant here. Of the mean of the five metrics, the paper's Table 2 loses "
             f"{min(paper_drops):.1f} to {max(paper_drops):.1f} points per method and task, ours "
             f"{min(our_drops):.1f} to {max(our_drops):.1f}."]
    for (task, k), order in ranked.items():
        lines.append(f"- **{task}, K = {k}**: best overall {order[0][1]} ({order[0][0]:.1f}), then {order[1][1]} "
                     f"({order[1][0]:.1f}); UniKE {dict((m, v) for v, m in order).get('UniKE', float('nan')):.1f}.")
    if all(order[0][1] == "T-Patcher" for order in ranked.values()):
        lines.append("- T-Patcher is the best method in every cell here, where the paper has it below MEND and "
                     "UniKE. UniKE's intrinsic part adds FFN neurons trained with T-Patcher's losses too, but 10 per "
                     "edit and, on LLaMA, SwiGLU pairs (T-Patcher: one ReLU neuron per target token); the table of "
                     "UniKE's parts above shows which part its locality loss comes from. Which of those differences "
                     "matters is not tested here.")
    return "\n".join(lines)


def table3_scores(cross: SequentialTable, single: SequentialTable, scores=SCORES) -> pd.DataFrame:
    """One row per (method, score, setting): the cross-task run, and the mean of the method's single-task K = 10
    runs on E-VQA and E-IC, each a mean with its 95% CI over sequences."""
    long = []
    for method in cell(cross, "cross-task", "cross-task"):
        for score in scores:
            c = contrast([(cross.rows[("cross-task", "cross-task", method)], 1)], score)
            s = contrast([(single.rows[(t, "seq-10", method)], 0.5) for t in ("vqa", "caption")], score)
            long += [{"method": method, "score": score, "setting": "cross-task", **c},
                     {"method": method, "score": score, "setting": "single-task (mean of E-VQA, E-IC)", **s}]
    return pd.DataFrame(long)


def table3_claims(cross: SequentialTable, single: SequentialTable) -> list[dict]:
    """UniKE §4.4: UniKE ahead of every baseline and of MEND on the cross-task sequences; each baseline struggles
    (its cross-task score below its single-task K = 10 mean), and most do."""
    paper = paper_table("unike", "Table 3")
    ours = cell(cross, "cross-task", "cross-task")
    ours_x = {m: pd.concat([s, as_summary(overall=contrast([(cross.rows[("cross-task", "cross-task", m)], 1)],
                                                           "overall"))])
              for m, s in ours.items()}
    baselines = [m for m in ours if m != "UniKE"]
    verdicts = []
    if "UniKE" in ours:
        for score in ("rel", "generality", "locality"):
            best = max(baselines, key=lambda m: ours_x[m].loc[score, "mean"])
            verdicts.append(verdict(Claim(f"UniKE outperforms every baseline on {score} (best baseline here: {best})",
                                          "UniKE", score, "above", other_method=best, source="UniKE §4.4, Table 3"),
                                    ours_x))
        if "MEND" in ours:
            verdicts += [verdict(Claim(f"UniKE outperforms MEND on {m}", "UniKE", m, "above", other_method="MEND",
                                       source=f"UniKE Table 3: {paper.loc['UniKE', m]} vs {paper.loc['MEND', m]}"),
                                 ours_x) for m in METRICS]
    struggle = []
    for method in baselines:
        d = contrast([(single.rows[(t, "seq-10", method)], 0.5) for t in ("vqa", "caption")]
                     + [(cross.rows[("cross-task", "cross-task", method)], -1)], "overall")
        v = verdict(Claim(f"{method} struggles to edit both tasks in one sequence (cross-task below its single-task "
                          f"K=10 mean)", method, "overall", "above", threshold=0.0, source="UniKE §4.4"),
                    {method: as_summary(overall=d)})
        v["evidence"] = f"single-task minus cross-task: {fmt_ci(d)} points"
        struggle.append(v)
    verdicts += struggle
    verdicts.append(majority("Most baselines struggle to edit both tasks within a single sequence", "UniKE §4.4",
                             struggle, "baselines"))
    return verdicts
