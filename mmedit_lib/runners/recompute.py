"""Recompute part of a stored run with today's code and compare its rows: how a refactor shows it changed no result.

    >>> report = recompute("/tmp/old/results/runs/mend-tiny-blip2-opt-vqa-one-step-15c28c8fde", "/tmp/check",
    ...                    groups=20)                                                        # doctest: +SKIP
    >>> report["identical"], report["rows"]                                                   # doctest: +SKIP
    (True, 20)

The stored run is copied into `work_dir`, its first `groups` groups of rows are dropped and the run is resumed, so
the runner recomputes exactly those groups (the same seeds, the same locality reference per case) from the run's
own key: the editor, its full hparams, the backbone's weights (by hash), the data (by hash) and the protocols. If
today's code derives another key from the same settings, this says so instead of comparing, with one exception: an
hparam added since the run was stored, at its default (a new option whose default is the old behaviour), is
recomputed under today's key and named in the report's `added`. `prepare` runs afresh unless `prepared_dir` holds
its artefact. Every field of every recomputed row is compared except timings, memory and provenance (`VOLATILE`).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from ..editors.registry import make_hparams
from .run import TIMING_FIELDS, RunSpec, plan, run
from .store import run_id_for

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


def added_hparams(stored: dict, today: dict, editor: str) -> dict:
    """The fields today's run key adds to a stored one: hparams absent from the stored key, at their defaults
    (ValueError naming any other difference)."""
    defaults = dataclasses.asdict(make_hparams(editor))
    added = {k: v for k, v in today["hparams"].items() if k not in stored["hparams"]}
    if any(json.dumps(v) != json.dumps(defaults[k]) for k, v in added.items()):
        raise ValueError(f"hparams added since the run was stored are not at their defaults: {added}")
    differ = sorted(k for k in set(stored) | set(today) if k not in ("hparams", "hparams_hash")
                    and json.dumps(stored.get(k), sort_keys=True) != json.dumps(today.get(k), sort_keys=True))
    kept = {k: v for k, v in today["hparams"].items() if k in stored["hparams"]}
    if differ or json.dumps(kept, sort_keys=True) != json.dumps(stored["hparams"], sort_keys=True):
        raise ValueError(f"today's code gives these settings another run key (differs in: "
                         f"{', '.join(differ) or 'hparams'})")
    return added


def recompute(run_folder, work_dir, groups: int = 20, prepared_dir=None, bb=None, progress: bool = True) -> dict:
    """Recompute the first `groups` groups of the stored run in `run_folder` under `work_dir`; a dict of what was
    compared: run id, rows, identical, and the fields that differ."""
    source = Path(run_folder)
    manifest = json.loads((source / "manifest.json").read_text())
    if manifest.get("status") != "complete":
        raise ValueError(f"{source.name} is not a complete run")
    stored = [json.loads(line) for line in (source / "rows.jsonl").read_text().splitlines()]
    redo = sorted({r["group"] for r in stored})[:groups]
    spec = spec_of(manifest)
    _, bb, _, _, key = plan(spec, bb)
    key = json.loads(json.dumps(key, sort_keys=True))
    added = added_hparams(manifest["key"], key, spec.editor) if key != manifest["key"] else {}
    run_id = run_id_for(key)
    runs = Path(work_dir) / "runs"
    target = runs / run_id
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    kept = [{**r, "run_id": run_id, "hparams_hash": key["hparams_hash"]} for r in stored if r["group"] not in redo]
    (target / "rows.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
    (target / "manifest.json").write_text(json.dumps({"key": key, "run_id": run_id, "status": "running",
                                                      "created": manifest["created"]}))
    if prepared_dir is not None:
        shutil.copytree(prepared_dir, Path(work_dir) / "prepared", dirs_exist_ok=True)
    result = run(spec, bb=bb, runs_dir=runs, progress=progress)
    assert result.run_id == run_id, (result.run_id, run_id)
    renamed = {"run_id": run_id, "hparams_hash": key["hparams_hash"]}  # what an added hparam changes in every row
    new = {(r["group"], r["position"]): r for r in result.rows if r["group"] in redo}
    old = {(r["group"], r["position"]): {**r, **renamed} for r in stored if r["group"] in redo}
    differ = sorted({f for k in old for f in set(old[k]) | set(new.get(k, {}))
                     if f not in VOLATILE and old[k].get(f) != new.get(k, {}).get(f)})
    return {"run": source.name, "editor": manifest["key"]["editor"], "backbone": manifest["key"]["backbone"],
            "rows": len(old), "identical": not differ and set(old) == set(new), "differ": differ, "added": added,
            "prepare_seconds": result.manifest.get("prepare_seconds", 0.0)}
