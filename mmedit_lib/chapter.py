"""What a chapter (a notebook in `notebooks/`) calls right after its parameters cell, and last, to show its verdicts.

    >>> from mmedit_lib.chapter import start, world_cases, quick_editor, show_verdicts
    >>> start(dtype=dtype, image_root=image_root, rephrase_image_root=rephrase_image_root)        # doctest: +SKIP
    >>> bb, root, cases = world_cases("tiny-blip2-opt", "okedit", n=30, seed=0)                # doctest: +SKIP
    >>> editor = quick_editor("balancedit", "tiny-blip2-opt", smoke=False)  # smoke: the quick hparams  # doctest: +SKIP
    >>> show_verdicts("balancedit_fig4_interpretability", claims, smoke)      # doctest: +SKIP

Every chapter's parameters cell has the same three inputs of the real path (papermill `-p`, or
`python -m mmedit_lib notebooks --param dtype=float16`): `dtype` (float32 | bfloat16 | float16; default float32 on
CPU, bfloat16 on a GPU), `image_root` (images and m_loc images; default: found from the data file) and
`rephrase_image_root` (rephrased images; default: the image root). `start` passes them on (`inputs.use_inputs`),
runs torch on one thread (two chapters run side by side on the reference machine's two cores) and shows figures
inline (the Makefile's MPLBACKEND=Agg would otherwise keep them out of the executed notebook).
"""
from __future__ import annotations

from .inputs import use_inputs


def start(dtype: str | None = None, image_root: str | None = None, rephrase_image_root: str | None = None) -> dict:
    """Pass the inputs on, use one torch thread, show figures inline; returns the inputs in force."""
    import torch
    inputs = use_inputs(dtype=dtype, image_root=image_root, rephrase_image_root=rephrase_image_root)
    torch.set_num_threads(1)
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the notebook stack
        return inputs
    shell = get_ipython()
    if shell is not None:
        shell.run_line_magic("matplotlib", "inline")
    return inputs


def world_cases(backbone: str, task: str, n: int, seed: int = 0, data_dir: str | None = None, smoke: bool = False):
    """(backbone, data root, the first `n` edit cases of `task`): the data file in `data_dir`, or the backbone's
    embedded world (built when missing; the small one when smoke)."""
    from .backbones.registry import load_backbone
    from .runners.cases import load_cases
    from .world.ensure import ensure_world
    bb = load_backbone(backbone)
    root = data_dir or ensure_world(backbone, smoke=smoke, seed=seed, bb=bb)
    return bb, root, load_cases(bb, root, task, n=n, seed=seed)


def quick_editor(name: str, backbone: str, smoke: bool = False, **hparams):
    """The editor with the backbone's hparams; under smoke its spec's quick hparams first (`hparams` on top)."""
    from .editors.registry import SMOKE_HPARAMS, make_editor
    return make_editor(name, backbone=backbone, **{**(SMOKE_HPARAMS.get(name, {}) if smoke else {}), **hparams})


def show_verdicts(notebook: str, verdicts: list[dict], smoke: bool = False,
                  caption: str = "Verdicts computed from our CIs") -> None:
    """Record the chapter's verdicts where the book's scorecard reads them, show them as a table and their count."""
    import pandas as pd
    from IPython.display import Markdown, display
    from .notebooks import executed_dir
    from .report.tables import record_verdicts
    record_verdicts(notebook, list(verdicts), executed_dir(smoke))
    table = pd.DataFrame(list(verdicts))
    display(table.style.set_caption(caption).hide(axis="index"))
    counts = table.verdict.value_counts() if len(table) else pd.Series(dtype=int)
    display(Markdown("**Verdicts:** " + (", ".join(f"{n} {name}" for name, n in counts.items()) or "none")))
