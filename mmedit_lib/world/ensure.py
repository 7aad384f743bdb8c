"""The world folder a notebook or run needs, built once when missing.

    >>> root = ensure_world("tiny-blip2-opt", smoke=True)     # doctest: +SKIP
    >>> (root / "vqa" / "eval.json").exists()                  # doctest: +SKIP
    True

The full world is `results/world/<backbone>` (what `make world` builds); the smoke world (a handful of cases per
split, seconds to build) is `results/smoke/world/<backbone>`. Both are deterministic for the seed.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..paths import REPO_ROOT, WORLD_DIR

SMOKE_DIR = REPO_ROOT / "results" / "smoke"


def world_dir(backbone: str, smoke: bool = False) -> Path:
    return (SMOKE_DIR / "world" if smoke else WORLD_DIR) / backbone


def runs_dir(smoke: bool = False) -> Path:
    """Where notebooks keep their runs: `$MMEDIT_RUNS_DIR` when set (a real-backbone session, a test), else
    results/runs (smoke: results/smoke/runs). Prepared artefacts go beside it, in `<runs_dir>/../prepared`."""
    if os.environ.get("MMEDIT_RUNS_DIR"):
        return Path(os.environ["MMEDIT_RUNS_DIR"])
    return SMOKE_DIR / "runs" if smoke else REPO_ROOT / "results" / "runs"


def ensure_world(backbone: str, smoke: bool = False, seed: int = 0, bb=None) -> Path:
    """The world folder with `backbone`'s edit cases; builds it (smoke: small) when its cases.json is missing."""
    from ..backbones.backbone import state_hash
    from ..backbones.registry import load_backbone
    from ..backbones.report import answer_fn
    from .writer import case_sizes, write_cases, write_world
    root = world_dir(backbone, smoke)
    if (root / "cases.json").exists():
        return root
    world = write_world(root, seed=seed, **({"n_images": 100, "n_examples": 300} if smoke else {}))
    bb = bb or load_backbone(backbone)
    write_cases(root, world, answer_fn(bb), bb.vqa_template, case_sizes(smoke), backbone,
                provenance={"backbone_state_sha256": state_hash(bb.model)})
    return root
