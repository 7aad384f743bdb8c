"""The reproduction scorecard: one verdict per table and figure of the papers, computed from its notebook's claims.

    >>> item_verdict([{"verdict": "reproduced"}, {"verdict": "inconclusive"}])
    'partly'
    >>> item_verdict([])
    'not applicable on the embedded world'

A notebook's claims each carry a verdict computed from confidence intervals (reproduced / inconclusive / not
reproduced). A table or figure is **reproduced** when every claim is, **partly** when some are, **inconclusive** when
none is decided either way, **not reproduced** when none is reproduced and at least one is refuted, and **not
applicable on the embedded world** when it makes no claim the embedded world can test (qualitative examples of real
photographs). The landing page of the book is `landing_page(status)`.
"""
from __future__ import annotations

import collections

VERDICTS = ("reproduced", "partly", "inconclusive", "not reproduced", "not applicable on the embedded world")
PAPERS = {"mmedit": "MMEdit", "unike": "UniKE", "balancedit": "BalancEdit"}
# what a table or figure without claims is, in a few words
NO_CLAIMS_BECAUSE = {"unike_fig5b_qualitative": "qualitative before/after examples on real photographs; ours are "
                                                "shown, not scored",
                     "unike_explorer": "an interactive view of UniKE's α, β and top-K, not a table of the paper"}
# chapters that are not a table or figure of a paper (their verdicts, if any, still count in the totals)
NOT_A_PAPER_ITEM = {"world_tour", "unike_explorer"}


def item_verdict(verdicts: list[dict]) -> str:
    counts = collections.Counter(v["verdict"] for v in verdicts)
    if not verdicts:
        return "not applicable on the embedded world"
    if counts["reproduced"] == len(verdicts):
        return "reproduced"
    if counts["reproduced"]:
        return "partly"
    return "not reproduced" if counts["not reproduced"] else "inconclusive"


def item_title(first_heading: str) -> tuple[str, str]:
    """'# UniKE Table 2 — sequential editing (…)' -> ('UniKE Table 2', 'sequential editing (…)')."""
    heading = first_heading.lstrip("#").strip()
    label, _, title = heading.partition(" — ")
    return label.strip(), title.strip()


def paper_of(name: str) -> str:
    return PAPERS.get(name.split("_", 1)[0], "Across the papers")


def scorecard(status: dict, headings: dict[str, str]) -> list[dict]:
    """One row per notebook that reproduces a paper's table or figure: paper, label, title, counts and verdict."""
    rows = []
    for name, entry in status.items():
        if name in NOT_A_PAPER_ITEM:
            continue
        label, title = item_title(headings[name])
        counts = collections.Counter(v["verdict"] for v in entry["verdicts"])
        rows.append({"notebook": name, "paper": paper_of(name), "label": label, "title": title,
                     "claims": len(entry["verdicts"]), "reproduced": counts["reproduced"],
                     "inconclusive": counts["inconclusive"], "not reproduced": counts["not reproduced"],
                     "verdict": item_verdict(entry["verdicts"]), "why": NO_CLAIMS_BECAUSE.get(name, "")})
    return rows


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def landing_page(status: dict, headings: dict[str, str], head: str) -> str:
    """The book's landing page: `head` (the introduction), the totals, the scorecard paper by paper (one row per
    table or figure, linking to its chapter), then every claim, paper by paper, in dropdowns."""
    order = list(PAPERS.values()) + ["Across the papers"]
    rows = sorted(scorecard(status, headings), key=lambda r: order.index(r["paper"]))
    claims = [v for r in rows for v in status[r["notebook"]]["verdicts"]]
    totals = collections.Counter(v["verdict"] for v in claims)
    items = collections.Counter(r["verdict"] for r in rows)
    lines = [head.rstrip(), "", "## The scorecard", "",
             f"{len(rows)} tables and figures, {len(claims)} claims checked on the embedded world: "
             f"**{totals['reproduced']} reproduced**, {totals['inconclusive']} inconclusive (the 95% interval "
             f"straddles the claim's threshold), {totals['not reproduced']} not reproduced. By table or figure: "
             + ", ".join(f"{items[v]} {v}" for v in VERDICTS if items[v]) + ". "
             "Every verdict below is computed by its notebook from the results rows when the book is built "
             "(how, in [Metrics and protocols](pages/metrics.md)); the [status page](status.md) says when each "
             "notebook ran, how long it took, and which runs it computed or reused. The claims column counts "
             "reproduced / inconclusive / not reproduced.", ""]
    for paper in order:
        paper_rows = [r for r in rows if r["paper"] == paper]
        if not paper_rows:
            continue
        lines += [f"### {paper}", "", "| table / figure | claims | verdict |", "| --- | --- | --- |"]
        for r in paper_rows:
            item = f"[{r['label']}](chapters/{r['notebook']}.ipynb): {_cell(r['title'])}"
            counts = f"{r['reproduced']} / {r['inconclusive']} / {r['not reproduced']}" if r["claims"] else "none"
            verdict = f"**{r['verdict']}**" + (f" ({_cell(r['why'])})" if r["why"] else "")
            lines.append(f"| {item} | {counts} | {verdict} |")
        lines.append("")
    lines += ["## Every claim", ""]
    for paper in order:
        paper_rows = [r for r in rows if r["paper"] == paper and r["claims"]]
        if not paper_rows:
            continue
        n = sum(r["claims"] for r in paper_rows)
        paper_counts = collections.Counter(v["verdict"] for r in paper_rows for v in status[r["notebook"]]["verdicts"])
        lines += [f"```{{dropdown}} {paper}: {n} claims, {paper_counts['reproduced']} reproduced, "
                  f"{paper_counts['inconclusive']} inconclusive, {paper_counts['not reproduced']} not reproduced",
                  "| table / figure | claim | the paper | verdict | ours, mean [95% CI] |",
                  "| --- | --- | --- | --- | --- |"]
        for r in paper_rows:
            for v in status[r["notebook"]]["verdicts"]:
                lines.append(f"| [{r['label']}](chapters/{r['notebook']}.ipynb) | {_cell(v['claim'])} | "
                             f"{_cell(v['source'])} | **{v['verdict']}** | {_cell(v['evidence'])} |")
        lines += ["```", ""]
    return "\n".join(lines) + "\n"
