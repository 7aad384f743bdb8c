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
