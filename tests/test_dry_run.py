"""The full-size dry run's code path (`runners/dry_run.py`, `python -m mmedit_lib dry-run`), on tiny configs in
float16 and bfloat16: every editor prepares, edits with finite weights and restores bit-exactly; the shipped
published configs build the architectures they name."""
import json

import pytest
import torch

from mmedit_lib.backbones.configs import tiny_blip2_config
from mmedit_lib.cli import main
from mmedit_lib.editors.registry import EDITORS
from mmedit_lib.runners import dry_run as dr


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def tiny(family: str, dtype: str):
    name = "tiny-blip2-opt" if family == "opt" else "tiny-minigpt4"
    words = dr.record_words(dr.dry_run_records(4))
    return dr.random_backbone(name, tiny_blip2_config(family, 400), dr.DTYPES[dtype], 0, words)


def test_every_editor_is_in_the_dry_run():
    assert sorted(dr.ORDER) == sorted(set(EDITORS) - {"unedited"})


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("family", ["opt", "llama"])
def test_every_editor_runs_with_finite_weights_and_exact_restore(family, dtype, tmp_path):
    bb = tiny(family, dtype)
    assert bb.model.dtype == dr.DTYPES[dtype]
    rows = dr.dry_run(bb, workdir=tmp_path)
    assert [r["editor"] for r in rows] == list(dr.ORDER)
    for row in rows:
        assert row["status"] == "ok", (row["editor"], row["status"], row.get("traceback"))
        assert row["nonfinite"] == 0 and row["finite"], f"{row['editor']}: {row['nonfinite']} non-finite weights"
        assert row["restore_exact"], f"{row['editor']}: restore() is not bit-exact"
        assert row["prepare_s"] >= 0 and row["edit_s"] >= 0 and row["process_peak_gib"] > 0
        assert 0.0 <= row["acc_after"] <= 1.0


def test_steps_reach_the_per_edit_editors_only():
    assert dr.editor_overrides("ft-last", 3, 7) == {"steps": 7}
    assert dr.editor_overrides("mend", 3, 7) == {"steps": 5, "norm_cases": 3}  # MEND's steps are prepare's


def test_serac_that_cannot_fit_is_a_row_not_a_crash(monkeypatch, tmp_path):
    monkeypatch.setattr(dr, "mem_available_gib", lambda: 0.0)
    row = dr.dry_run(tiny("opt", "bfloat16"), ["serac"], workdir=tmp_path)[0]
    assert row["status"].startswith("does not fit: needs ") and "0.0 GiB available" in row["status"]


