"""Figures with captions: a notebook shows a figure with `show_figure(caption)`; the book lays it out as a numbered
figure with that caption.

    >>> fig, ax = plt.subplots(); ax.plot([1, 2])                                 # doctest: +SKIP
    >>> show_figure("Reliability as K grows (95% CIs).")                          # doctest: +SKIP

The figure is displayed like `plt.show()` would (so it looks the same in JupyterLab), with the caption in the
output's metadata; `caption_figures` (run on each executed notebook when the book is built) gives every captioned
output a cell of its own with myst-nb's figure options, so the caption is rendered under it.
"""
from __future__ import annotations

import copy

CAPTION_KEY = "mmedit"


def show_figure(caption: str, fig=None) -> None:
    """Display `fig` (default: the current figure) with its caption, then close it."""
    import matplotlib.pyplot as plt
    from IPython.display import display
    fig = fig if fig is not None else plt.gcf()
    display(fig, metadata={CAPTION_KEY: {"caption": caption}})
    plt.close(fig)


def mean_ci_bars(cells: dict, metrics: list[str], groups: list[str], ax=None, methods=None):
    """Grouped bars of means with 95% CI lines: one panel row per group (a backbone), one bar per method and metric.

        >>> mean_ci_bars({("MMEdit Table 2", "tiny-llava"): {"MEND": summary}}, ["rel", "t_loc"], ["tiny-llava"])
        ... # doctest: +SKIP

    `cells` maps (anything, group) -> {method -> summary (rows: metrics; columns mean, ci_low, ci_high)}; a method
    seen in several cells of a group is drawn once (the first). Returns the figure."""
    import matplotlib.pyplot as plt
    import numpy as np
    by_group: dict = {g: {} for g in groups}
    for (_, group), summaries in cells.items():
        if group in by_group:
            for method, summary in summaries.items():
                by_group[group].setdefault(method, summary)
    names = methods or list(dict.fromkeys(m for g in groups for m in by_group[g]))
    fig, axes = plt.subplots(len(groups), 1, figsize=(11, 2.6 * len(groups)), sharex=True, squeeze=False)
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(metrics))
    for ax_, group in zip(axes[:, 0], groups):
        drawn = []
        for i, method in enumerate(names):
            summary = by_group[group].get(method)
            if summary is None:
                continue
            drawn.append(summary.loc[metrics])
            ax_.bar(x + (i - (len(names) - 1) / 2) * width, drawn[-1]["mean"], width, label=method)
        ci_on_bars(ax_, drawn)
        ax_.set_ylim(0, 105)
        ax_.set_ylabel(f"{group}\n%")
    axes[-1, 0].set_xticks(x, metrics)
    axes[0, 0].legend(ncol=min(len(names), 6), fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.02))
    fig.tight_layout()
    return fig


def ci_line(ax, frame, x: str, metric: str, **style):
    """One metric of a sweep (`onestep.sweep_frame`: columns x, metric, metric_low, metric_high) as a line of means
    with 95% CI error bars.

        >>> ci_line(ax, sweep_frame(runs, "K", ks), "K", "locality", linestyle="--", label="Locality")  # doctest: +SKIP
    """
    style = {"marker": "o", "capsize": 3, **style}
    return ax.errorbar(frame[x], frame[metric], yerr=[frame[metric] - frame[f"{metric}_low"],
                                                      frame[f"{metric}_high"] - frame[metric]], **style)


def ci_point(ax, summary, x_metric: str, y_metric: str, **style):
    """One method as a point (x_metric, y_metric) with its 95% CIs on both axes, from a summary (rows: metrics;
    columns mean, ci_low, ci_high).

        >>> ci_point(ax, ours["UniKE"], "t_gen", "t_loc", color="C0", label="UniKE")               # doctest: +SKIP
    """
    x, y = summary.loc[x_metric], summary.loc[y_metric]
    style = {"fmt": "o", "capsize": 3, **style}
    return ax.errorbar(x["mean"], y["mean"], xerr=[[x["mean"] - x["ci_low"]], [x["ci_high"] - x["mean"]]],
                       yerr=[[y["mean"] - y["ci_low"]], [y["ci_high"] - y["mean"]]], **style)


def ci_on_bars(ax, groups, mean: str = "mean", low: str = "ci_low", high: str = "ci_high") -> None:
    """95% CI lines on the bars drawn on `ax` (by seaborn, or `ax.bar`): `groups` holds one frame per bar container
    (a hue level), in the order they were drawn, its rows in the order of the bars; an empty frame (a method with no
    run there) draws nothing, any other frame whose length is not its container's is an error.

        >>> ax = sns.barplot(data=long, x="method", y="mean", hue="metric", errorbar=None)          # doctest: +SKIP
        >>> ci_on_bars(ax, [part for _, part in long.groupby("metric", sort=False)])               # doctest: +SKIP
    """
    for bars, part in zip(ax.containers, groups):
        if len(part) == 0:
            continue
        if len(part) != len(bars):
            raise ValueError(f"{len(part)} intervals for {len(bars)} bars")
        xs = [bar.get_x() + bar.get_width() / 2 for bar in bars]
        ax.errorbar(xs, part[mean], yerr=[part[mean] - part[low], part[high] - part[mean]], fmt="none", c="k",
                    lw=0.8)


def caption_of(output: dict) -> str | None:
    return (output.get("metadata") or {}).get(CAPTION_KEY, {}).get("caption")


def caption_figures(notebook: dict, prefix: str) -> dict:
    """A copy of an executed notebook in which each captioned figure output sits in a cell of its own (input hidden)
    with `mystnb.figure` {caption, name: fig-<prefix>-<i>}; the outputs around it keep their order, and the code
    is shown once, above the first of them."""
    out = copy.deepcopy(notebook)
    cells, count = [], 0
    for cell in out["cells"]:
        outputs = cell.get("outputs", []) if cell["cell_type"] == "code" else []
        if not any(caption_of(o) for o in outputs):
            cells.append(cell)
            continue
        pieces, current = [], []
        for output in outputs:
            if caption_of(output):
                pieces += [("plain", current), ("figure", [output])]
                current = []
            else:
                current.append(output)
        pieces.append(("plain", current))
        for i, (kind, group) in enumerate(pieces):
            if i > 0 and not group:
                continue
            piece = copy.deepcopy(cell)
            piece["outputs"] = group
            if "id" in cell:
                piece["id"] = f"{cell['id']}-{i}" if i else cell["id"]
            if i > 0:  # the code stays with the first piece; the others show their outputs only
                piece["source"] = "# output of the cell above"  # myst-nb drops a cell whose source is empty
                piece["metadata"] = {"tags": ["remove-input"]}
            if kind == "figure":
                count += 1
                piece["metadata"]["mystnb"] = {"figure": {"caption": caption_of(group[0]),
                                                          "name": f"fig-{prefix}-{count}"}}
            cells.append(piece)
    out["cells"] = cells
    return out
