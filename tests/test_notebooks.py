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
