"""What a real run meets and the tiny defaults never showed: half precision, the config's stop tokens, EasyEdit's
364-px input with interpolated position embeddings, MiniGPT-4's chat format, and how a run records them."""
import dataclasses
import json

import pytest
import torch
from transformers import Blip2ForConditionalGeneration

from mmedit_lib.backbones.backbone import Backbone, Query, state_hash
from mmedit_lib.backbones.configs import tiny_blip2_config
from mmedit_lib.backbones.prompt_format import FORMATS
from mmedit_lib.backbones.registry import load_backbone, resolve_dtype, save_tiny_backbone
from mmedit_lib.editors.base import EditRequest
from mmedit_lib.editors.float32 import Float32Adam
from mmedit_lib.editors.registry import make_editor
from mmedit_lib.paths import REPO_ROOT

from test_backbones import image, random_backbone


def finite(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


# ---- 1. half precision ----------------------------------------------------------------------------------------
def test_float32_adam_steps_half_tensors_as_float32_adam_steps_their_float32_copies():
    torch.manual_seed(0)
    start = torch.randn(64)
    reference = start.clone().requires_grad_(True)
    plain = torch.optim.Adam([reference], lr=1e-3)
    half = start.to(torch.float16).requires_grad_(True)
    ours = Float32Adam([half], lr=1e-3)
    for _ in range(5):
        plain.zero_grad()
        ((reference - 3) ** 2).sum().backward()
        plain.step()
        assert ours.step_on(((half.float() - 3) ** 2).sum())
    assert half.dtype == torch.float16 and bool(torch.isfinite(half).all())
    # a float16 Adam would not move at all (eps 1e-8 is 0 in float16) or go non-finite; ours moves as float32 does
    torch.testing.assert_close(half.float(), reference.detach().to(torch.float16).float(), rtol=0, atol=2e-3)
    assert not torch.equal(half.float(), start.to(torch.float16).float())


def test_a_step_with_a_non_finite_gradient_is_skipped_and_the_loss_scale_halved():
    weight = torch.ones(3, dtype=torch.float16, requires_grad=True)
    optimizer = Float32Adam([weight], lr=0.1)
    scale = optimizer.scale
    assert not optimizer.step_on((weight.float() * float("inf")).sum())
    assert torch.equal(weight, torch.ones(3, dtype=torch.float16)) and optimizer.scale == scale / 2


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_an_ft_edit_of_a_half_precision_backbone_takes_and_leaves_every_weight_finite(dtype, shipped_as):
    bb = shipped_as("tiny-blip2-opt", dtype)
    query = Query(image(3), bb.vqa_prompt("what color is the circle ?"), "red")
    before = state_hash(bb.model)
    edit = make_editor("ft-last", backbone="tiny-blip2-opt").edit(bb, EditRequest(query))
    assert finite(bb.model), "the edit left non-finite weights"  # float16 Adam: 132,480 of them
    assert bb.loss([query]).item() < 0.1 and bb.greedy([query]) == ["red"]
    edit.restore()
    assert state_hash(bb.model) == before


def test_a_config_whose_text_part_names_float16_still_loads_wholly_in_the_dtype_asked_for(tmp_path):
    bb = random_backbone("opt", seed=2)
    bb.model.config.text_config.torch_dtype = "float16"  # as Salesforce/blip2-opt-2.7b's published config.json
    save_tiny_backbone(tmp_path, bb.model, bb.tokenizer)
    loaded = load_backbone("blip2-opt-2.7b", path=tmp_path, dtype="bfloat16")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}


def test_the_gpu_default_is_bfloat16_and_cpu_float32_and_mmedit_dtype_overrides(monkeypatch):
    monkeypatch.delenv("MMEDIT_DTYPE", raising=False)
    assert resolve_dtype("cpu") == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_dtype("cuda") == torch.bfloat16
    monkeypatch.setenv("MMEDIT_DTYPE", "float16")
    assert resolve_dtype("cpu") == torch.float16 and resolve_dtype("cpu", "bfloat16") == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'half'"):
        resolve_dtype("cpu", "half")


