"""Where the package keeps its outputs.

    >>> from mmedit_lib.paths import RESULTS
    >>> RESULTS.name
    'results'
"""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "results"
BACKBONES_DIR = RESULTS / "backbones"
WORLD_DIR = RESULTS / "world"
