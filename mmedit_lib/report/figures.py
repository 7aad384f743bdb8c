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
        for i, method in enumerate(names):
            summary = by_group[group].get(method)
            if summary is None:
                continue
            rows = summary.loc[metrics]
            offset = x + (i - (len(names) - 1) / 2) * width
            ax_.bar(offset, rows["mean"], width, label=method)
            ax_.vlines(offset, rows["ci_low"], rows["ci_high"], color="black", linewidth=0.8)
        ax_.set_ylim(0, 105)
        ax_.set_ylabel(f"{group}\n%")
    axes[-1, 0].set_xticks(x, metrics)
    axes[0, 0].legend(ncol=min(len(names), 6), fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.02))
    fig.tight_layout()
    return fig


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
