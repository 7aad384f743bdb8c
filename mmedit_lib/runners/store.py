"""The results store: one folder per run, keyed by its parameters; JSONL rows appended atomically, a group at a time.

    >>> store = RunStore.open("results/runs", key)                 # doctest: +SKIP
    >>> done = store.completed_groups()                             # rows already there, by group
    >>> store.append_group(rows)                                    # one write of whole lines, then fsync
    >>> store.finish(summary)                                       # manifest status -> complete

A *group* is the unit a run resumes at: one case in one-step editing, one sequence of K cases otherwise. A run killed
at any point leaves whole groups plus at most one partial trailing write; `completed_groups` drops the partial tail
(truncating the file back to the last whole group), so a restarted run neither loses nor duplicates rows.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path


def key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def run_id_for(key: dict) -> str:
    parts = [key["editor"], key["backbone"], key["task"], key["setting"]]
    return "-".join(str(p) for p in parts) + "-" + key_hash(key)[:10]


class RunStore:
    def __init__(self, folder: Path, key: dict):
        self.folder, self.key = folder, key
        self.rows_path = folder / "rows.jsonl"
        self.manifest_path = folder / "manifest.json"

    @property
    def run_id(self) -> str:
        return self.folder.name

    @classmethod
    def open(cls, root: str | Path, key: dict, force: bool = False) -> "RunStore":
        """The run folder for `key` (created on first use); `force` wipes earlier rows of the same key."""
        key = json.loads(json.dumps(key, sort_keys=True))  # as it reads back from the manifest (tuples -> lists)
        folder = Path(root) / run_id_for(key)
        store = cls(folder, key)
        if force and folder.exists():
            for path in (store.rows_path, store.manifest_path):
                path.unlink(missing_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        if store.manifest_path.exists():
            manifest = json.loads(store.manifest_path.read_text())
            if manifest["key"] != key:
                raise RuntimeError(f"{folder}: manifest key differs from this run's key (hash collision?)")
        else:
            store.write_manifest({"key": key, "run_id": folder.name, "status": "running",
                                  "created": _now()})
        return store

    def manifest(self) -> dict:
        return json.loads(self.manifest_path.read_text())

    def write_manifest(self, manifest: dict) -> None:
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
        os.replace(tmp, self.manifest_path)

    def completed_groups(self) -> dict[int, list[dict]]:
        """group -> its rows, for every whole group on disk; truncates a partial tail left by a killed run."""
        if not self.rows_path.exists():
            return {}
        data = self.rows_path.read_bytes()
        groups, good_end, offset = {}, 0, 0
        pending: list[dict] = []
        for line in data.splitlines(keepends=True):
            offset += len(line)
            if not line.endswith(b"\n"):
                break
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break
            pending.append(row)
            if len(pending) == row["group_size"]:
                if len({r["group"] for r in pending}) != 1:
                    break
                groups[row["group"]] = pending
                pending, good_end = [], offset
        if good_end != len(data):
            with open(self.rows_path, "r+b") as handle:
                handle.truncate(good_end)
        return groups

    def append_group(self, rows: list[dict]) -> None:
        """Append a whole group in one write of complete lines, flushed to disk."""
        payload = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()
        fd = os.open(self.rows_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, payload)
            if written != len(payload):
                raise OSError(f"short write to {self.rows_path}")
            os.fsync(fd)
        finally:
            os.close(fd)

    def rows(self) -> list[dict]:
        groups = self.completed_groups()
        return [r for g in sorted(groups) for r in groups[g]]

    def finish(self, extra: dict) -> None:
        manifest = self.manifest()
        manifest.update(extra, status="complete", finished=_now())
        self.write_manifest(manifest)


def log_run(entry: dict) -> None:
    """Append one line about a run used (computed or reused) to `$MMEDIT_RUN_LOG` when it is set: the notebooks
    command sets it per notebook, so the status page can say which runs each notebook computed and reused."""
    path = os.environ.get("MMEDIT_RUN_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
