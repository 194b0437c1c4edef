"""executor="ray": the index build spread over a local 2-CPU Ray cluster gives the
same R, bit for bit, as the in-process build."""

from __future__ import annotations

import numpy as np
import pytest

from structmat.retrieval import CURIndex, MatrixScorer

ray = pytest.importorskip("ray")


def test_ray_build_equals_local_build() -> None:
    rng = np.random.default_rng()
    scores = (rng.standard_normal((16, 4)) @ rng.standard_normal((4, 1000))).astype(np.float32)
    queries, items = list(range(16)), list(range(1000))
    local = CURIndex.build(MatrixScorer(scores), queries, items, batch_size=64, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = CURIndex.build(
            MatrixScorer(scores), queries, items, batch_size=64, progress=False, executor="ray"
        )
        assert ray.is_initialized()  # a session the caller started is left running
    finally:
        ray.shutdown()
    np.testing.assert_array_equal(remote.r, local.r)
    assert remote.r.dtype == local.r.dtype == np.float32
    a = local.search_batch([0, 1], k=5, anchor_items=10, budget=30)
    b = remote.search_batch([0, 1], k=5, anchor_items=10, budget=30)
    assert a[1].tolist() == b[1].tolist()
