"""The on-disk cache of what editors' `prepare` builds (hypernetworks, classifiers, indexes, memories).

    >>> path = cache_path("results/prepared", "mend", "tiny-blip2-opt", key)         # doctest: +SKIP
    >>> artefact, meta = load_or_build(path, key, lambda: build(...))                 # doctest: +SKIP
    >>> meta["prepare_seconds"]                                                      # doctest: +SKIP

An artefact is keyed by the editor, the hparams `prepare` reads, the backbone's weights (SHA-256) and the train
records; it is written atomically (a killed build leaves nothing), with a JSON sidecar saying what it is and how
long it took to build, so a reused artefact still reports its real prepare time.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..locks import exclusive


def records_digest(records: list) -> str:
    """SHA-256 of the records' content (field values in order): the train split a `prepare` saw."""
    digest = hashlib.sha256()
    for r in records:
        fields = dataclasses.asdict(r) if dataclasses.is_dataclass(r) else r
        digest.update(json.dumps(fields, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def cache_path(root: str | Path, editor: str, backbone: str, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(root) / editor / f"{backbone}-{digest}.pt"


def load_or_build(path: Path | None, key: dict, build: Callable[[], Any]) -> tuple[Any, dict]:
    """(artefact, meta): loaded from `path` when it holds this key, else built, timed and saved there."""
    if path is None:
        return _load_or_build(None, key, build)
    with exclusive(path.with_suffix(".lock")):  # two processes preparing the same artefact: one builds it
        return _load_or_build(path, key, build)


def _load_or_build(path: Path | None, key: dict, build: Callable[[], Any]) -> tuple[Any, dict]:
    meta_path = path.with_suffix(".json") if path is not None else None
    if path is not None and path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == json.loads(json.dumps(key, default=str)):
            return torch.load(path, weights_only=False), {**meta, "cached": True}
    started = time.perf_counter()
    artefact = build()
    meta = {"key": json.loads(json.dumps(key, default=str)), "prepare_seconds": round(time.perf_counter() - started, 3)}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(artefact, tmp)
        os.replace(tmp, path)
        meta_tmp = meta_path.with_name(meta_path.name + ".tmp")
        meta_tmp.write_text(json.dumps(meta, indent=1) + "\n")
        os.replace(meta_tmp, meta_path)
    return artefact, {**meta, "cached": False}
