"""kill -9 at random moments of an index build (scoring with a checkpoint, then the
index write): every rerun resumes from the scored blocks, and the final index file
equals that of an uninterrupted build."""

from __future__ import annotations

import multiprocessing
import random
import time
from pathlib import Path

import numpy as np

from structmat._io import remove_stale_temps
from structmat.retrieval.build import score_matrix
from structmat.retrieval.store import read_index, write_index

ITEMS = [f"item {j}" for j in range(120)]
QUERIES = ["q0", "q1", "q2"]
BATCH = 4  # 30 blocks


def _slow_score(queries: list, items: list) -> np.ndarray:
    """A deterministic tiny scorer, slow enough (5 ms a block) for kills to land mid-build."""
    time.sleep(0.005)
    return np.array([[float(sum(map(ord, q + i)) % 97) for i in items] for q in queries])


def _build(out: str) -> None:
    """Score (saving after every block) and write the index, as ``retrieve build`` does."""
    ckpt = out + ".partial.npz"
    remove_stale_temps(out)
    r = score_matrix(_slow_score, QUERIES, ITEMS, BATCH, progress=False,
                     checkpoint=ckpt, checkpoint_seconds=0.0)  # fmt: skip
    write_index(out, r, ITEMS, QUERIES, {"seed": 0})
    Path(ckpt).unlink(missing_ok=True)


def _run(out: Path, seconds: float | None) -> bool:
    """Build in a forked child; SIGKILL it after ``seconds``. True when it finished."""
    child = multiprocessing.get_context("fork").Process(target=_build, args=(str(out),))
    child.start()
    child.join(seconds)
    if child.is_alive():
        child.kill()  # SIGKILL: no handler runs, files stay as they are
        child.join()
        return False
    assert child.exitcode == 0
    return True


def test_kill_9_twenty_times_during_an_index_build(tmp_path: Path) -> None:
    t0 = time.monotonic()
    assert _run(tmp_path / "straight.safetensors", None)
    duration = time.monotonic() - t0
    out = tmp_path / "killed.safetensors"
    rng = random.Random(20)
    kills, resumed = 0, 0
    for _ in range(80):
        if kills == 20:
            break
        partial = out.with_name(out.name + ".partial.npz")
        if partial.exists():
            resumed += 1
        if not _run(out, rng.uniform(0.0, duration)):
            kills += 1
        elif out.exists():
            out.unlink()  # finished before its kill: start again, to kill it next time
    assert kills == 20 and resumed > 0
    assert _run(out, None)
    straight, killed = read_index(tmp_path / "straight.safetensors"), read_index(out)
    np.testing.assert_array_equal(killed[0], straight[0])
    assert killed[1:] == straight[1:]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "killed.safetensors", "straight.safetensors",
    ]  # fmt: skip  # no partial file, no temporary file left
