"""Recompute part of a stored run with today's code and compare its rows: how a refactor shows it changed no result.

    >>> report = recompute("/tmp/old/results/runs/mend-tiny-blip2-opt-vqa-one-step-15c28c8fde", "/tmp/check",
    ...                    groups=20)                                                        # doctest: +SKIP
    >>> report["identical"], report["rows"]                                                   # doctest: +SKIP
    (True, 20)

The stored run is copied into `work_dir`, its first `groups` groups of rows are dropped and the run is resumed, so
the runner recomputes exactly those groups (the same seeds, the same locality reference per case) from the run's
own key: the editor, its full hparams, the backbone's weights (by hash), the data (by hash) and the protocols. If
today's code derives another key from the same settings (a changed default, a renamed field), the run id differs and
this says so instead of comparing. `prepare` runs afresh unless `prepared_dir` holds its artefact. Every field of
every recomputed row is compared except timings, memory and provenance (`VOLATILE`).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from .run import TIMING_FIELDS, RunSpec, run

VOLATILE = (*TIMING_FIELDS, "git_sha", "versions")
SETTING_OF_LABEL = {"one-step": "one-step", "cross-task": "cross-task"}  # else "seq-<k>" -> "seq"


def spec_of(manifest: dict) -> RunSpec:
    """The RunSpec that produced a stored run, from its manifest (its data folder from the files it read)."""
    key = manifest["key"]
    files = [Path(d["file"]) for d in manifest.get("data", {}).values()]
    if not files:
        raise ValueError(f"{manifest['run_id']}: its manifest names no data file to recompute it from")
    return RunSpec(editor=key["editor"], backbone=key["backbone"], task=key["task"],
                   setting=SETTING_OF_LABEL.get(key["setting"], "seq"), n=key["n"], k=key["k"], seed=key["seed"],
                   accuracy_protocol=key["accuracy_protocol"], locality_protocol=key["locality_protocol"],
                   hparams=key["hparams"], data_dir=str(files[0].parents[1]), dtype=key["dtype"],
                   image_size=key["image_size"], prompt_format=key["prompt_format"])


def recompute(run_folder, work_dir, groups: int = 20, prepared_dir=None, bb=None, progress: bool = True) -> dict:
    """Recompute the first `groups` groups of the stored run in `run_folder` under `work_dir`; a dict of what was
    compared: run id, rows, identical, and the fields that differ."""
    source = Path(run_folder)
    manifest = json.loads((source / "manifest.json").read_text())
    if manifest.get("status") != "complete":
        raise ValueError(f"{source.name} is not a complete run")
    stored = [json.loads(line) for line in (source / "rows.jsonl").read_text().splitlines()]
    redo = sorted({r["group"] for r in stored})[:groups]
    runs = Path(work_dir) / "runs"
    target = runs / source.name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    kept = [r for r in stored if r["group"] not in redo]
    (target / "rows.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
    (target / "manifest.json").write_text(json.dumps({"key": manifest["key"], "run_id": source.name,
                                                      "status": "running", "created": manifest["created"]}))
    if prepared_dir is not None:
        shutil.copytree(prepared_dir, Path(work_dir) / "prepared", dirs_exist_ok=True)
    result = run(spec_of(manifest), bb=bb, runs_dir=runs, progress=progress)
    if result.run_id != source.name:
        raise ValueError(f"today's code gives {source.name}'s settings another run key ({result.run_id})")
    new = {(r["group"], r["position"]): r for r in result.rows if r["group"] in redo}
    old = {(r["group"], r["position"]): r for r in stored if r["group"] in redo}
    differ = sorted({f for k in old for f in set(old[k]) | set(new.get(k, {}))
                     if f not in VOLATILE and old[k].get(f) != new.get(k, {}).get(f)})
    return {"run": source.name, "editor": manifest["key"]["editor"], "backbone": manifest["key"]["backbone"],
            "rows": len(old), "identical": not differ and set(old) == set(new), "differ": differ,
            "prepare_seconds": result.manifest.get("prepare_seconds", 0.0)}
