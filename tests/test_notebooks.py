"""Every notebook runs under papermill in smoke mode; sources are stored clean and parameterized."""
import json

import papermill
import pytest

from mmedit_lib.paths import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_source_is_clean_and_parameterized(path):
    nb = json.loads(path.read_text())
    assert any("parameters" in c["metadata"].get("tags", []) for c in nb["cells"])
    assert not any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_mode(path, tmp_path):
    out = tmp_path / path.name
    papermill.execute_notebook(str(path), str(out), parameters={"smoke": True}, kernel_name="python3",
                               cwd=str(REPO_ROOT / "notebooks"), progress_bar=False)
    executed = json.loads(out.read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
