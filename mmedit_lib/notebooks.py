"""Run the notebooks with papermill and build the Jupyter Book from the executed copies.

    $ python -m mmedit_lib notebooks [--only mmedit_table2_main] [--smoke] [--param n_edits=50]
    $ python -m mmedit_lib book [--smoke]          # book/_build/html (smoke: results/smoke/book/_build/html)

Sources in `notebooks/` stay output-free; executed copies go to `results/executed/` (smoke: `results/smoke/executed/`)
with `status.json` (when and with which parameters each ran, its runtime) and each notebook's verdicts. The book
copies the executed notebooks in as chapters, writes its reproduction-status page from `status.json`, and builds
HTML offline with warnings as errors.
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
ORDER = ("world_tour", "mmedit_table2_main", "unike_table1_onestep", "unike_table2_sequential", "unike_table3_crosstask",
         "unike_table4_ablation", "unike_table5_summary", "unike_fig2a_tradeoff",
         "unike_fig4a_topk", "unike_fig4b_alpha", "unike_fig4c_zeta", "unike_fig5a_tsne", "unike_fig5b_qualitative",
         "unike_explorer", "balancedit_table1_example", "balancedit_table3_main", "balancedit_table4_sequential",
         "balancedit_table5_efficiency", "balancedit_table6_distance", "balancedit_table7_negative_anchor",
         "balancedit_fig4_interpretability", "balancedit_fig5_alpha", "balancedit_fig7_key_tsne",
         "efficiency_editing_cost", "running_on_real_backbones")
# the book's chapter order; others follow alphabetically


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


def run_notebooks(only: list[str] | None = None, smoke: bool = False, parameters: dict | None = None) -> dict:
    """Execute notebooks (all, or `only`) with papermill; returns and writes status.json."""
    import papermill
    names = notebook_names()
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise NotebookError(f"no notebook(s) {', '.join(unknown)}; known: {', '.join(names)}")
    out_dir = executed_dir(smoke)
    out_dir.mkdir(parents=True, exist_ok=True)
    status_path = out_dir / "status.json"
    status = json.loads(status_path.read_text()) if status_path.exists() else {}
    for name in only or names:
        params = {**(parameters or {}), "smoke": smoke}
        started = time.time()
        print(f"notebook {name} (smoke={smoke}) ...", flush=True)
        try:
            papermill.execute_notebook(str(NOTEBOOKS_DIR / f"{name}.ipynb"), str(out_dir / f"{name}.ipynb"),
                                       parameters=params, kernel_name="python3", cwd=str(NOTEBOOKS_DIR),
                                       progress_bar=False)
        except papermill.PapermillExecutionError as error:
            raise NotebookError(f"{name} failed in cell {error.exec_count}: {error.ename}: {error.evalue}") from None
        verdicts_path = out_dir / f"{name}.verdicts.json"
        status[name] = {"parameters": params, "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                        "seconds": round(time.time() - started, 1),
                        "verdicts": json.loads(verdicts_path.read_text()) if verdicts_path.exists() else []}
        status_path.write_text(json.dumps(status, indent=1) + "\n")
        print(f"  done in {status[name]['seconds']} s", flush=True)
    return status


def status_page(status: dict) -> str:
    lines = ["# Reproduction status", "",
             "Each chapter is a notebook executed by `python -m mmedit_lib notebooks`; this page is written from its",
             "`status.json` when the book is built. Verdicts are computed inside the notebooks from the results rows.",
             ""]
    for name, s in status.items():
        params = ", ".join(f"`{k}={v!r}`" for k, v in s["parameters"].items())
        lines += [f"## [{name}](chapters/{name}.ipynb)", "",
                  f"Ran {s['finished']} in {s['seconds']} s with {params or 'the defaults'}.", ""]
        if s["verdicts"]:
            lines += ["| claim | source | verdict | evidence (ours, mean [95% CI]) |", "| --- | --- | --- | --- |"]
            lines += [f"| {v['claim']} | {v['source']} | **{v['verdict']}** | {v['evidence']} |" for v in s["verdicts"]]
        else:
            lines.append("No claims are checked in this notebook.")
        lines.append("")
    return "\n".join(lines)


def book_root(smoke: bool = False) -> Path:
    """`book/` itself, or for the smoke book a copy of its sources under results/smoke/book (never mixed)."""
    if not smoke:
        return BOOK_DIR
    root = REPO_ROOT / "results" / "smoke" / "book"
    root.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "intro.md"):
        shutil.copy(BOOK_DIR / name, root / name)
    return root


def build_book(smoke: bool = False) -> Path:
    """Copy the executed notebooks in, write the status page and _toc.yml, build HTML (-W: warnings are errors)."""
    source = executed_dir(smoke)
    root = book_root(smoke)
    status_path = source / "status.json"
    if not status_path.exists():
        raise NotebookError(f"no executed notebooks in {source}: run `python -m mmedit_lib notebooks"
                            f"{' --smoke' if smoke else ''}` first")
    status = json.loads(status_path.read_text())
    chapters = root / "chapters"
    shutil.rmtree(chapters, ignore_errors=True)
    chapters.mkdir(parents=True)
    names = [n for n in notebook_names() if n in status]
    for name in names:
        shutil.copy(source / f"{name}.ipynb", chapters / f"{name}.ipynb")
    (root / "status.md").write_text(status_page({n: status[n] for n in names}))
    toc = ["format: jb-book", "root: intro", "chapters:", "- file: status"]
    toc += [f"- file: chapters/{n}" for n in names]
    (root / "_toc.yml").write_text("\n".join(toc) + "\n")
    shutil.rmtree(root / "_build", ignore_errors=True)
    jb = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run([str(jb), "build", str(root), "-W", "-n", "--keep-going"], cwd=REPO_ROOT,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise NotebookError(f"jupyter-book build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return root / "_build" / "html"
