"""Run the notebooks with papermill and build the Jupyter Book from the executed copies.

    $ python -m mmedit_lib notebooks [--only mmedit_table2_main] [--smoke] [--param n_edits=50] [--jobs 2]
    $ python -m mmedit_lib book [--smoke]          # book/_build/html (smoke: results/smoke/book/_build/html)

Sources in `notebooks/` stay output-free; executed copies go to `results/executed/` (smoke: `results/smoke/executed/`)
with `status.json` (when and with which parameters each ran, its runtime, every run it computed or reused), each
notebook's verdicts, and `sessions.jsonl` (one line per `notebooks` command: when, how many, how long). The book
copies the executed notebooks in as chapters (each captioned figure in a cell of its own), writes the landing page
(the scorecard, `report.scorecard`), the status page and the parts of `_toc.yml` (PARTS), and builds HTML offline
with warnings as errors.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .paths import REPO_ROOT

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
BOOK_DIR = REPO_ROOT / "book"
# The book's parts: (caption, the part's own page under book/ or None, its notebooks in order). Notebooks not listed
# follow in a last part, alphabetically; the landing page (the scorecard) and the status and disagreement pages
# come first.
PARTS = (
    ("The embedded world", "pages/world", ("world_tour",)),
    ("Metrics and protocols", "pages/metrics", ("efficiency_editing_cost",)),
    ("MMEdit (Cheng et al., EMNLP 2023)", "pages/mmedit", ("mmedit_table2_main",)),
    ("UniKE (Pan et al., NeurIPS 2024)", "pages/unike",
     ("unike_table1_onestep", "unike_table2_sequential", "unike_table3_crosstask", "unike_table4_ablation",
      "unike_table5_summary", "unike_fig2a_tradeoff", "unike_fig4a_topk", "unike_fig4b_alpha", "unike_fig4c_zeta",
      "unike_fig5a_tsne", "unike_fig5b_qualitative", "unike_explorer")),
    ("BalancEdit (OKEDIT)", "pages/balancedit",
     ("balancedit_table1_example", "balancedit_table3_main", "balancedit_table4_sequential",
      "balancedit_table5_efficiency", "balancedit_table6_distance", "balancedit_table7_negative_anchor",
      "balancedit_fig4_interpretability", "balancedit_fig5_alpha", "balancedit_fig7_key_tsne")),
    ("Beyond the papers", None, ("llava_does_it_hold",)),
    ("Running on real backbones", None, ("running_on_real_backbones",)),
)
FRONT_PAGES = ("status", "pages/disagreements")
ORDER = tuple(name for _, _, names in PARTS for name in names)  # the book's chapter order


class NotebookError(RuntimeError):
    """A notebook failed under papermill, or a name is unknown."""


def executed_dir(smoke: bool = False) -> Path:
    """Where executed notebooks and their verdicts go: `$MMEDIT_EXECUTED_DIR` when set (a real-backbone session,
    a test), else results/executed (smoke: results/smoke/executed)."""
    if os.environ.get("MMEDIT_EXECUTED_DIR"):
        return Path(os.environ["MMEDIT_EXECUTED_DIR"])
    return REPO_ROOT / "results" / ("smoke/executed" if smoke else "executed")


def notebook_names() -> list[str]:
    names = sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb"))
    return [n for n in ORDER if n in names] + [n for n in names if n not in ORDER]


# The order `--jobs 2` starts notebooks in: the longest first, and notebooks that build the same prepared editors or
# runs (which then wait on each other's locks) apart; the rest follow in book order.
SCHEDULE = ("mmedit_table2_main", "llava_does_it_hold", "unike_table4_ablation", "unike_fig4a_topk", "unike_fig4b_alpha",
            "unike_fig4c_zeta", "unike_fig2a_tradeoff", "unike_explorer", "unike_table2_sequential",
            "unike_table1_onestep", "unike_table3_crosstask", "balancedit_table3_main", "balancedit_table4_sequential",
            "efficiency_editing_cost")
# notebooks that only read runs other notebooks compute (`run(..., reuse_only=True)`): started after those finish
READS_RUNS_OF = {"unike_table5_summary": ("unike_table1_onestep", "unike_table2_sequential")}


def next_ready(pending: list[str], running: set[str]) -> str | None:
    """The first pending notebook that reads no run of a notebook still pending or running (READS_RUNS_OF).

        >>> next_ready(["unike_table5_summary", "unike_table1_onestep"], set())
        'unike_table1_onestep'
        >>> next_ready(["unike_table5_summary"], {"unike_table2_sequential"}) is None
        True
    """
    unfinished = set(pending) | running
    return next((n for n in pending if not set(READS_RUNS_OF.get(n, ())) & (unfinished - {n})), None)


def execute_notebook(name: str, out_dir: Path, params: dict) -> dict:
    """Execute one notebook under papermill into `out_dir`; its status entry (when, how long, verdicts, and every run
    it used: computed here or reused). Runs in a worker process when notebooks run in parallel."""
    import papermill
    log = out_dir / f"{name}.runs.jsonl"
    log.unlink(missing_ok=True)
    previous = os.environ.get("MMEDIT_RUN_LOG")
    os.environ["MMEDIT_RUN_LOG"] = str(log)  # the kernel inherits it; runners.store.log_run appends to it
    started = time.time()
    try:
        papermill.execute_notebook(str(NOTEBOOKS_DIR / f"{name}.ipynb"), str(out_dir / f"{name}.ipynb"),
                                   parameters=params, kernel_name="python3", cwd=str(NOTEBOOKS_DIR),
                                   progress_bar=False)
    except papermill.PapermillExecutionError as error:
        raise NotebookError(f"{name} failed in cell {error.exec_count}: {error.ename}: {error.evalue}") from None
    finally:
        if previous is None:
            os.environ.pop("MMEDIT_RUN_LOG", None)
        else:
            os.environ["MMEDIT_RUN_LOG"] = previous
    verdicts_path = out_dir / f"{name}.verdicts.json"
    runs = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    log.unlink(missing_ok=True)
    return {"parameters": params, "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.time() - started, 1),
            "verdicts": json.loads(verdicts_path.read_text()) if verdicts_path.exists() else [],
            "runs": runs}


def run_notebooks(only: list[str] | None = None, smoke: bool = False, parameters: dict | None = None,
                  jobs: int = 1) -> dict:
    """Execute notebooks (all, or `only`) with papermill, `jobs` at a time; returns and writes status.json.

    With jobs > 1 each notebook runs in its own worker process (one torch thread each, from OMP_NUM_THREADS); two
    notebooks needing the same run compute it once (the run's lock), and a notebook in READS_RUNS_OF starts after
    the notebooks whose runs it reads."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    names = notebook_names()
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise NotebookError(f"no notebook(s) {', '.join(unknown)}; known: {', '.join(names)}")
    if jobs < 1:
        raise NotebookError(f"jobs must be at least 1; got {jobs}")
    out_dir = executed_dir(smoke)
    out_dir.mkdir(parents=True, exist_ok=True)
    status_path = out_dir / "status.json"
    status = json.loads(status_path.read_text()) if status_path.exists() else {}
    params = {**(parameters or {}), "smoke": smoke}
    pending = list(only or names)
    session = {"notebooks": list(pending), "jobs": jobs, "parameters": params,
               "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    session_started = time.time()

    def record(name: str, entry: dict) -> None:
        status[name] = entry
        status_path.write_text(json.dumps(status, indent=1) + "\n")
        computed = sum(1 for r in entry["runs"] if r["computed"])
        print(f"  {name} done in {entry['seconds']} s ({computed} runs computed, "
              f"{len(entry['runs']) - computed} reused)", flush=True)

    def finish() -> dict:
        session.update(finished=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                       seconds=round(time.time() - session_started, 1))
        with open(out_dir / "sessions.jsonl", "a") as handle:  # every session kept: a later re-run of one notebook
            handle.write(json.dumps(session) + "\n")           # does not hide the full run's timing
        print(f"{len(session['notebooks'])} notebooks in {session['seconds']} s ({jobs} at a time)", flush=True)
        return status

    if jobs == 1:
        for name in pending:
            print(f"notebook {name} (smoke={smoke}) ...", flush=True)
            record(name, execute_notebook(name, out_dir, params))
        return finish()
    pending = [n for n in SCHEDULE if n in pending] + [n for n in pending if n not in SCHEDULE]
    running, failures = {}, []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        while pending or running:
            while pending and len(running) < jobs and not failures:
                name = next_ready(pending, set(running.values()))
                if name is None:
                    break
                pending.remove(name)
                print(f"notebook {name} (smoke={smoke}) ...", flush=True)
                running[pool.submit(execute_notebook, name, out_dir, params)] = name
            if failures and not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                try:
                    record(name, future.result())
                except NotebookError as error:
                    failures.append(str(error))
    if failures:
        raise NotebookError("; ".join(failures))
    return finish()


def status_page(status: dict, sessions: list[dict] = ()) -> str:
    """When each notebook ran, with which parameters, how long it took and which runs it computed or reused."""
    lines = ["# Reproduction status and timings", "",
             "Each chapter is a notebook executed by `python -m mmedit_lib notebooks` (`make reproduce` runs all of "
             "them, two at a time); this page is written from its `status.json` when the book is built. A run is "
             "computed once, by the first notebook that needs it, and reused by every later one (when two notebooks "
             "need it at the same moment, one waits for the other).", ""]
    if sessions:
        lines += ["Sessions of `python -m mmedit_lib notebooks`, oldest first (re-running some notebooks is a session "
                  "of its own):", "", "| started (UTC) | finished | notebooks | at a time | wall (min) |",
                  "| --- | --- | ---: | ---: | ---: |"]
        lines += [f"| {s['started'][:16].replace('T', ' ')} | {s['finished'][:16].replace('T', ' ')} | "
                  f"{len(s['notebooks'])} | {s['jobs']} | **{s['seconds'] / 60:.1f}** |" for s in sessions]
        lines.append("")
    lines += ["Per notebook: when it finished (UTC time of day), its wall time, the runs it computed and how long "
              "they took, the runs it reused (its claims are on the landing page).", "",
              "| notebook | done | wall (s) | computed | their min | reused |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    for name, s in status.items():
        runs = s.get("runs", [])
        computed = [r for r in runs if r["computed"]]
        finished = s["finished"][11:16]  # the time of day (the sessions above give the dates)
        lines.append(f"| [{name}](chapters/{name}.ipynb) | {finished} | {s['seconds']:.0f} | {len(computed)} | "
                     f"{sum(r['seconds'] for r in computed) / 60:.1f} | {len(runs) - len(computed)} |")
    total = sum(s["seconds"] for s in status.values())
    lines += ["", f"Notebook wall times add up to {total / 60:.1f} min. The verdicts of every notebook are on the "
              "[landing page](intro.md).", "",
              "## Parameters", "", "| notebook | parameters |", "| --- | --- |"]
    for name, s in status.items():
        params = ", ".join(f"`{k}={v!r}`" for k, v in s["parameters"].items())
        lines.append(f"| {name} | {params or 'the defaults'} |")
    return "\n".join(lines) + "\n"


def book_root(smoke: bool = False) -> Path:
    """`book/` itself, or for the smoke book a copy of its sources under results/smoke/book (never mixed)."""
    if not smoke:
        return BOOK_DIR
    root = REPO_ROOT / "results" / "smoke" / "book"
    root.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "landing.md"):
        shutil.copy(BOOK_DIR / name, root / name)
    shutil.rmtree(root / "pages", ignore_errors=True)
    shutil.copytree(BOOK_DIR / "pages", root / "pages")
    return root


def table_of_contents(names: list[str]) -> str:
    """_toc.yml: the landing page, the front pages, then a part per PARTS entry (its page, the notebooks under it)."""
    lines = ["format: jb-book", "root: intro", "parts:", "- caption: About this reproduction", "  chapters:"]
    lines += [f"  - file: {page}" for page in FRONT_PAGES]
    for caption, page, members in PARTS + (("Other notebooks", None, tuple(n for n in names if n not in ORDER)),):
        present = [n for n in members if n in names]
        if not present:
            continue
        lines += [f"- caption: {caption}", "  chapters:"]
        if page:
            lines += [f"  - file: {page}", "    sections:"] + [f"    - file: chapters/{n}" for n in present]
        else:
            lines += [f"  - file: chapters/{n}" for n in present]
    return "\n".join(lines) + "\n"


def first_heading(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return next(line for c in cells if c["cell_type"] == "markdown" for line in "".join(c["source"]).splitlines()
                if line.startswith("# "))


def collapse_code(notebook: dict) -> dict:
    """Every code cell's source collapsed behind a "Show code" toggle (myst-nb's `hide-input`), unless the cell
    hides or removes its input already: a reader sees the results, one click opens the code."""
    for cell in notebook["cells"]:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if cell["cell_type"] == "code" and not {"hide-input", "remove-input", "remove-cell"} & set(tags):
            tags.append("hide-input")
    return notebook


def build_book(smoke: bool = False) -> Path:
    """Copy the executed notebooks in, write the landing page (the scorecard), the status page and _toc.yml, and
    build HTML offline (-W: any warning fails the build; the log is kept in _build/build.log)."""
    from .report.figures import caption_figures
    from .report.scorecard import landing_page
    source = executed_dir(smoke)
    root = book_root(smoke)
    status_path = source / "status.json"
    if not status_path.exists():
        raise NotebookError(f"no executed notebooks in {source}: run `python -m mmedit_lib notebooks"
                            f"{' --smoke' if smoke else ''}` first")
    status = json.loads(status_path.read_text())
    sessions_path = source / "sessions.jsonl"
    sessions = [json.loads(line) for line in sessions_path.read_text().splitlines()] if sessions_path.exists() else []
    chapters = root / "chapters"
    shutil.rmtree(chapters, ignore_errors=True)
    chapters.mkdir(parents=True)
    names = [n for n in notebook_names() if n in status]
    for name in names:  # each captioned figure in a cell of its own, so myst-nb renders its caption
        executed = json.loads((source / f"{name}.ipynb").read_text())
        chapter = collapse_code(caption_figures(executed, name.replace("_", "-")))
        (chapters / f"{name}.ipynb").write_text(json.dumps(chapter))
    status = {n: status[n] for n in names}
    headings = {n: first_heading(chapters / f"{n}.ipynb") for n in names}
    (root / "intro.md").write_text(landing_page(status, headings, (root / "landing.md").read_text()))
    (root / "status.md").write_text(status_page(status, sessions))
    (root / "_toc.yml").write_text(table_of_contents(names))
    shutil.rmtree(root / "_build", ignore_errors=True)
    jb = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run([str(jb), "build", str(root), "-W", "-n", "--keep-going"], cwd=REPO_ROOT,
                            capture_output=True, text=True)
    (root / "_build").mkdir(exist_ok=True)
    (root / "_build" / "build.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise NotebookError(f"jupyter-book build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return root / "_build" / "html"
