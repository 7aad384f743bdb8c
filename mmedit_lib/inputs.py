"""The inputs a notebook's parameters choose for every run and backbone it loads: dtype and image folders.

    >>> use_inputs(dtype="bfloat16", image_root="/data/mmedit/editing-data")             # doctest: +SKIP
    {'dtype': 'bfloat16', 'image_root': '/data/mmedit/editing-data', 'rephrase_image_root': None}

Each paper notebook has the parameters `dtype`, `image_root` and `rephrase_image_root` (papermill `-p`, or
`python -m mmedit_lib notebooks --param dtype=float16`) and passes them here first. They become $MMEDIT_DTYPE,
$MMEDIT_IMAGE_ROOT and $MMEDIT_REPHRASE_IMAGE_ROOT, which `backbones.registry.resolve_dtype` and
`data.loaders.image_roots` read, so every backbone the report helpers load and every case they read follow them,
and each run records the dtype it ran in. None leaves a variable as it is (a value set in the shell still counts).
"""
from __future__ import annotations

import os

VARIABLES = {"dtype": "MMEDIT_DTYPE", "image_root": "MMEDIT_IMAGE_ROOT",
             "rephrase_image_root": "MMEDIT_REPHRASE_IMAGE_ROOT"}


def use_inputs(dtype: str | None = None, image_root: str | None = None,
               rephrase_image_root: str | None = None) -> dict:
    """Set the variables for the values given (ValueError for an unknown dtype); returns what is in force."""
    from .backbones.registry import DTYPES
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    for name, value in {"dtype": dtype, "image_root": image_root, "rephrase_image_root": rephrase_image_root}.items():
        if value is not None:
            os.environ[VARIABLES[name]] = str(value)
    return {name: os.environ.get(variable) for name, variable in VARIABLES.items()}
