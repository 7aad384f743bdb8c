"""The smoke notebooks run under papermill, the smoke book builds offline with warnings as errors, and every page of
it is opened in headless Chromium and checked as a reader would: images there, internal links resolving, no Python
traceback in an output, every figure captioned, the landing page a scorecard."""
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag

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
    for command in (["notebooks", "--smoke", "--jobs", "2"], ["book", "--smoke"]):
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


class PageParser(HTMLParser):
    """What a reader's checks need from a rendered page: ids, links, images (and whether in a captioned figure)."""

    def __init__(self):
        super().__init__()
        self.ids, self.links, self.images, self.figures = set(), [], [], []
        self._figure_depth = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "figure":
            self._figure_depth += 1
            self.figures.append({"caption": False, "images": 0})
        if tag == "figcaption" and self._figure_depth:
            self.figures[-1]["caption"] = True
        if tag == "img":
            self.images.append((attrs.get("src", ""), self._figure_depth > 0))
            if self._figure_depth:
                self.figures[-1]["images"] += 1

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure_depth -= 1


def read_pages(html: Path) -> dict[Path, tuple[str, PageParser]]:
    """Every content page of the built book, opened in Chromium (two at a time), with its parsed DOM."""
    pages = [p for p in sorted(html.rglob("*.html")) if not {"_static", "_sources", "_images"} & set(p.parts)
             and p.name not in ("genindex.html", "search.html", "index.html")]
    with ThreadPoolExecutor(2) as pool:
        doms = list(pool.map(dom, pages))
    out = {}
    for page, text in zip(pages, doms):
        parser = PageParser()
        parser.feed(text)
        out[page] = (text, parser)
    return out


def test_every_page_opens_in_chromium_with_its_images_links_and_captions_and_no_traceback(smoke_book):
    assert CHROMIUM, "chromium is missing: `make setup` installs Debian's chromium"
    _, html = smoke_book
    log = (html.parent / "build.log").read_text()
    assert "WARNING" not in log and "ERROR" not in log, log[-3000:]
    pages = read_pages(html)
    names = {p.relative_to(html).as_posix() for p in pages}
    assert {"intro.html", "status.html", "pages/disagreements.html", "pages/world.html", "pages/metrics.html"} <= names
    assert {f"chapters/{n}.html" for n in notebook_names()} <= names
    problems = []
    for page, (text, parsed) in pages.items():
        where = page.relative_to(html).as_posix()
        if len(text) < 1000:
            problems.append(f"{where}: Chromium rendered nothing")
        if "Traceback (most recent call last)" in text or 'class="output traceback' in text:
            problems.append(f"{where}: a Python traceback in an output")
        for src, in_figure in parsed.images:
            if src.startswith("data:"):
                continue
            if not (page.parent / unquote(src)).is_file():
                problems.append(f"{where}: missing image {src}")
            if where.startswith("chapters/") and not in_figure:
                problems.append(f"{where}: an image outside a captioned figure ({src})")
        problems += [f"{where}: a figure without a caption" for f in parsed.figures if f["images"] and not f["caption"]]
        for href in parsed.links:
            if href.startswith(("http:", "https:", "mailto:", "javascript:", "data:")):
                continue
            target, fragment = urldefrag(href)
            target_path = (page.parent / unquote(target)).resolve() if target else page
            if not target_path.exists():
                problems.append(f"{where}: broken link {href}")
            elif fragment and target_path in pages and fragment not in pages[target_path][1].ids:
                problems.append(f"{where}: link {href} to a missing anchor")
    assert not problems, "\n".join(problems[:40])
    landing, parsed = pages[html / "intro.html"]
    assert "The scorecard" in landing and "Every claim" in landing  # the book opens at the scorecard
    assert "intro.html" in (html / "index.html").read_text()  # the book's address redirects to the landing page
    assert sum(1 for href in parsed.links if href.startswith("chapters/")) >= 2 * len(notebook_names()) - 4
    captions = sum(len(p.figures) for page, (_, p) in pages.items() if "chapters" in page.parts)
    assert captions >= 30  # every figure of every chapter is numbered and captioned
    disagreements, _ = pages[html / "pages" / "disagreements.html"]  # numbers glued from five notebooks, pasted
    glued = (BOOK_DIR / "pages" / "disagreements.md").read_text().count("{glue:text}")
    assert "UniKE: Eq. 7 against its text" in disagreements and glued >= 20
    assert disagreements.count('class="pasted-text"') == glued and "{glue" not in disagreements


def test_the_book_renders_tables_figures_and_the_status_page_in_chromium(smoke_book):
    assert CHROMIUM, "chromium is missing: `make setup` installs Debian's chromium"
    _, html = smoke_book
    index = dom(html / "index.html", budget_ms=5000)  # the index page redirects to the landing page
    assert "The scorecard" in index
    explorer = dom(html / "chapters" / "unike_explorer.html")
    assert "The landscape (precomputed)" in explorer and "<img " in explorer  # the α × β × K heatmaps
    chapter = dom(html / "chapters" / "mmedit_table2_main.html")
    caption = "MMEdit Table 2 reproduction: tiny-blip2-opt, E-VQA (paper: MMEdit Table 2, blip2-opt)"
    assert f"<caption>{caption}</caption>" in chapter
    assert "<img " in chapter and "_images/" in chapter  # the seaborn figure
    balancedit = dom(html / "chapters" / "balancedit_table3_main.html")
    assert "OKEDIT-style benchmark" in balancedit and "<img " in balancedit
    status = dom(html / "status.html")
    assert "Reproduction status" in status and "mmedit_table2_main" in status and "their min" in status
    assert (book_root(True) / "chapters" / "world_tour.ipynb").exists()
    assert html.parent.parent != BOOK_DIR  # the smoke book never overwrites the real one
