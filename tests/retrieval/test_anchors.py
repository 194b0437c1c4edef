"""Anchor-item selection: distinct, sorted, deterministic ids; each rule does what it says."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from structmat.retrieval import ANCHOR_METHODS, select_anchor_items


@given(
    n=st.integers(1, 80), k_q=st.integers(1, 10), frac=st.floats(0.01, 1.0), seed=st.integers(0, 9)
)
def test_ids_are_distinct_sorted_in_range_and_deterministic(
    n: int, k_q: int, frac: float, seed: int
) -> None:
    r = np.random.default_rng(seed).standard_normal((k_q, n))
    k = max(1, int(frac * n))
    for method in ANCHOR_METHODS:
        ids = select_anchor_items(r, k, method, seed)
        assert ids.dtype == np.int64 and ids.shape == (k,)
        assert len(np.unique(ids)) == k and ids.min() >= 0 and ids.max() < n
        assert np.all(np.diff(ids) > 0)
        np.testing.assert_array_equal(ids, select_anchor_items(r, k, method, seed))


def test_kmeans_covers_every_cluster() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((6, 12)) * 10  # 6 well-separated directions
    labels = rng.integers(0, 6, 600)
    r = (centres[labels] + 0.05 * rng.standard_normal((600, 12))).T  # (k_q, N)
    ids = select_anchor_items(r, 6, "kmeans", seed=1)
    assert sorted(labels[ids].tolist()) == list(range(6))


def test_leverage_prefers_the_columns_that_carry_the_rank() -> None:
    rng = np.random.default_rng(0)
    r = np.zeros((8, 500))
    r[:, :500] = 1e-6 * rng.standard_normal((8, 500))
    spikes = rng.choice(500, 5, replace=False)
    r[:, spikes] = rng.standard_normal((8, 5))  # rank 5 lives in 5 columns
    ids = select_anchor_items(r, 5, "leverage", seed=2)
    assert set(ids.tolist()) == set(spikes.tolist())


def test_zero_matrix_still_gives_distinct_ids() -> None:
    for method in ANCHOR_METHODS:
        ids = select_anchor_items(np.zeros((3, 10)), 4, method, seed=0)
        assert len(set(ids.tolist())) == 4


@pytest.mark.parametrize("method", ANCHOR_METHODS)
def test_all_items_as_anchors(method: str) -> None:
    r = np.random.default_rng().standard_normal((4, 9))
    np.testing.assert_array_equal(select_anchor_items(r, 9, method, 0), np.arange(9))
