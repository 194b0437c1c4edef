"""Run one benchmark point in its own process, under a wall-clock and a memory limit.

``run_limited(cmd, timeout_s=..., mem_limit_gb=...)`` starts ``cmd`` in a new session
and polls the child's resident-set high-water mark (VmHWM in /proc/PID/status) every
``poll_s`` seconds. Past ``mem_limit_gb`` (GiB) or ``timeout_s`` the whole process
group gets SIGKILL, so a point that does not fit never takes the machine down. The
child's exact peak comes from ``wait4``'s ``ru_maxrss`` when it ends (killed or not).

The outcome is one of ``"ok"``, ``"memory"`` ("did not fit in N GB"), ``"timeout"``
("did not finish in T s"), ``"low-memory"`` (stopped because the machine's MemAvailable
fell below ``min_available_gb``: other processes left too little, so the point says
nothing about fitting) and ``"failed"`` (non-zero exit, the last stderr line kept).
``bench_lock(path)`` holds an exclusive flock on a shared lock file (None: no lock), so
the timed points of different benchmark runs never overlap.
Only the child itself is watched (the workers start no processes of their own); an
overshoot past the limit is bounded by what the child allocates in one poll interval.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUTCOMES = ("ok", "memory", "timeout", "low-memory", "failed")


def mem_available_kb() -> int | None:
    """The machine's MemAvailable (KiB) from /proc/meminfo, None without it."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


@contextlib.contextmanager
def bench_lock(path: str | None) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing) for the block; None: no-op."""
    if path is None:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _hwm_kb(pid: int) -> int | None:
    """The process's VmHWM (KiB), or None when it is gone or /proc is unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


@dataclass
class LimitedRun:
    """What one limited child did."""

    outcome: str  # one of OUTCOMES
    returncode: int | None
    wall_s: float
    peak_rss_mb: float  # the child's peak resident set (MiB), as far as it got
    mem_limit_gb: float
    timeout_s: float
    stdout: str = ""
    stderr: str = ""
    last_error: str = field(default="")

    @property
    def status(self) -> str:
        """Human-readable outcome, e.g. ``"did not fit in 16 GB"``."""
        if self.outcome == "ok":
            return "ok"
        if self.outcome == "memory":
            return f"did not fit in {self.mem_limit_gb:g} GB"
        if self.outcome == "timeout":
            return f"did not finish in {self.timeout_s:g} s"
        if self.outcome == "low-memory":
            return "stopped: the machine ran low on memory (other processes)"
        return f"failed: {self.last_error or f'exit {self.returncode}'}"

    def last_json(self) -> dict[str, Any]:
        """The last stdout line parsed as JSON (the worker's result)."""
        lines = self.stdout.strip().splitlines()
        if not lines:
            raise ValueError("the child printed nothing")
        out: dict[str, Any] = json.loads(lines[-1])
        return out

    def limits(self) -> dict[str, Any]:
        """The keys every benchmark row records about the limits and the outcome."""
        return {
            "status": self.status,
            "outcome": self.outcome,
            "mem_limit_gb": self.mem_limit_gb,
            "timeout_s": self.timeout_s,
            "child_peak_rss_mb": round(self.peak_rss_mb, 1),
            "wall_s": round(self.wall_s, 3),
        }


def run_limited(
    cmd: Sequence[str],
    *,
    timeout_s: float,
    mem_limit_gb: float,
    env: Mapping[str, str] | None = None,
    poll_s: float = 0.02,
    min_available_gb: float = 1.0,
) -> LimitedRun:
    """Run ``cmd`` to completion, or kill it past ``timeout_s`` or ``mem_limit_gb`` GiB.

    It is also killed (outcome ``"low-memory"``) when the machine's MemAvailable drops
    below ``min_available_gb`` GiB, before the kernel's OOM killer picks a victim.
    """
    limit_kb = int(mem_limit_gb * 2**20)
    floor_kb = int(min_available_gb * 2**20)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(
            list(cmd), stdout=out, stderr=err, env=None if env is None else dict(env),
            start_new_session=True,
        )
        outcome, hwm_kb, status, rusage = "ok", 0, 0, None
        try:
            while True:
                pid, status, rusage = os.wait4(p.pid, os.WNOHANG)
                if pid:  # exited; wait4 has reaped it
                    break
                hwm_kb = max(hwm_kb, _hwm_kb(p.pid) or 0)
                if hwm_kb > limit_kb:
                    outcome = "memory"
                elif time.perf_counter() - t0 > timeout_s:
                    outcome = "timeout"
                elif (mem_available_kb() or floor_kb) < floor_kb:
                    outcome = "low-memory"
                if outcome != "ok":
                    os.killpg(p.pid, signal.SIGKILL)
                    _, status, rusage = os.wait4(p.pid, 0)
                    break
                time.sleep(poll_s)
        except BaseException:  # Ctrl-C in the parent: leave no child behind
            try:
                os.killpg(p.pid, signal.SIGKILL)
                os.wait4(p.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            raise
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)  # Popen must not reap it again
        if rusage is not None:
            hwm_kb = max(hwm_kb, rusage.ru_maxrss)  # KiB on Linux
        if rusage is not None and rusage.ru_maxrss > limit_kb and outcome == "ok":
            outcome = "memory"  # passed the limit between two polls and then ended
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if outcome == "ok" and p.returncode != 0:
        outcome = "failed"
    last = stderr.strip().splitlines()[-1:] if outcome == "failed" else []
    if outcome == "failed" and p.returncode is not None and p.returncode < 0:
        last = [f"killed by signal {-p.returncode}", *last]
    return LimitedRun(
        outcome=outcome, returncode=p.returncode, wall_s=wall, peak_rss_mb=hwm_kb / 1024,
        mem_limit_gb=mem_limit_gb, timeout_s=timeout_s, stdout=stdout, stderr=stderr,
        last_error=" / ".join(s.strip()[:200] for s in last),
    )
