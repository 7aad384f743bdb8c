"""Peak memory of one edit: the high-water mark while it was made, above what was in use when it began.

    >>> with edit_memory(bb.device) as peak:                 # doctest: +SKIP
    ...     edit = editor.edit(bb, request)
    >>> peak.mb                                               # doctest: +SKIP
    12.5

On a GPU this is `torch.cuda.max_memory_allocated` above the memory allocated before the edit (the peak counter
is reset first). On CPU it is the process's resident high-water mark (`VmHWM`, reset through
`/proc/self/clear_refs`) above its resident size before the edit: Linux only; elsewhere `mb` is None and the row
says "not measured" rather than a number from another definition.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")
_process_peak_mb = 0.0  # the high-water mark before each reset, so the process's own peak is never lost


def _status_mb(field: str) -> float:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise KeyError(field)


def reset_cpu_peak() -> bool:
    """Reset the process's resident high-water mark to its current size (remembering the peak so far for
    `process_peak_mb`); False where Linux's /proc is missing."""
    global _process_peak_mb
    try:
        _process_peak_mb = max(_process_peak_mb, _status_mb("VmHWM"))
        _CLEAR_REFS.write_text("5")
        return True
    except (OSError, KeyError):
        return False


def process_peak_mb() -> float | None:
    """The process's resident peak since it started (MiB), across the resets `edit_memory` makes; None off Linux."""
    try:
        return round(max(_process_peak_mb, _status_mb("VmHWM")), 1)
    except (OSError, KeyError):
        return None


class Peak:
    mb: float | None = None


@contextlib.contextmanager
def edit_memory(device: torch.device):
    """Yields a `Peak` whose `mb` is set on exit (MiB; None where it cannot be measured)."""
    peak = Peak()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield peak
        torch.cuda.synchronize(device)
        peak.mb = round((torch.cuda.max_memory_allocated(device) - before) / 2**20, 2)
        return
    if not reset_cpu_peak():
        yield peak
        return
    before = _status_mb("VmRSS")
    yield peak
    peak.mb = round(max(_status_mb("VmHWM") - before, 0.0), 2)
