"""Notebook sources are stored clean and parameterized (test_book.py runs them all in smoke mode)."""
import json

import pytest

from mmedit_lib.paths import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_source_is_clean_and_parameterized(path):
    nb = json.loads(path.read_text())
    assert any("parameters" in c["metadata"].get("tags", []) for c in nb["cells"])
    assert not any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
    ids = [c.get("id") for c in nb["cells"]]  # nbformat 4.5: every cell has one, unique (else a warning per run)
    assert (nb["nbformat"], nb["nbformat_minor"]) >= (4, 5) and None not in ids and len(set(ids)) == len(ids), ids


def parameters(path) -> dict:
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    values = {}
    exec("".join(cell["source"]), {}, values)
    return values


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_paper_notebook_takes_a_backbone_and_a_data_dir(path):
    """What a GPU user passes: `-p backbone blip2-opt-2.7b -p data_dir /data/editing-data` (world_tour is the
    embedded world itself; running_on_real_backbones only prints commands)."""
    if path.stem in ("world_tour", "running_on_real_backbones"):
        return
    values = parameters(path)
    assert "backbone" in values and "data_dir" in values and values["data_dir"] is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_figure_is_shown_with_a_caption(path):
    """`show_figure(caption)`, never a bare `plt.show()`: the book renders each figure with its caption."""
    nb = json.loads(path.read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "plt.show()" not in code
