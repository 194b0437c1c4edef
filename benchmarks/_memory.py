"""Peak-memory measurement shared by the benchmarks (Linux /proc; None or 0 elsewhere).

``peak_rise_kb(fn)``: resets the resident-set high-water mark (VmHWM, by writing 5 to
/proc/self/clear_refs), runs fn and returns how far VmHWM rose above VmRSS before the
call. ``rss_mb`` / ``maxrss_mb``: the current resident set and the process's lifetime
peak (getrusage), for a fresh process that measures everything it does.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any


def status_kb(field: str) -> int:
    """A ``kB`` field of /proc/self/status, e.g. ``"VmRSS"`` or ``"VmHWM"``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_rise_kb(fn: Callable[[], Any]) -> int | None:
    """Rise of the peak resident set (KiB) while fn runs; None without /proc (not Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        return None
    before = status_kb("VmRSS")
    fn()
    return status_kb("VmHWM") - before


def rss_mb() -> float:
    """Current resident set (MiB), from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def maxrss_mb() -> float:
    """The process's peak resident set so far (MiB; ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
