"""CURIndex against the dense reference ANNCUR / ADACUR on low-rank-plus-noise scorers."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from structmat.retrieval import (
    CountingScorer,
    CURIndex,
    MatrixScorer,
    cur_approximate_scores,
    faiss_available,
    select_anchor_items,
)
from tests.reference import retrieval as ref

BACKENDS = [
    "numpy",
    pytest.param(
        "faiss", marks=pytest.mark.skipif(not faiss_available(), reason="faiss-cpu not installed")
    ),
]


def low_rank_scores(
    n_queries: int, n_items: int, rank: int, noise: float, rng: np.random.Generator
) -> np.ndarray:
    """(n_queries, n_items) = rank-`rank` product + Gaussian noise, float64."""
    a = rng.standard_normal((n_queries, rank))
    b = rng.standard_normal((rank, n_items))
    return a @ b + noise * rng.standard_normal((n_queries, n_items))


def make_index(
    scores: np.ndarray, k_q: int, **config: object
) -> tuple[CURIndex, CountingScorer, list[int]]:
    """Index over items 0..N-1 built from queries 0..k_q-1; the rest are test queries."""
    counter = CountingScorer(MatrixScorer(scores))
    index = CURIndex.build(
        counter,
        list(range(k_q)),
        list(range(scores.shape[1])),
        batch_size=37,
        progress=False,
        **config,
    )
    return index, counter, list(range(k_q, scores.shape[0]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("n_items", "k_q", "k_i", "budget", "rounds"),
    [(300, 40, 20, 50, 0), (500, 60, 30, 80, 4), (257, 25, 40, 100, 3), (120, 10, 5, 120, 2)],
)
def test_search_matches_dense_reference(
    backend: str, n_items: int, k_q: int, k_i: int, budget: int, rounds: int
) -> None:
    rng = np.random.default_rng()
    scores = low_rank_scores(k_q + 6, n_items, rank=8, noise=0.3, rng=rng)
    index, _, tests = make_index(scores, k_q, backend=backend, anchor_method="random", seed=3)
    anchors = index.anchor_ids(k_i)
    got_s, got_i = index.search_batch(
        tests, k=10, anchor_items=k_i, budget=budget, adaptive_rounds=rounds
    )
    assert got_s.shape == got_i.shape == (len(tests), 10)
    assert got_i.dtype == torch.int64
    for row, q in enumerate(tests):
        want_s, want_i = ref.anncur(scores[q], scores[:k_q], anchors, 10, budget, rounds)
        np.testing.assert_array_equal(got_i[row].numpy(), want_i)
        np.testing.assert_allclose(got_s[row].numpy(), want_s, rtol=1e-12)  # exact scores


def test_single_search_is_a_row_of_search_batch() -> None:
    rng = np.random.default_rng()
    scores = low_rank_scores(30, 200, rank=5, noise=0.1, rng=rng)
    index, _, tests = make_index(scores, 20)
    s, i = index.search(tests[0], k=5, anchor_items=10, budget=40, adaptive_rounds=2)
    bs, bi = index.search_batch(tests[:3], k=5, anchor_items=10, budget=40, adaptive_rounds=2)
    assert torch.equal(i, bi[0]) and torch.equal(s, bs[0])
    assert bool((s[:-1] >= s[1:]).all())  # best first


@pytest.mark.parametrize("n_items", [150, 400])
@pytest.mark.parametrize("rank", [1, 6, 12])
def test_exact_recovery_when_rank_at_most_anchor_items(n_items: int, rank: int) -> None:
    rng = np.random.default_rng()
    scores = low_rank_scores(rank + 20, n_items, rank=rank, noise=0.0, rng=rng)
    index, _, tests = make_index(scores, rank + 10, backend="numpy")
    k_i = rank + 2
    approx = index.approximate_scores(tests, anchor_items=k_i).numpy()  # (n, N)
    scale = np.abs(scores[tests]).max()
    np.testing.assert_allclose(approx, scores[tests], atol=1e-9 * scale, rtol=0)
    # With the scores recovered, k_i + k calls find the exact top-k of every query.
    _, ids = index.search_batch(tests, k=5, anchor_items=k_i, budget=k_i + 5)
    for row, q in enumerate(tests):
        assert set(ids[row].tolist()) == set(ref.exact_top_k(scores[q], 5).tolist())


def test_cur_approximate_scores_is_the_dense_formula() -> None:
    rng = np.random.default_rng()
    r = rng.standard_normal((15, 90))
    anchors = np.sort(rng.choice(90, 20, replace=False))
    c = rng.standard_normal((4, 20))
    want = c @ np.linalg.pinv(r[:, anchors], rcond=1e-6) @ r
    np.testing.assert_allclose(
        cur_approximate_scores(c, r, anchors, 1e-6), want, rtol=1e-10, atol=1e-12
    )


@given(
    n_items=st.integers(20, 120),
    k_i=st.integers(1, 20),
    extra=st.integers(0, 60),
    rounds=st.integers(0, 6),
    n_queries=st.integers(1, 4),
)
def test_budget_is_spent_and_never_exceeded(
    n_items: int, k_i: int, extra: int, rounds: int, n_queries: int
) -> None:
    rng = np.random.default_rng(n_items * 1000 + extra)
    scores = low_rank_scores(8 + n_queries, n_items, rank=3, noise=0.5, rng=rng)
    index, counter, tests = make_index(scores, 8, backend="numpy")
    k_i = min(k_i, n_items)
    budget = k_i + extra
    k = min(3, min(budget, n_items))
    counter.reset()
    _, ids = index.search_batch(tests, k=k, anchor_items=k_i, budget=budget, adaptive_rounds=rounds)
    assert counter.calls == n_queries * min(budget, n_items)  # the budget, clamped to N
    for row in ids:
        assert len(set(row.tolist())) == k  # distinct ids


def test_scores_returned_are_exact_and_sorted() -> None:
    rng = np.random.default_rng()
    scores = low_rank_scores(50, 300, rank=10, noise=1.0, rng=rng)
    index, _, tests = make_index(scores, 40)
    s, ids = index.search_batch(tests, k=7, anchor_items=15, budget=60, adaptive_rounds=3)
    for row, q in enumerate(tests):
        np.testing.assert_array_equal(s[row].numpy(), scores[q, ids[row].numpy()])
        assert bool((s[row][:-1] >= s[row][1:]).all())


def test_adaptive_rounds_do_not_lose_recall_on_average() -> None:
    # ADACUR's claim (Yadav et al. 2024): with the same budget, rounds help. Averaged
    # over 40 queries of a noisy rank-20 scorer with few anchor queries, rounds win.
    rng = np.random.default_rng(0)
    scores = low_rank_scores(140, 1500, rank=20, noise=0.5, rng=rng)
    index, _, tests = make_index(scores, 100, backend="numpy")

    def recall(rounds: int) -> float:
        _, ids = index.search_batch(tests, k=10, anchor_items=20, budget=60, adaptive_rounds=rounds)
        return float(
            np.mean(
                [
                    len(set(ids[r].tolist()) & set(ref.exact_top_k(scores[q], 10).tolist())) / 10
                    for r, q in enumerate(tests)
                ]
            )
        )

    assert recall(4) >= recall(0)


def test_explicit_anchor_ids_and_float32_faiss_agree_with_numpy() -> None:
    pytest.importorskip("faiss")
    rng = np.random.default_rng()
    scores = low_rank_scores(70, 600, rank=6, noise=0.2, rng=rng).astype(np.float32)
    np_index, _, tests = make_index(scores, 60, backend="numpy")
    fa_index, _, _ = make_index(scores, 60, backend="faiss")
    assert np_index.r.dtype == np.float32
    anchors = [3, 17, 99, 250, 400, 401, 599, 5, 6, 7]
    a = np_index.search_batch(tests, k=10, anchor_items=anchors, budget=50)
    b = fa_index.search_batch(tests, k=10, anchor_items=anchors, budget=50)
    assert torch.equal(a[1], b[1])
    assert torch.equal(a[0], b[0])


def test_hnsw_serving_returns_exactly_scored_distinct_items() -> None:
    pytest.importorskip("faiss")
    rng = np.random.default_rng()
    scores = low_rank_scores(40, 2000, rank=8, noise=0.1, rng=rng)
    flat, _, tests = make_index(scores, 30, backend="faiss", mips="flat")
    hnsw, counter, _ = make_index(scores, 30, backend="faiss", mips="hnsw")
    counter.reset()
    s, ids = hnsw.search_batch(tests, k=10, anchor_items=20, budget=100)
    assert counter.calls == len(tests) * 100
    _, flat_ids = flat.search_batch(tests, k=10, anchor_items=20, budget=100)
    overlap = np.mean(
        [len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(ids, flat_ids, strict=True)]
    )
    assert overlap >= 0.8  # HNSW is approximate MIPS; on this easy data it nearly matches flat
    for row, q in enumerate(tests):
        np.testing.assert_array_equal(s[row].numpy(), scores[q, ids[row].numpy()])


def test_add_equals_building_on_all_items() -> None:
    rng = np.random.default_rng()
    scores = low_rank_scores(25, 200, rank=4, noise=0.1, rng=rng)
    whole, _, tests = make_index(scores, 20)
    part = CURIndex.build(MatrixScorer(scores), list(range(20)), list(range(120)), progress=False)
    part.add(list(range(120, 200)), batch_size=33, progress=False)
    np.testing.assert_array_equal(part.r, whole.r)
    assert part.items == whole.items
    a = whole.search_batch(tests, k=5, anchor_items=10, budget=30)
    b = part.search_batch(tests, k=5, anchor_items=10, budget=30)
    assert torch.equal(a[1], b[1])


def test_thread_pool_build_equals_in_process_build() -> None:
    rng = np.random.default_rng()
    scores = low_rank_scores(12, 333, rank=4, noise=0.1, rng=rng).astype(np.float32)
    local = CURIndex.build(
        MatrixScorer(scores), list(range(12)), list(range(333)), batch_size=50, progress=False
    )
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        pooled = CURIndex.build(
            MatrixScorer(scores),
            list(range(12)),
            list(range(333)),
            batch_size=50,
            progress=False,
            executor=pool,
        )
    np.testing.assert_array_equal(local.r, pooled.r)
    assert local.r.dtype == np.float32


@pytest.mark.parametrize("method", ["random", "leverage", "kmeans"])
def test_every_anchor_method_searches_within_budget(method: str) -> None:
    rng = np.random.default_rng()
    scores = low_rank_scores(40, 400, rank=6, noise=0.05, rng=rng)
    index, counter, tests = make_index(scores, 30, anchor_method=method, seed=1)
    counter.reset()
    _, ids = index.search_batch(tests, k=10, anchor_items=20, budget=60)
    assert counter.calls == len(tests) * 60
    recall = np.mean(
        [
            len(set(ids[r].tolist()) & set(ref.exact_top_k(scores[q], 10).tolist())) / 10
            for r, q in enumerate(tests)
        ]
    )
    assert recall >= 0.9  # rank 6 < 20 anchors, little noise: near-exact recovery


# --- bad input ----------------------------------------------------------------


@pytest.fixture
def small_index() -> CURIndex:
    rng = np.random.default_rng()
    return make_index(low_rank_scores(12, 50, 3, 0.1, rng), 10)[0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget": 5, "anchor_items": 10}, r"budget: expected >= anchor_items \(10\)"),
        ({"k": 30, "budget": 20, "anchor_items": 10}, r"k: expected <= the budget \(20"),
        ({"anchor_items": 51}, r"anchor_items: expected a count in \[1, 50\], got 51"),
        ({"anchor_items": 0}, r"anchor_items: expected a count in \[1, 50\], got 0"),
        ({"anchor_items": [1, 1, 2]}, r"anchor_items: expected distinct ids in \[0, 50\)"),
        ({"anchor_items": [1, 50]}, r"anchor_items: expected distinct ids in \[0, 50\)"),
        ({"k": 0}, r"k: expected an integer >= 1, got 0"),
        ({"adaptive_rounds": -1}, r"adaptive_rounds: expected an integer >= 0, got -1"),
        ({"budget": 2.5}, r"budget: expected an integer >= 1, got 2.5"),
    ],
)
def test_search_rejects_bad_arguments(small_index: CURIndex, kwargs: dict, message: str) -> None:
    args = {"k": 5, "anchor_items": 10, "budget": 20, **kwargs}
    with pytest.raises(ValueError, match=message):
        small_index.search(10, **args)


def test_scorer_output_is_checked() -> None:
    def wrong_shape(q: list, i: list) -> torch.Tensor:
        return torch.zeros(len(q), len(i) + 1)

    def with_nan(q: list, i: list) -> torch.Tensor:
        return torch.full((len(q), len(i)), float("nan"))

    with pytest.raises(ValueError, match=r"score\(queries, items\): expected shape .* = \(2, 3\)"):
        CURIndex.build(wrong_shape, [0, 1], [0, 1, 2], progress=False)
    with pytest.raises(ValueError, match=r"score\(queries, items\): expected finite scores"):
        CURIndex.build(with_nan, [0, 1], [0, 1, 2], progress=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"anchor_method": "best"}, r"anchor_method: expected one of 'random' \| 'leverage'"),
        ({"backend": "gpu"}, r"backend: expected one of 'auto' \| 'faiss' \| 'numpy', got 'gpu'"),
        ({"rcond": 1.5}, r"rcond: expected a number in \[0, 1\), got 1.5"),
        ({"backend": "numpy", "mips": "hnsw"}, r"mips: expected 'flat' without faiss"),
    ],
)
def test_index_settings_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):  # at construction, or at first search
        index = CURIndex(
            np.ones((2, 4)), [0, 1, 2, 3], [0, 1], MatrixScorer(np.ones((3, 4))), **kwargs
        )
        index.search(2, k=1, anchor_items=2, budget=3)


def test_constructor_checks_shapes() -> None:
    with pytest.raises(ValueError, match=r"items: expected 4 items \(columns of r\), got 3 items"):
        CURIndex(np.ones((2, 4)), [0, 1, 2])
    with pytest.raises(ValueError, match=r"anchor_queries: expected 2 queries \(rows of r\)"):
        CURIndex(np.ones((2, 4)), [0, 1, 2, 3], [0])
    with pytest.raises(ValueError, match=r"r: expected finite scores"):
        CURIndex(np.full((2, 2), np.nan), [0, 1])
    with pytest.raises(ValueError, match=r"items: expected at least one item, got none"):
        CURIndex.build(MatrixScorer(np.ones((1, 1))), [0], [], progress=False)
    with pytest.raises(ValueError, match=r"score: expected a scorer"):
        CURIndex(np.ones((1, 3)), [0, 1, 2]).search(0, k=1, anchor_items=1, budget=2)


class _Interrupting:
    """A MatrixScorer that raises KeyboardInterrupt on its `fail_at`-th call."""

    def __init__(self, scores: np.ndarray, fail_at: int) -> None:
        self.inner, self.fail_at, self.calls = MatrixScorer(scores), fail_at, 0

    def __call__(self, q: list, i: list) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.inner(q, i)


def test_interrupted_build_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    rng = np.random.default_rng()
    scores = low_rank_scores(9, 500, rank=3, noise=0.1, rng=rng)
    ckpt = tmp_path / "build.partial.npz"
    args = (list(range(9)), list(range(500)))
    flaky = _Interrupting(scores, fail_at=4)
    with pytest.raises(KeyboardInterrupt):
        CURIndex.build(flaky, *args, batch_size=50, progress=False, checkpoint=ckpt)
    assert ckpt.exists()  # three finished batches kept
    counter = CountingScorer(MatrixScorer(scores))
    index = CURIndex.build(counter, *args, batch_size=50, progress=False, checkpoint=ckpt)
    assert counter.batches == 10 - 3  # only the rest is scored
    np.testing.assert_array_equal(index.r, scores[:9])
    assert not ckpt.exists()  # removed once complete


def test_checkpoint_of_another_build_is_refused(tmp_path: Path) -> None:
    scores = np.random.default_rng().standard_normal((4, 60))
    ckpt = tmp_path / "c.npz"
    with pytest.raises(KeyboardInterrupt):
        CURIndex.build(_Interrupting(scores, 2), [0, 1], list(range(60)), batch_size=10,
                       progress=False, checkpoint=ckpt)  # fmt: skip
    with pytest.raises(ValueError, match=r"checkpoint .*: expected a checkpoint of these queries"):
        CURIndex.build(MatrixScorer(scores), [0, 1, 2], list(range(60)), batch_size=10,
                       progress=False, checkpoint=ckpt)  # fmt: skip
    ckpt.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"checkpoint .*: expected a readable .npz checkpoint"):
        CURIndex.build(MatrixScorer(scores), [0, 1], list(range(60)), batch_size=10,
                       progress=False, checkpoint=ckpt)  # fmt: skip


def test_explicit_anchor_ids_are_not_cached(small_index: CURIndex) -> None:
    for start in range(5):
        small_index.search(10, k=2, anchor_items=list(range(start, start + 5)), budget=10)
    assert len(small_index._anchor_cache) == 0


def test_hnsw_mips_scores_are_inner_products() -> None:
    pytest.importorskip("faiss")
    from structmat.retrieval import MIPSIndex

    rng = np.random.default_rng()
    r = rng.standard_normal((16, 3000)) * rng.uniform(0.1, 3.0, 3000)  # very unequal norms
    w = rng.standard_normal((20, 16))
    s_flat, i_flat = MIPSIndex(r, "faiss", "flat").search(w, 30)
    s_hnsw, i_hnsw = MIPSIndex(r, "faiss", "hnsw").search(w, 30)
    exact = w @ r
    np.testing.assert_allclose(s_flat, np.take_along_axis(exact, i_flat, 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(s_hnsw, np.take_along_axis(exact, i_hnsw, 1), rtol=1e-4, atol=1e-3)
    overlap = np.mean([len(set(a) & set(b)) / 30 for a, b in zip(i_flat, i_hnsw, strict=True)])
    assert overlap >= 0.9


def test_changing_the_anchor_rule_drops_cached_anchors(small_index: CURIndex) -> None:
    first = small_index.anchor_ids(8)
    small_index.seed = 12345
    second = small_index.anchor_ids(8)
    small_index.seed = 0
    np.testing.assert_array_equal(small_index.anchor_ids(8), first)
    np.testing.assert_array_equal(second, select_anchor_items(small_index.r, 8, "random", 12345))
    small_index.anchor_method = "kmeans"
    np.testing.assert_array_equal(
        small_index.anchor_ids(8), select_anchor_items(small_index.r, 8, "kmeans", 0)
    )
    with pytest.raises(ValueError, match=r"seed: expected an integer, got 1.5"):
        small_index.seed = 1.5  # type: ignore[assignment]
