"""An exclusive file lock, so that processes sharing results/ compute each run and each prepared artefact once.

    >>> with exclusive(Path("results/runs/.locks/some-run.lock")):          # doctest: +SKIP
    ...     compute_unless_done()
"""
from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path


@contextlib.contextmanager
def exclusive(lock_path: Path):
    """Hold an exclusive lock on `lock_path` (created if missing) while the block runs; a second process waits."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
