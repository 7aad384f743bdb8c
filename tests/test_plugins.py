"""A researcher's own editor or benchmark is one file: put on the Python path and named in $MMEDIT_PLUGINS, the
editor passes the contract, runs one-step and sequentially, from the CLI, and in a notebook's table; the benchmark
is validated and run by `run --task`; no file of the package changes (tests/fixtures/plugins/toy_editor.py and
toy_benchmark.py, copied to a temporary folder)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from mmedit_lib.editors import registry
from mmedit_lib.editors.contract import check_contract
from mmedit_lib.paths import REPO_ROOT
from mmedit_lib.runners.cases import load_cases
from mmedit_lib.runners.run import RunSpec, run

from conftest import FIXTURES

pytestmark = pytest.mark.slow
BACKBONE = "tiny-blip2-opt"


def tracked_changes() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                          capture_output=True, text=True).stdout


@pytest.fixture()
def toy(tmp_path, monkeypatch):
    """The toy editor's and benchmark's modules in a temporary package path, registered; unregistered after."""
    from mmedit_lib.data import benchmarks
    folder = tmp_path / "plugins"
    folder.mkdir()
    for name in ("toy_editor.py", "toy_benchmark.py"):
        shutil.copy(FIXTURES / "plugins" / name, folder / name)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("MMEDIT_PLUGINS", "toy_editor,toy_benchmark")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MMEDIT_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MMEDIT_EXECUTED_DIR", str(tmp_path / "executed"))
    assert "toy-ffn" not in registry.EDITORS and "vqa-joint" not in benchmarks.BENCHMARKS
    assert registry.load_plugins() == benchmarks.load_plugins() == ["toy_editor", "toy_benchmark"]
    yield tmp_path
    registry.EDITORS.pop("toy-ffn", None)
    benchmarks.BENCHMARKS.pop("vqa-joint", None)
    for name in ("toy_editor", "toy_benchmark"):
        sys.modules.pop(name, None)


def test_a_new_editor_is_one_file(toy, smoke_world, shipped):
    before = tracked_changes()
    world, _ = smoke_world(BACKBONE)
    bb = shipped(BACKBONE)
    spec = registry.get_spec("toy-ffn")
    assert registry.LABELS["toy-ffn"] == "Toy (last FFN)" and spec.prepare_fields == ("warm_cases",)

    check_contract(registry.make_editor("toy-ffn", BACKBONE, **spec.quick_hparams()), bb,
                   load_cases(bb, world, "vqa", n=3, seed=0))

    one = run(RunSpec(editor="toy-ffn", backbone=BACKBONE, n=4, data_dir=str(world)), bb=bb,
              runs_dir=toy / "runs", progress=False)
    seq = run(RunSpec(editor="toy-ffn", backbone=BACKBONE, setting="seq", k=2, n=4, data_dir=str(world)), bb=bb,
              runs_dir=toy / "runs", progress=False)
    assert len(one.rows) == 4 and len(seq.rows) == 4 and {r["group_size"] for r in seq.rows} == {2}
    assert sum(r["rel"] for r in one.rows) > 0  # it edits

    cli = subprocess.run([sys.executable, "-m", "mmedit_lib", "run", "--editor", "toy-ffn", "--backbone", BACKBONE,
                          "--n", "2", "--data-dir", str(world), "--runs-dir", str(toy / "cli")],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    assert "toy-ffn on tiny-blip2-opt" in cli.stdout

    from mmedit_lib.notebooks import execute_notebook
    out = toy / "executed"
    out.mkdir()
    execute_notebook("efficiency_editing_cost", out, {"backbones": [BACKBONE], "editors": ["toy-ffn"],
                                                     "smoke": True, "data_dir": str(world)})
    executed = json.loads((out / "efficiency_editing_cost.ipynb").read_text())
    shown = "".join(json.dumps(c.get("outputs", [])) for c in executed["cells"] if c["cell_type"] == "code")
    assert "Toy (last FFN)" in shown  # its row in the notebook's cost table
    assert tracked_changes() == before  # no file of the package changed


def test_a_new_benchmark_is_one_file(toy, smoke_world, shipped):
    from mmedit_lib.backbones.report import answer_fn
    from mmedit_lib.cli import build_parser
    from mmedit_lib.world.world import World
    from mmedit_lib.world.writer import case_sizes, write_cases
    before = tracked_changes()
    world, _ = smoke_world(BACKBONE)
    bb = shipped(BACKBONE)
    # the embedded world draws its cases through its `world_cases` hook: E-VQA's, so the very same records
    assert case_sizes(smoke=True)["vqa-joint"] == {"eval": 20, "train": 20}
    assert build_parser().parse_args(["world", "--out", "x", "--n-vqa-joint-eval", "7"]).n_vqa_joint_eval == 7
    data = toy / "data"
    sizes = {"vqa-joint": case_sizes(smoke=True)["vqa-joint"]}
    summary = write_cases(data, World(0), answer_fn(bb), bb.vqa_template, sizes, BACKBONE)
    assert sum(summary["counts"]["eval"]["vqa-joint"].values()) == 20
    for split in ("eval", "train"):
        assert (data / "vqa-joint" / f"{split}.json").read_text() == (world / "vqa" / f"{split}.json").read_text()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    check = subprocess.run([sys.executable, "-m", "mmedit_lib", "validate", str(data / "vqa-joint" / "eval.json"),
                            "--task", "vqa-joint"], capture_output=True, text=True, timeout=300, env=env)
    assert check.returncode == 0 and "E-VQA (joint rephrase)" in check.stdout, check.stdout + check.stderr
    runs = []
    for task in ("vqa-joint", "vqa"):
        out = subprocess.run([sys.executable, "-m", "mmedit_lib", "run", "--editor", "ft-last", "--backbone",
                              BACKBONE, "--task", task, "--n", "4", "--data-dir", str(data if task != "vqa" else world),
                              "--runs-dir", str(toy / "runs")], capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr
        runs.append(next((toy / "runs").glob(f"ft-last-{BACKBONE}-{task}-one-step-*/rows.jsonl")))
    joint, vqa = ([json.loads(line) for line in path.read_text().splitlines()] for path in runs)
    assert [r["case_id"] for r in joint] == [r["case_id"] for r in vqa]  # the same records
    assert [r["rel"] for r in joint] == [r["rel"] for r in vqa]  # the same edits
    assert [r["t_loc"] for r in joint] == [r["t_loc"] for r in vqa]
    # it scores no M-Gen: None in its rows, NaN in its summary (and in the HM, which needs M-Gen)
    assert {r["m_gen"] for r in joint} == {None} and None not in [r["m_gen"] for r in vqa]
    from mmedit_lib.metrics.aggregate import summarize
    summary = summarize(joint, n_boot=50)
    assert summary.loc[["m_gen", "hm"], "mean"].isna().all()
    assert summary.loc[["rel", "t_gen", "t_loc", "m_loc"], "mean"].notna().all()
    with pytest.raises(ValueError, match="some rows score m_gen and others do not"):
        summarize(joint + vqa, n_boot=50)
    assert tracked_changes() == before


def test_a_plugin_that_cannot_be_imported_or_reuses_a_name_is_an_error(tmp_path, monkeypatch):
    with pytest.raises(ImportError, match="no_such_plugin"):
        registry.load_plugins("no_such_plugin")
    (tmp_path / "clash.py").write_text("import dataclasses\nfrom mmedit_lib.editors import ft\n"
                                       "SPEC = dataclasses.replace(ft.SPECS[0], label='mine')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="two editors are named 'ft-last'"):
        registry.load_plugins("clash")
    assert registry.LABELS["ft-last"] == "FT (last layer)"
