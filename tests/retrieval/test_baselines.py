"""BM25 against a term-by-term reference; rerank keeps the exact best k."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from structmat.retrieval import BM25, MatrixScorer, rerank
from tests.reference import retrieval as ref
from tests.retrieval.tiny_bert import fixture_texts


@pytest.mark.parametrize("n_items", [10, 80])
def test_bm25_matches_the_reference(n_items: int) -> None:
    items, queries = fixture_texts()
    bm25 = BM25(items[:n_items])
    for q in [*queries[:5], "python python library", "no-such-word"]:
        np.testing.assert_allclose(bm25.scores(q), ref.bm25(items[:n_items], q), rtol=1e-12)


def test_bm25_search_orders_by_score_then_id() -> None:
    bm25 = BM25(["a b", "b", "c", "b b b", "a"])
    s, ids = bm25.search("b", 5)
    assert ids.tolist()[:3] == [3, 0, 1] or ids.tolist()[:3] == [3, 1, 0]
    assert np.all(np.diff(s) <= 0)
    assert ids.tolist()[3:] == [2, 4]  # zero scores: ties go to the smaller id
    with pytest.raises(ValueError, match=r"docs: expected at least one document"):
        BM25([])


def test_rerank_returns_the_exact_best_k_of_the_candidates() -> None:
    m = np.random.default_rng().standard_normal((2, 30))
    s, ids = rerank(MatrixScorer(m), 1, list(range(30)), [4, 9, 2, 20, 11], k=3)
    want = sorted([4, 9, 2, 20, 11], key=lambda j: -m[1, j])[:3]
    assert ids.tolist() == want
    torch.testing.assert_close(s, torch.from_numpy(m[1, want]))
    with pytest.raises(ValueError, match=r"k: expected <= the number of candidates \(5\), got 6"):
        rerank(MatrixScorer(m), 1, list(range(30)), [4, 9, 2, 20, 11], k=6)
