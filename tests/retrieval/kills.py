"""kill -9 at random moments of a build: the harness the build-kill tests share."""

from __future__ import annotations

import multiprocessing
import random
import time
from collections.abc import Callable
from pathlib import Path


def run_or_kill(build: Callable[[str], None], out: Path, seconds: float | None) -> bool:
    """``build(out)`` in a forked child, SIGKILLed after ``seconds``. True when it finished."""
    child = multiprocessing.get_context("fork").Process(target=build, args=(str(out),))
    child.start()
    child.join(seconds)
    if child.is_alive():
        child.kill()  # SIGKILL: no handler runs, files stay as they are
        child.join()
        return False
    assert child.exitcode == 0
    return True


def kill_twenty_times(
    build: Callable[[str], None], folder: Path, resumable: Callable[[Path], bool], seed: int
) -> tuple[Path, Path]:
    """A straight build, then builds killed at 20 random moments (each rerun resuming),
    then one to the end: (straight output, killed-and-resumed output).

    Args:
        resumable: whether a rerun at this output would start from saved work.
    """
    t0 = time.monotonic()
    straight = folder / "straight.safetensors"
    assert run_or_kill(build, straight, None)
    duration = time.monotonic() - t0
    out = folder / "killed.safetensors"
    rng = random.Random(seed)
    kills, resumed = 0, 0
    for _ in range(80):
        if kills == 20:
            break
        resumed += resumable(out)
        if not run_or_kill(build, out, rng.uniform(0.0, duration)):
            kills += 1
        elif out.exists():
            out.unlink()  # finished before its kill: start again, to kill it next time
    assert kills == 20 and resumed > 0
    assert run_or_kill(build, out, None)
    return straight, out
