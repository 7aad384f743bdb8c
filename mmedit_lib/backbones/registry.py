"""Backbone registry: name -> how to load it. Real checkpoints load from a local folder only.

    >>> from mmedit_lib.backbones.registry import BACKBONES, load_backbone
    >>> sorted(BACKBONES)
    ['blip2-opt-2.7b', 'llava-1.5-7b', 'minigpt4-7b', 'tiny-blip2-opt', 'tiny-llava', 'tiny-minigpt4']
    >>> bb = load_backbone("tiny-blip2-opt")                     # shipped weights   # doctest: +SKIP
    >>> bb = load_backbone("blip2-opt-2.7b", path="/models/blip2-opt-2.7b")           # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from ..paths import BACKBONES_DIR
from .architectures import architecture_of
from .backbone import Backbone
from .prompt_format import LLAVA_VQA_TEMPLATE, REAL_VQA_TEMPLATE, TINY_VQA_TEMPLATE, get_format


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    name: str
    family: str  # decoder family: "opt" or "llama"
    tiny: bool
    vqa_template: str
    path_env: str | None = None  # environment variable naming the local folder of a real checkpoint
    # (checkpoint px, run px): images of a checkpoint built at the first size are run at the second (None: as built)
    image_size: tuple[int, int] | None = None
    prompt_format: str = "blip2"  # how the image is wrapped in the prompt (`prompt_format.FORMATS`)
    paper: str = ""  # the papers' backbone it stands for or is ("blip2-opt" | "minigpt4": reference's `backbone`;
    #                  "" for LLaVA, which none of the papers ran)
    architecture: str = "blip2"  # "blip2" | "llava": the transformers class (`architectures.py`), for training


# EasyEdit runs both real backbones at 364 px: LAVIS's EVA ViT-g built with img_size=364, the 224-px checkpoint's
# 16x16 position embeddings interpolated to 26x26 when it loads (`interpolate_position_embeddings`), and MiniGPT-4
# in its chat format. `image_size=224` and `prompt_format="blip2"` are the options; a checkpoint built at another
# size (the tiny random stand-ins of the tests) runs at its own unless `image_size` says.
BACKBONES = {s.name: s for s in [
    BackboneSpec("tiny-blip2-opt", "opt", True, TINY_VQA_TEMPLATE, paper="blip2-opt"),
    BackboneSpec("tiny-minigpt4", "llama", True, TINY_VQA_TEMPLATE, paper="minigpt4"),
    BackboneSpec("blip2-opt-2.7b", "opt", False, REAL_VQA_TEMPLATE, "MMEDIT_BLIP2_OPT_PATH", (224, 364),
                 paper="blip2-opt"),
    # MiniGPT-4 (Vicuna-7B) converted into Blip2ForConditionalGeneration by `convert_minigpt4`
    BackboneSpec("minigpt4-7b", "llama", False, REAL_VQA_TEMPLATE, "MMEDIT_MINIGPT4_PATH", (224, 364),
                 "minigpt4-chat", paper="minigpt4"),
    # LLaVA-1.5 (CLIP ViT-L/14-336, MLP projector, Vicuna-7B v1.5): llava-hf/llava-1.5-7b-hf's folder, run at its
    # own 336 px in its conversation format; its tiny stand-in is trained like the other two
    BackboneSpec("tiny-llava", "llama", True, TINY_VQA_TEMPLATE, architecture="llava"),
    BackboneSpec("llava-1.5-7b", "llama", False, LLAVA_VQA_TEMPLATE, "MMEDIT_LLAVA_PATH", None, "llava-1.5",
                 architecture="llava"),
]}
# backbone -> the papers' backbone whose numbers it is compared with (the one map: reports and notebooks read it)
PAPER_BACKBONE = {name: spec.paper for name, spec in BACKBONES.items()}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(device: str, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """`dtype` (a name or a torch dtype), else $MMEDIT_DTYPE, else float32 on CPU and bfloat16 on a GPU (float16
    on a GPU without bfloat16). Why bfloat16: it has float32's exponent range, so activations and gradients of a
    full-size model cannot overflow as float16's (max 65504) can; editors train in float32 either way.

        >>> resolve_dtype("cpu"), resolve_dtype("cpu", "bfloat16")
        (torch.float32, torch.bfloat16)
    """
    dtype = dtype or os.environ.get("MMEDIT_DTYPE") or None
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"unsupported dtype {dtype}; known: {', '.join(DTYPES)}")
        return dtype
    if dtype is not None:
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
        return DTYPES[dtype]
    if device == "cpu":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)


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
                  dtype: str | torch.dtype | None = None, image_size: int | None = None,
                  prompt_format: str | None = None) -> Backbone:
    """Load a registered backbone from `path` (default: the shipped folder, or $MMEDIT_..._PATH for real ones),
    on `device` (default: `default_device(name)`), in `dtype` (default: `resolve_dtype`), its images at
    `image_size` pixels (default: the spec's, 364 for a real 224-px checkpoint; position embeddings interpolated when
    it differs from the checkpoint's), its prompts in `prompt_format` (default: the spec's)."""
    device = device or default_device(name)
    import transformers
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer
    spec = get_spec(name)
    folder = Path(path) if path is not None else default_path(name)
    if folder is None:
        raise FileNotFoundError(f"{name} is a full-size checkpoint: pass path=... or set ${spec.path_env} to a local "
                                f"folder in the Hugging Face layout (nothing is downloaded)")
    if not (folder / "config.json").is_file():
        hint = f"; train it with `python -m mmedit_lib train-backbone {name}`" if spec.tiny else ""
        raise FileNotFoundError(f"no checkpoint for {name} at {folder} (config.json missing){hint}")
    dtype = resolve_dtype(device, dtype)
    fmt = get_format(prompt_format or spec.prompt_format)
    # an explicit dtype wins over the one a published sub-config names (blip2-opt-2.7b's text_config says float16):
    # the whole model is in `dtype` (tests/test_real_inputs.py)
    arch = architecture_of(AutoConfig.from_pretrained(folder, local_files_only=True))
    if arch.key != spec.architecture:
        raise ValueError(f"{folder} holds a {arch.model_class} but {name} is a {spec.architecture} backbone")
    model = getattr(transformers, arch.model_class).from_pretrained(folder, local_files_only=True,
                                                                    dtype=dtype).to(device)
    # LAVIS's ln_vision has LayerNorm's default eps (1e-5), its EVA blocks 1e-6; transformers' vision config has one
    # eps for both, so a converted MiniGPT-4 carries ln_vision's own as `post_layernorm_eps` (convert_minigpt4)
    post_eps = getattr(model.config.vision_config, "post_layernorm_eps", None)
    if post_eps is not None:
        model.get_submodule(arch.image_side[0]).post_layernorm.eps = post_eps
    family = model.config.text_config.model_type
    if family != spec.family:
        raise ValueError(f"{folder} holds a {family} decoder but {name} expects {spec.family}")
    if getattr(model.config, "image_token_id", None) is None:
        raise ValueError(f"{folder}/config.json has no image_token_index: re-save it with a transformers version "
                         f"that expands image tokens (>= 4.47)")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if tokenizer.pad_token_id is None:  # LLaMA folders have none; MiniGPT-4 and EasyEdit pad with </s>
        tokenizer.pad_token = tokenizer.eos_token
    image_processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    set_inputs(model, image_processor, spec, image_size)
    return Backbone(name, model, tokenizer, image_processor, family, vqa_template=spec.vqa_template,
                    prompt_format=fmt)


def set_inputs(model, image_processor, spec: BackboneSpec | None, image_size: int | None = None) -> int:
    """Run `model` at `image_size` pixels (default: the spec's, 364 for a real 224-px checkpoint; the checkpoint's
    own otherwise): position embeddings interpolated and the processor resized when that differs from the built
    size. Returns the size. The one place a loaded and a randomly built backbone (the dry run) get their input size.

        >>> set_inputs(model, processor, get_spec("blip2-opt-2.7b"))   # a 224-px checkpoint  # doctest: +SKIP
        364
    """
    built = model.config.vision_config.image_size
    rule = spec.image_size if spec is not None else None
    size = image_size or (rule[1] if rule and rule[0] == built else built)
    if size != built:
        interpolate_position_embeddings(model, size)
        image_processor.size = {"height": size, "width": size}
    return size


def interpolate_position_embeddings(model, image_size: int) -> None:
    """Resize the ViT's position embeddings to `image_size` pixels, as LAVIS's `interpolate_pos_embed` does when it
    builds EVA ViT-g at 364 px from the 224-px checkpoint: the class position kept, the patch grid resized bicubically
    (align_corners False) in float32, then cast back.

        >>> interpolate_position_embeddings(model, 364)            # 16x16 -> 26x26 patches  # doctest: +SKIP
    """
    if architecture_of(model.config).key != "blip2":
        raise ValueError(f"position-embedding interpolation is BLIP-2's (LAVIS's EVA at 364 px); "
                         f"{architecture_of(model.config).name} runs at its own size")
    embeddings = model.vision_model.embeddings
    patch = model.config.vision_config.patch_size
    if image_size % patch:
        raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch}")
    table = embeddings.position_embedding.detach()
    old_grid, new_grid, width = int(round((table.shape[1] - 1) ** 0.5)), image_size // patch, table.shape[-1]
    grid = table[:, 1:].float().reshape(1, old_grid, old_grid, width).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(grid, size=(new_grid, new_grid), mode="bicubic", align_corners=False)
    resized = torch.cat([table[:, :1].float(), grid.permute(0, 2, 3, 1).reshape(1, new_grid ** 2, width)], dim=1)
    flag = embeddings.position_embedding.requires_grad
    embeddings.position_embedding = torch.nn.Parameter(resized.to(table.dtype), requires_grad=flag)
    embeddings.image_size, embeddings.num_patches = image_size, new_grid ** 2
    embeddings.num_positions = new_grid ** 2 + 1
    model.config.vision_config.image_size = image_size


def save_tiny_backbone(folder: Path, model, tokenizer) -> None:
    """Weights (safetensors), config, tokenizer and the image processor, in the Hugging Face layout."""
    from transformers import BlipImageProcessorPil
    from .configs import IMAGE_SIZE
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=[0.5] * 3,
                          image_std=[0.5] * 3, do_convert_rgb=True).save_pretrained(folder)