# ---- 3. stop tokens from the config ----------------------------------------------------------------------------
def test_greedy_stops_at_the_configs_eos_ids_not_only_at_the_tokenizers():
    bb = random_backbone("opt", seed=3)
    query = Query(image(1), bb.vqa_prompt("what color is the circle ?"))
    full = bb.greedy([query], max_new_tokens=6)[0].split()
    cut = next(i for i in range(1, len(full)) if full[i] not in full[:i])  # a word not generated before it
    terminator = bb.tokenizer.convert_tokens_to_ids(full[cut])  # as 50118 ("\n") ends BLIP-2 OPT-2.7b's answers
    bb.model.config.text_config.eos_token_id = [bb.tokenizer.eos_token_id, terminator]
    stopped = Backbone(bb.name, bb.model, bb.tokenizer, bb.image_processor, "opt", bb.vqa_template)
    assert terminator in stopped.stop_ids and bb.tokenizer.eos_token_id in stopped.stop_ids
    assert stopped.greedy([query], max_new_tokens=6)[0].split() == full[:cut]


def test_minigpt4s_chat_answers_end_at_its_next_turn_marker():
    bb = random_backbone("llama", seed=3)
    query = Query(image(1), bb.vqa_prompt("what color is the circle ?"))
    chat = FORMATS["minigpt4-chat"]
    assert chat.stop == "###" and FORMATS["blip2"].stop == ""
    full = Backbone(bb.name, bb.model, bb.tokenizer, bb.image_processor, "llama", bb.vqa_template,
                    prompt_format=dataclasses.replace(chat, stop="")).greedy([query], max_new_tokens=6)[0].split()
    assert full  # a tiny vocabulary has no "###": the word the model writes first stands in for it

    def answer(stop):
        return Backbone(bb.name, bb.model, bb.tokenizer, bb.image_processor, "llama", bb.vqa_template,
                        prompt_format=dataclasses.replace(chat, stop=stop)).greedy([query], max_new_tokens=6)[0]
    assert answer(full[0]) == ""  # cut where the stop text begins
    assert answer("###").split() == full  # a stop text it never writes changes nothing


# ---- 5. the papers' input -------------------------------------------------------------------------------------
def blip2_at(size: int, patch: int, seed: int = 0) -> Backbone:
    bb = random_backbone("opt", seed=seed)
    config = tiny_blip2_config("opt", len(bb.tokenizer), 2)
    config.vision_config.image_size, config.vision_config.patch_size = size, patch
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config).eval()
    return Backbone(bb.name, model, bb.tokenizer, bb.image_processor, "opt", bb.vqa_template)


def test_a_224_px_real_checkpoint_runs_at_364_px_with_interpolated_position_embeddings(tmp_path):
    bb = blip2_at(224, 14)
    save_tiny_backbone(tmp_path, bb.model, bb.tokenizer)
    at_364 = load_backbone("blip2-opt-2.7b", path=tmp_path)  # EasyEdit's size is the default of real backbones
    at_224 = load_backbone("blip2-opt-2.7b", path=tmp_path, image_size=224)
    assert (at_364.image_size, at_224.image_size) == (364, 224)
    assert at_364.model.vision_model.embeddings.position_embedding.shape[1] == 26 * 26 + 1
    assert at_364.image_processor.size == {"height": 364, "width": 364}
    pixels = at_364.pixel_values([image(2)])
    assert pixels.shape[-1] == 364
    # the same bicubic resize of the 16x16 grid transformers' own interpolate_pos_encoding computes per forward
    with torch.no_grad():
        expected = at_224.model.get_image_features(pixel_values=pixels, interpolate_pos_encoding=True,
                                                   return_dict=True).pooler_output
        torch.testing.assert_close(at_364.image_features(pixels), expected, rtol=1e-5, atol=1e-5)
    assert state_hash(at_224.model) == state_hash(bb.model)


