"""kill -9 at random moments of an index build (scoring with a checkpoint, then the
index write): every rerun resumes from the scored blocks, and the final index file
equals that of an uninterrupted build."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from structmat._io import remove_stale_temps
from structmat.retrieval.build import score_matrix
from structmat.retrieval.store import read_index, write_index
from tests.retrieval.kills import kill_twenty_times

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


def _resumable(out: Path) -> bool:
    return out.with_name(out.name + ".partial.npz").exists()


def test_kill_9_twenty_times_during_an_index_build(tmp_path: Path) -> None:
    straight_path, out = kill_twenty_times(_build, tmp_path, _resumable, seed=20)
    straight, killed = read_index(straight_path), read_index(out)
    np.testing.assert_array_equal(killed[0], straight[0])
    assert killed[1:] == straight[1:]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "killed.safetensors", "straight.safetensors",
    ]  # fmt: skip  # no partial file, no temporary file left