def test_an_editor_that_raises_is_a_row_with_its_traceback(monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("wrong site path")
    import dataclasses
    monkeypatch.setitem(EDITORS, "ft-last", dataclasses.replace(EDITORS["ft-last"], apply=broken))
    row = dr.dry_run(tiny("opt", "bfloat16"), ["ft-last"], workdir=tmp_path)[0]
    assert row["status"] == "error in edit: RuntimeError: wrong site path" and "Traceback" in row["traceback"]
    assert row["restore_exact"]


@pytest.mark.parametrize("name, vocab, eos, image, family", [("blip2-opt-2.7b", 50304, 50118, 50265, "opt"),
                                                             ("minigpt4-7b", 32001, 2, 32000, "llama")])
def test_published_configs_and_their_tokenizers(name, vocab, eos, image, family):
    from transformers import Blip2ForConditionalGeneration
    config = dr.published_config(name)
    assert (config.text_config.vocab_size, config.text_config.eos_token_id, config.image_token_id,
            config.text_config.model_type, config.num_query_tokens) == (vocab, eos, image, family, 32)
    with torch.device("meta"):
        model = Blip2ForConditionalGeneration(config)
    total = sum(p.numel() for p in model.parameters())
    assert 3.7e9 < total < 3.8e9 if family == "opt" else 7.8e9 < total < 7.9e9
    tok = dr.build_tokenizer(config, ["How many zebras?"])
    assert len(tok) == vocab and tok.eos_token_id == eos and tok.convert_tokens_to_ids("<image>") == image
    assert tok.bos_token_id == config.text_config.bos_token_id and tok.pad_token_id == config.text_config.pad_token_id
    assert tok.unk_token_id not in tok("how many zebras ?", add_special_tokens=False)["input_ids"]


def test_the_published_llava_config_is_llava_1_5_7b():
    """llava-hf/llava-1.5-7b-hf's architecture: 7.06B parameters, 576 image tokens, the penultimate CLIP layer."""
    from transformers import LlavaForConditionalGeneration
    from mmedit_lib.backbones.architectures import architecture_of
    config = dr.published_config("llava-1.5-7b")
    arch = architecture_of(config)
    assert (arch.key, arch.n_image_tokens(config), arch.vision_depth(config)) == ("llava", 576, 23)
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    assert 7.06e9 < sum(p.numel() for p in model.parameters()) < 7.07e9
    tok = dr.build_tokenizer(config, ["How many zebras?"])
    assert (len(tok), tok.convert_tokens_to_ids("<image>"), tok.pad_token_id, tok.eos_token_id) == (32064, 32000,
                                                                                                   32001, 2)


def test_unknown_backbone_and_missing_flag_are_refused(capsys):
    with pytest.raises(ValueError, match="no published config for 'tiny-blip2-opt'"):
        dr.published_config("tiny-blip2-opt")
    assert main(["dry-run", "--backbone", "blip2-opt-2.7b"]) == 2
    assert "--random-weights" in capsys.readouterr().err
    assert main(["dry-run", "--backbone", "blip2-opt-2.7b", "--random-weights", "--editors", "nope"]) == 2


def test_table_is_written_as_json_and_csv(tmp_path):
    rows = [{"editor": "ft-last", "status": "ok", "edit_s": 1.0, "restore_exact": True}]
    dr.write_table(rows, {"backbone": "x"}, tmp_path / "t.json")
    assert json.loads((tmp_path / "t.json").read_text())["rows"] == rows
    assert (tmp_path / "t.csv").read_text().splitlines()[0].startswith("editor,status,prepare_s")
    assert "ft-last" in dr.format_table(rows)


def test_the_build_dtype_is_every_tensor_s_dtype():
    # the published text_config's "torch_dtype": "float16" once built the language model in float16 under a
    # bfloat16 build (and ~10x slower on CPU): the shipped copies name no dtype, and a mixed build is refused
    for name in ("blip2-opt-2.7b", "minigpt4-7b"):
        values = json.loads((dr.PUBLISHED_DIR / f"{name}.json").read_text())
        assert all({"torch_dtype", "dtype"}.isdisjoint(values[part])
                   for part in ("vision_config", "qformer_config", "text_config"))
    config = tiny_blip2_config("opt", 300)
    config.text_config.dtype = torch.float16
    with pytest.raises(ValueError, match="float16 besides torch.bfloat16"):
        dr.random_backbone("tiny-blip2-opt", config, torch.bfloat16)


@pytest.mark.parametrize("name, fmt", [("blip2-opt-2.7b", "blip2"), ("minigpt4-7b", "minigpt4-chat")])
def test_a_224px_published_architecture_runs_with_the_real_input_defaults(name, fmt):
    def config():
        made = tiny_blip2_config("opt" if name.startswith("blip2") else "llama", 400)
        made.vision_config.image_size, made.vision_config.patch_size = 224, 14  # the published EVA geometry
        return made
    bb = dr.random_backbone(name, config(), torch.bfloat16)
    assert bb.image_size == 364 and bb.prompt_format.name == fmt  # as load_backbone runs a real checkpoint
    assert bb.model.vision_model.embeddings.position_embedding.shape[1] == 26 * 26 + 1
    assert bb.image_processor.size == {"height": 364, "width": 364}
    kept = dr.random_backbone(name, config(), torch.bfloat16, image_size=224, prompt_format="blip2")
    assert kept.image_size == 224 and kept.prompt_format.name == "blip2"


def test_a_later_invocation_keeps_the_rows_it_does_not_redo_when_run_the_same_way(tmp_path):
    meta = {"backbone": "blip2-opt-2.7b", "dtype": "bfloat16", "random_weights": True, "seed": 0, "steps": None,
            "prepare_cases": 3, "image_size": 364, "prompt_format": "blip2", "torch": torch.__version__,
            "started": "2026-12-01 10:00:00"}
    out = tmp_path / "table.json"
    dr.write_table([{"editor": "grace", "status": "ok"}, {"editor": "serac", "status": "does not fit"}], meta, out)
    kept = dr.kept_rows(out, {**meta, "started": "later"}, ("serac",))
    assert [r["editor"] for r in kept] == ["grace"] and kept[0]["started"] == "2026-12-01 10:00:00"
    assert dr.kept_rows(out, {**meta, "image_size": 224}, ("serac",)) == []  # another setting: replaced whole
    merged = dr.ordered(kept + [{"editor": "ft-last"}, {"editor": "serac"}])
    assert [r["editor"] for r in merged] == ["ft-last", "grace", "serac"]
