"""The smoke notebooks run under papermill, the smoke book builds offline with warnings as errors, and its pages
render in headless Chromium with their tables and figures."""
import json
import shutil
import subprocess
import sys

import pytest

from mmedit_lib.notebooks import BOOK_DIR, book_root, executed_dir, notebook_names
from mmedit_lib.paths import REPO_ROOT

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def dom(path, budget_ms=None):
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"]
    if budget_ms:
        args.insert(-1, f"--virtual-time-budget={budget_ms}")
    return subprocess.run(args + [path.as_uri()], capture_output=True, text=True, timeout=120).stdout


@pytest.fixture(scope="module")
def smoke_book():
    """`make smoke` itself: every notebook in smoke mode, then the smoke book, through the CLI (so CI need not run
    `make smoke` a second time after `make test`)."""
    for command in (["notebooks", "--smoke"], ["book", "--smoke"]):
        result = subprocess.run([sys.executable, "-m", "mmedit_lib", *command], cwd=REPO_ROOT, capture_output=True,
                                text=True)
        assert result.returncode == 0, f"python -m mmedit_lib {' '.join(command)} failed:\n{result.stderr[-3000:]}"
    status = json.loads((executed_dir(True) / "status.json").read_text())
    return status, book_root(True) / "_build" / "html"


def test_every_notebook_ran_in_smoke_mode_without_errors(smoke_book):
    status, _ = smoke_book
    assert sorted(status) == sorted(notebook_names())
    for name in status:
        executed = json.loads((executed_dir(True) / f"{name}.ipynb").read_text())
        assert not [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert status[name]["parameters"]["smoke"] is True and status[name]["seconds"] > 0
    for name, n_claims in [("mmedit_table2_main", 44), ("unike_table1_onestep", 52),  # claims x 4 cells
                           ("unike_table4_ablation", 16), ("unike_fig2a_tradeoff", 5), ("unike_fig4a_topk", 4),
                           ("unike_fig4b_alpha", 5), ("unike_fig4c_zeta", 3), ("unike_fig5a_tsne", 2),
                           ("balancedit_table1_example", 5), ("balancedit_table3_main", 34),  # 4 + 13 per backbone
                           ("balancedit_table4_sequential", 7), ("balancedit_table5_efficiency", 2),
                           ("balancedit_table6_distance", 5), ("balancedit_table7_negative_anchor", 5),
                           ("balancedit_fig4_interpretability", 2), ("balancedit_fig5_alpha", 5),
                           ("balancedit_fig7_key_tsne", 2), ("unike_table2_sequential", 45),
                           ("unike_table3_crosstask", 14), ("unike_table5_summary", 5), ("efficiency_editing_cost", 6),
                           ("running_on_real_backbones", 2)]:
        verdicts = status[name]["verdicts"]
        assert {v["verdict"] for v in verdicts} <= {"reproduced", "not reproduced", "inconclusive"}
        assert len(verdicts) == n_claims


def test_the_book_renders_tables_figures_and_the_status_page_in_chromium(smoke_book):
    assert CHROMIUM, "chromium is missing: `make setup` installs Debian's chromium"
    _, html = smoke_book
    index = dom(html / "index.html", budget_ms=5000)  # the index page redirects to the intro
    assert "Metric protocols" in index
    explorer = dom(html / "chapters" / "unike_explorer.html")
    assert "The landscape (precomputed)" in explorer and "<img " in explorer  # the α × β × K heatmaps
    chapter = dom(html / "chapters" / "mmedit_table2_main.html")
    assert "<caption>MMEdit Table 2 reproduction: tiny-blip2-opt, vqa</caption>" in chapter
    assert "<img " in chapter and "_images/" in chapter  # the seaborn figure
    balancedit = dom(html / "chapters" / "balancedit_table3_main.html")
    assert "OKEDIT-style benchmark" in balancedit and "<img " in balancedit
    status = dom(html / "status.html")
    assert "Reproduction status" in status and "mmedit_table2_main" in status
    assert (book_root(True) / "chapters" / "world_tour.ipynb").exists()
    assert html.parent.parent != BOOK_DIR  # the smoke book never overwrites the real one
