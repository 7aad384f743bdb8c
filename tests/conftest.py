import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

from mmedit_lib.paths import REPO_ROOT  # noqa: E402

TINY = ["tiny-blip2-opt", "tiny-minigpt4"]  # the stand-ins of the papers' two backbones
SHIPPED = [*TINY, "tiny-llava"]  # every shipped tiny backbone (tiny-llava: the LLaVA-class one none of the papers ran)
FIXTURES = REPO_ROOT / "tests" / "fixtures"


@pytest.fixture(scope="session")
def shipped():
    """Loaded shipped tiny backbones, by name."""
    from mmedit_lib.backbones.registry import load_backbone
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_backbone(name)
        return cache[name]
    return get


@pytest.fixture(scope="session")
def shipped_as(shipped):
    """Shipped tiny backbones loaded in a dtype, by (name, dtype name); float32 is `shipped`'s."""
    from mmedit_lib.backbones.registry import load_backbone
    cache = {}

    def get(name, dtype="float32"):
        if dtype == "float32":
            return shipped(name)
        if (name, dtype) not in cache:
            cache[name, dtype] = load_backbone(name, dtype=getattr(torch, dtype))
        return cache[name, dtype]
    return get


@pytest.fixture(scope="session")
def smoke_world(shipped, tmp_path_factory):
    """A small world folder with edit cases built from each shipped backbone's errors, by backbone name."""
    from mmedit_lib.backbones.report import answer_fn
    from mmedit_lib.world.writer import case_sizes, write_cases, write_world
    cache = {}

    def get(name):
        if name not in cache:
            root = tmp_path_factory.mktemp(name)
            world = write_world(root, seed=0, n_images=50, n_examples=100)
            bb = shipped(name)
            summary = write_cases(root, world, answer_fn(bb), bb.vqa_template, case_sizes(smoke=True), name)
            cache[name] = (root, summary)
        return cache[name]
    return get
