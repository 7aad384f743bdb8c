"""The book's layout from the notebooks' results: the scorecard's verdicts, captioned figures, the parts of the
table of contents, the status page's timings, and the order notebooks run in."""
import pytest

from mmedit_lib.notebooks import ORDER, PARTS, next_ready, notebook_names, status_page, table_of_contents
from mmedit_lib.report.figures import caption_figures
from mmedit_lib.report.scorecard import item_verdict, landing_page, scorecard


def claims(*verdicts):
    return [{"claim": f"claim {i}", "source": "Table 9", "verdict": v, "evidence": f"ours {i}"}
            for i, v in enumerate(verdicts)]


@pytest.mark.parametrize("verdicts, expected", [
    (["reproduced", "reproduced"], "reproduced"),
    (["reproduced", "not reproduced"], "partly"),
    (["reproduced", "inconclusive"], "partly"),
    (["inconclusive", "inconclusive"], "inconclusive"),
    (["inconclusive", "not reproduced"], "not reproduced"),
    ([], "not applicable on the embedded world"),
])
def test_a_table_or_figure_gets_its_verdict_from_its_claims(verdicts, expected):
    assert item_verdict(claims(*verdicts)) == expected


def status_of(**notebooks):
    return {name: {"parameters": {"smoke": False}, "finished": "2026-11-23T00:00:00+00:00", "seconds": 60.0,
                   "verdicts": verdicts, "runs": [{"run_id": "r1", "computed": True, "seconds": 120.0},
                                                  {"run_id": "r2", "computed": False, "seconds": 0.1}]}
            for name, verdicts in notebooks.items()}


def test_the_landing_page_scores_every_table_and_links_every_claim_to_its_chapter():
    status = status_of(mmedit_table2_main=claims("reproduced", "not reproduced"),
                       unike_fig5b_qualitative=[], world_tour=[], balancedit_table6_distance=claims("reproduced"))
    headings = {"mmedit_table2_main": "# MMEdit Table 2 — the main results", "world_tour": "# A tour",
                "unike_fig5b_qualitative": "# UniKE Figure 5b — before and after",
                "balancedit_table6_distance": "# BalancEdit Table 6 — Euclidean vs cosine distance"}
    rows = {r["notebook"]: r for r in scorecard(status, headings)}
    assert set(rows) == {"mmedit_table2_main", "unike_fig5b_qualitative", "balancedit_table6_distance"}
    assert rows["mmedit_table2_main"]["verdict"] == "partly" and rows["mmedit_table2_main"]["label"] == "MMEdit Table 2"
    assert rows["unike_fig5b_qualitative"]["verdict"] == "not applicable on the embedded world"
    page = landing_page(status, headings, "# Title\n")
    assert page.startswith("# Title") and "3 tables and figures, 3 claims" in page and "**2 reproduced**" in page
    assert page.count("[MMEdit Table 2](chapters/mmedit_table2_main.ipynb)") == 3  # scorecard row + its 2 claims
    row = "| [BalancEdit Table 6](chapters/balancedit_table6_distance.ipynb): Euclidean vs cosine distance "
    assert row + "| 1 / 0 / 0 | **reproduced** |" in page
    assert page.index("### MMEdit") < page.index("### UniKE") < page.index("### BalancEdit")
    assert page.count("```{dropdown}") == 2  # a paper without claims has no dropdown


def test_each_captioned_figure_gets_a_cell_of_its_own_and_the_code_is_shown_once():
    figure = {"output_type": "display_data", "data": {"image/png": "AAAA"},
              "metadata": {"mmedit": {"caption": "Reliability as K grows."}}}
    table = {"output_type": "display_data", "data": {"text/html": "<table/>"}, "metadata": {}}
    text = {"output_type": "stream", "name": "stdout", "text": "hello\n"}
    notebook = {"cells": [{"cell_type": "markdown", "id": "m", "metadata": {}, "source": "# T"},
                          {"cell_type": "code", "id": "c", "metadata": {}, "source": "plot()",
                           "outputs": [text, figure, table]},
                          {"cell_type": "code", "id": "d", "metadata": {}, "source": "x", "outputs": [table]}]}
    cells = caption_figures(notebook, "nb")["cells"]
    assert [c["id"] for c in cells] == ["m", "c", "c-1", "c-2", "d"]
    assert cells[1]["source"] == "plot()" and cells[1]["outputs"] == [text]
    assert cells[2]["outputs"] == [figure] and cells[2]["source"].startswith("#")
    assert "remove-input" in cells[2]["metadata"]["tags"]
    assert cells[2]["metadata"]["mystnb"]["figure"] == {"caption": "Reliability as K grows.", "name": "fig-nb-1"}
    assert cells[3]["outputs"] == [table] and "mystnb" not in cells[3]["metadata"]
    assert cells[4] == notebook["cells"][2] and notebook["cells"][1]["outputs"] == [text, figure, table]  # a copy


def test_every_notebook_sits_in_one_part_of_the_book_once():
    names = notebook_names()
    assert sorted(ORDER) == sorted(names) and len(set(ORDER)) == len(ORDER)  # none falls to "Other notebooks"
    toc = table_of_contents(names)
    for name in names:
        assert toc.count(f"file: chapters/{name}\n") == 1
    for caption, page, _ in PARTS:
        assert f"- caption: {caption}\n" in toc and (page is None or f"file: {page}\n" in toc)
    assert "Other notebooks" not in toc
    assert "Other notebooks" in table_of_contents(names + ["zz_new"]) and "chapters/zz_new" in table_of_contents(
        names + ["zz_new"])


def test_the_status_page_has_the_breakdown_per_notebook_and_the_session():
    status = status_of(mmedit_table2_main=claims("reproduced"))
    full = {"notebooks": list(ORDER), "jobs": 2, "started": "2026-11-23T23:28:08+00:00",
            "finished": "2026-11-24T00:13:35+00:00", "seconds": 2727.1}
    rerun = {**full, "notebooks": ["mmedit_table2_main"], "jobs": 1, "seconds": 60.0}
    page = status_page(status, [full, rerun])  # a later re-run of one notebook keeps the full run's timing
    assert f"| 2026-11-23 23:28 | 2026-11-24 00:13 | {len(ORDER)} | 2 | **45.5** |" in page
    assert "| 1 | 1 | **1.0** |" in page and page.index("**45.5**") < page.index("**1.0**")
    assert "| [mmedit_table2_main](chapters/mmedit_table2_main.ipynb) | 00:00 | 60 | 1 | 2.0 | 1 |" in page


def test_a_notebook_that_reads_other_notebooks_runs_starts_after_them():
    assert next_ready(["unike_table5_summary", "unike_table1_onestep"], set()) == "unike_table1_onestep"
    assert next_ready(["unike_table5_summary"], {"unike_table2_sequential"}) is None
    assert next_ready(["unike_table5_summary"], set()) == "unike_table5_summary"
