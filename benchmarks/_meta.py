"""What every benchmark JSON records about the run: machine, threads, versions, load.

``run_meta()`` is called when a benchmark writes its results (so the load average
covers the run that just finished) and stored under the ``"meta"`` key; the README
tables are generated from the JSON by ``benchmarks/readme_tables.py``, which prints
this block under each table.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch


def _cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_meta(threads: int | None = None, **extra: Any) -> dict[str, Any]:
    """Machine, thread count, versions and load average of this run.

    Args:
        threads: threads the timed code used; None means ``torch.get_num_threads()``.
        extra: benchmark-specific versions or settings to record alongside.
    """
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    meta: dict[str, Any] = {
        "cpu": _cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads() if threads is None else threads,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "load_average_1_5_15min": [round(v, 2) for v in load],
    }
    meta.update(extra)
    return meta
