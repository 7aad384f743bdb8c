"""Backbone registry: name -> how to load it. Real checkpoints load from a local folder only.

    >>> from mmedit_lib.backbones.registry import BACKBONES, load_backbone
    >>> sorted(BACKBONES)
    ['blip2-opt-2.7b', 'minigpt4-7b', 'tiny-blip2-opt', 'tiny-minigpt4']
    >>> bb = load_backbone("tiny-blip2-opt")                     # shipped weights   # doctest: +SKIP
    >>> bb = load_backbone("blip2-opt-2.7b", path="/models/blip2-opt-2.7b")           # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from ..paths import BACKBONES_DIR
from .backbone import Backbone


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    name: str
    family: str  # decoder family: "opt" or "llama"
    tiny: bool
    vqa_template: str
    path_env: str | None = None  # environment variable naming the local folder of a real checkpoint


BACKBONES = {s.name: s for s in [
    BackboneSpec("tiny-blip2-opt", "opt", True, "question : {} short answer :"),
    BackboneSpec("tiny-minigpt4", "llama", True, "question : {} short answer :"),
    BackboneSpec("blip2-opt-2.7b", "opt", False, "Question: {} Short answer:", "MMEDIT_BLIP2_OPT_PATH"),
    # MiniGPT-4 (Vicuna-7B) converted into Blip2ForConditionalGeneration by `convert_minigpt4`; the image tokens go
    # before <s> as for every backbone here (MiniGPT-4's own chat template puts them inside "###Human: <Img>...").
    BackboneSpec("minigpt4-7b", "llama", False, "Question: {} Short answer:", "MMEDIT_MINIGPT4_PATH"),
]}


def default_path(name: str) -> Path | None:
    spec = get_spec(name)
    if spec.tiny:
        return BACKBONES_DIR / name
    value = os.environ.get(spec.path_env or "")
    return Path(value) if value else None


def get_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}")
    return BACKBONES[name]


def default_device(name: str) -> str:
    """Tiny backbones run on CPU (their runs are deterministic there); real ones on the GPU when there is one."""
    return "cuda" if not get_spec(name).tiny and torch.cuda.is_available() else "cpu"


def load_backbone(name: str, path: str | Path | None = None, device: str | None = None,
                  dtype: torch.dtype | None = None) -> Backbone:
    """Load a registered backbone from `path` (default: the shipped folder, or $MMEDIT_..._PATH for real ones),
    on `device` (default: `default_device(name)`), in float32 on CPU and float16 on a GPU unless `dtype` says."""
    device = device or default_device(name)
    from transformers import AutoImageProcessor, AutoTokenizer, Blip2ForConditionalGeneration
    spec = get_spec(name)
    folder = Path(path) if path is not None else default_path(name)
    if folder is None:
        raise FileNotFoundError(f"{name} is a full-size checkpoint: pass path=... or set ${spec.path_env} to a local "
                                f"folder in the Hugging Face layout (nothing is downloaded)")
    if not (folder / "config.json").is_file():
        hint = f"; train it with `python -m mmedit_lib train-backbone {name}`" if spec.tiny else ""
        raise FileNotFoundError(f"no checkpoint for {name} at {folder} (config.json missing){hint}")
    if dtype is None:
        dtype = torch.float32 if device == "cpu" else torch.float16
    model = Blip2ForConditionalGeneration.from_pretrained(folder, local_files_only=True, dtype=dtype).to(device)
    family = model.config.text_config.model_type
    if family != spec.family:
        raise ValueError(f"{folder} holds a {family} decoder but {name} expects {spec.family}")
    if getattr(model.config, "image_token_id", None) is None:
        raise ValueError(f"{folder}/config.json has no image_token_index: re-save it with a transformers version "
                         f"that expands image tokens (>= 4.47)")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    image_processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    return Backbone(name, model, tokenizer, image_processor, family, vqa_template=spec.vqa_template)


def save_tiny_backbone(folder: Path, model, tokenizer) -> None:
    """Weights (safetensors), config, tokenizer and the image processor, in the Hugging Face layout."""
    from transformers import BlipImageProcessorPil
    from .configs import IMAGE_SIZE
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=[0.5] * 3,
                          image_std=[0.5] * 3, do_convert_rgb=True).save_pretrained(folder)
