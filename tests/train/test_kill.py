"""kill -9 at random moments: a run killed again and again and resumed each time
ends with exactly the metrics of an uninterrupted run."""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

import pytest

from tests.train.helpers import (
    numbers,
    read_metrics,
    read_rows,
    run_cli,
    spawn_cli,
    tiny_argv,
)

# Many checkpoints (one every 2 steps), so kills land in writes as well as in steps.
SETTINGS = {"steps": 40, "eval_every": 2}


def _started(out: Path) -> bool:
    """Whether a run left anything in ``out`` (then it is continued with --resume;
    a run killed before creating its lock left nothing to continue)."""
    return out.is_dir() and any(out.iterdir())


def _kill_and_resume(tmp_path: Path, kills: int) -> None:
    t0 = time.monotonic()
    straight = run_cli(tiny_argv(tmp_path / "straight", **SETTINGS))
    duration = time.monotonic() - t0
    assert straight.returncode == 0, straight.stderr
    out = tmp_path / "killed"
    rng = random.Random(kills)
    killed = 0
    for _ in range(4 * kills):
        if killed == kills:
            break
        argv = tiny_argv(out, resume=_started(out), **SETTINGS)
        proc = spawn_cli(argv, stdout=subprocess.DEVNULL)
        try:
            _, err = proc.communicate(timeout=rng.uniform(0.0, duration))
            assert proc.returncode == 0, err  # finished before its kill
        except subprocess.TimeoutExpired:
            proc.kill()  # SIGKILL: no handler runs, files are left as they are
            proc.communicate()
            killed += 1
    assert killed == kills
    final = run_cli(tiny_argv(out, resume=_started(out), **SETTINGS))
    assert final.returncode == 0, final.stderr
    assert numbers(read_metrics(out)) == numbers(read_metrics(tmp_path / "straight"))

    def clockless(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert clockless(read_rows(out)) == clockless(read_rows(tmp_path / "straight"))
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.pt",
        "config.json",
        "metrics.json",
        "metrics.jsonl",
    ]  # no lock, no temporary file left


def test_kill_9_three_times(tmp_path: Path) -> None:
    _kill_and_resume(tmp_path, kills=3)


@pytest.mark.slow
def test_kill_9_twenty_times(tmp_path: Path) -> None:
    _kill_and_resume(tmp_path, kills=20)