def test_minigpt4s_chat_format_wraps_the_image_without_bos_and_context_positions_are_still_skipped():
    bb = random_backbone("llama", seed=4)
    chat = Backbone(bb.name, bb.model, bb.tokenizer, bb.image_processor, "llama", bb.vqa_template,
                    prompt_format=FORMATS["minigpt4-chat"])
    query = Query(image(5), bb.vqa_prompt("what color is the circle ?"), "red")
    ids = chat.encode([query]).input_ids[0].tolist()
    ids_of = chat._ids
    head = ids_of("###Human: <Img>") + [chat.image_token_id] * chat.n_image_tokens + ids_of("</Img> ")
    assert ids == head + ids_of(query.prompt) + chat.target_ids("red")
    assert chat.tokenizer.bos_token_id not in ids
    assert bb.encode([query]).input_ids[0].tolist()[chat.n_image_tokens] == bb.tokenizer.bos_token_id
    with_context = dataclasses.replace(query, context="the circle is red .")
    plain, contextual = chat.query_logits([query, with_context])
    assert plain.sequence.shape == contextual.sequence.shape  # the context's positions are skipped
    text_only = Query(None, "what is the capital of france ?", "paris")
    assert chat.encode([text_only]).input_ids[0].tolist()[0] == chat.tokenizer.bos_token_id


# ---- a run records all of it ---------------------------------------------------------------------------------
def test_a_float16_run_edits_and_records_its_dtype_image_size_and_format_in_the_key_and_rows(smoke_world, tmp_path):
    from mmedit_lib.runners.run import RunSpec, run
    world, _ = smoke_world("tiny-blip2-opt")
    spec = RunSpec(editor="ft-last", backbone="tiny-blip2-opt", n=4, data_dir=str(world), dtype="float16")
    result = run(spec, runs_dir=tmp_path / "runs", progress=False)
    assert sum(r["rel"] for r in result.rows) > 0
    key = result.manifest["key"]
    assert (key["dtype"], key["image_size"], key["prompt_format"]) == ("float16", 64, "blip2")
    assert all(r["dtype"] == "float16" for r in result.rows)
    assert result.manifest["data"]["vqa/eval"]["n_skipped"] == 0
    float32 = run(dataclasses.replace(spec, dtype="float32"), runs_dir=tmp_path / "runs", progress=False)
    assert float32.run_id != result.run_id
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        RunSpec(editor="ft-last", backbone="tiny-blip2-opt", dtype="fp8").check()


def test_every_paper_notebook_takes_dtype_and_the_image_roots_and_passes_them_on():
    import nbformat
    for path in sorted((REPO_ROOT / "notebooks").glob("*.ipynb")):
        if path.stem == "world_tour":
            continue
        cells = nbformat.read(path, as_version=4).cells
        parameters = next(c.source for c in cells if "parameters" in c.metadata.get("tags", []))
        assert all(f"\n{name} = None" in parameters for name in ("dtype", "image_root", "rephrase_image_root")), path
        assert any("start(dtype=dtype, image_root=image_root, rephrase_image_root=rephrase_image_root)"
                   in c.source for c in cells if c.cell_type == "code"), path  # chapter.start -> inputs.use_inputs


def test_use_inputs_sets_what_the_loaders_read(monkeypatch, tmp_path):
    from mmedit_lib.data.loaders import image_roots
    from mmedit_lib.inputs import use_inputs
    import os  # a copy of the environment for this test alone: use_inputs writes to os.environ
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith("MMEDIT_")})
    assert use_inputs(dtype="bfloat16", image_root=str(tmp_path)) == {
        "dtype": "bfloat16", "image_root": str(tmp_path), "rephrase_image_root": None}
    assert resolve_dtype("cpu") == torch.bfloat16
    assert image_roots(tmp_path / "vqa" / "eval.json", []) == (tmp_path, tmp_path)
    with pytest.raises(ValueError, match="unknown dtype"):
        use_inputs(dtype="int8")
    json.dumps(use_inputs())


def test_a_chapter_starts_with_the_inputs_passed_on_and_one_thread(monkeypatch):
    """`chapter.start`, which every chapter calls after its parameters: the inputs reach the environment the loaders
    read (an unknown dtype is refused before anything is set), and torch runs on one thread."""
    from mmedit_lib.chapter import start
    import os
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith("MMEDIT_")})
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert start(dtype="float16", rephrase_image_root="/data/rephrase")["rephrase_image_root"] == "/data/rephrase"
        assert os.environ["MMEDIT_DTYPE"] == "float16" and torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="unknown dtype"):
            start(dtype="int4")
    finally:
        torch.set_num_threads(threads)
