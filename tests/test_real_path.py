"""The full-size path without full-size weights: a tiny *random* BLIP-2 OPT saved in the Hugging Face layout stands
where blip2-opt-2.7b would be ($MMEDIT_BLIP2_OPT_PATH), and the official MMEdit layout (`vqa/vqa_eval.json`, COCO
folders beside it) is built from the real records in tests/fixtures; one notebook then runs end to end under
papermill with the parameters a GPU user passes (`backbone=`, `data_dir=`)."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FIXTURES
from mmedit_lib.backbones.configs import tiny_blip2_config
from mmedit_lib.backbones.registry import save_tiny_backbone
from mmedit_lib.data.loaders import load_records
from mmedit_lib.paths import BACKBONES_DIR, REPO_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_layout(tmp_path_factory):
    from transformers import AutoTokenizer, Blip2ForConditionalGeneration
    root = tmp_path_factory.mktemp("real")
    tokenizer = AutoTokenizer.from_pretrained(BACKBONES_DIR / "tiny-blip2-opt", local_files_only=True)
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration(tiny_blip2_config("opt", vocab_size=len(tokenizer)))
    save_tiny_backbone(root / "blip2-opt-2.7b", model, tokenizer)
    data = root / "editing-data"
    (data / "vqa").mkdir(parents=True)
    for split in ("eval", "train"):  # the sample is all there is: it serves as both splits here
        shutil.copy(FIXTURES / "mmedit_vqa_eval_sample.json", data / "vqa" / f"vqa_{split}.json")
    rng = np.random.default_rng(0)
    for record in load_records(data / "vqa" / "vqa_eval.json"):
        for path in (record.image, record.image_rephrase, record.m_loc):
            (data / path).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(data / path)
    return root, data


def test_a_notebook_runs_end_to_end_on_a_real_layout_through_backbone_and_data_dir(real_layout, tmp_path,
                                                                                  monkeypatch):
    import papermill
    root, data = real_layout
    monkeypatch.setenv("MMEDIT_BLIP2_OPT_PATH", str(root / "blip2-opt-2.7b"))
    monkeypatch.setenv("MMEDIT_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MMEDIT_EXECUTED_DIR", str(tmp_path / "executed"))
    papermill.execute_notebook(str(REPO_ROOT / "notebooks" / "unike_table1_onestep.ipynb"),
                               str(tmp_path / "out.ipynb"), kernel_name="python3", progress_bar=False,
                               cwd=str(REPO_ROOT / "notebooks"),
                               parameters={"backbone": "blip2-opt-2.7b", "data_dir": str(data), "tasks": ["vqa"],
                                           "editors": ["unedited", "ft-last"], "n_edits": 4})
    executed = json.loads((tmp_path / "out.ipynb").read_text())
    assert not [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    manifests = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/manifest.json")]
    assert sorted(m["key"]["editor"] for m in manifests) == ["ft-last", "unedited"]
    assert all(m["key"]["backbone"] == "blip2-opt-2.7b" and m["status"] == "complete" for m in manifests)
    assert all("vqa/vqa_eval.json" in m["key"]["data"] for m in manifests)  # the official file name was read
    assert (tmp_path / "executed" / "unike_table1_onestep.verdicts.json").exists()
    assert not (REPO_ROOT / "results" / "runs").exists() or not any(
        "blip2-opt-2.7b" in p.name for p in (REPO_ROOT / "results" / "runs").iterdir())
