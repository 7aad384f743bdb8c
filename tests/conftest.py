import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

from mmedit_lib.paths import BACKBONES_DIR, REPO_ROOT  # noqa: E402

TINY = ["tiny-blip2-opt", "tiny-minigpt4"]
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
