"""Choosing the anchor items of a CUR index from the anchor-query score matrix R.

ANNCUR (Yadav et al., EMNLP 2022, Sec. 3) scores every test query against a fixed
set of k_i *anchor items* and reconstructs the rest of its score row from them, so
the anchors must span the column space of R (k_q × N) well. Three rules:

* ``"random"``: uniform without replacement (the paper's choice).
* ``"leverage"``: sampling without replacement proportionally to the column
  leverage scores of R's top-r right singular subspace, r = min(k_i, rank R) —
  the classic CUR column-selection rule (Mahoney & Drineas, PNAS 2009, Eq. 3).
* ``"kmeans"``: k-means with k_i clusters on R's (unit-normalised) columns,
  then the item nearest each centroid: anchors that cover the item population.

Every rule is deterministic given ``seed``, so a saved index reproduces its
anchors after loading. ``cur_query_weights`` and ``cur_approximate_scores`` are the
solve on the chosen anchors (ANNCUR Eq. 2).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from structmat._checks import (
    as_real_array,
    check_choice,
    check_int,
    check_number,
    fail,
    shape_str,
)

__all__ = [
    "ANCHOR_METHODS",
    "check_rcond",
    "check_seed",
    "cur_approximate_scores",
    "cur_query_weights",
    "select_anchor_items",
]

ANCHOR_METHODS = ("random", "leverage", "kmeans")

# k-means runs on at most this many columns (a uniform sample); the cost is
# O(iters · sample · k_q · k_i), independent of N beyond that.
_KMEANS_SAMPLE = 50_000
_KMEANS_ITERS = 25


def check_seed(seed: Any) -> None:
    """An integer >= 0 (what ``np.random.default_rng`` takes)."""
    check_int(seed, "seed", wanted="an integer")
    if seed < 0:
        raise fail("seed", "an integer >= 0 (NumPy seeds are non-negative)", repr(seed))


def check_rcond(rcond: Any) -> None:
    check_number(rcond, "rcond", 0.0, 1.0, high_open=True)


def cur_query_weights(c: Any, r_anchor: Any, rcond: float) -> np.ndarray:
    """w = c · pinv(R[:, S]): the query's coordinates on the anchor queries.

    Args:
        c: (n, s) exact scores of n queries against the s anchor items S.
        r_anchor: (k_q, s) the anchor queries' scores of the same items, R[:, S].
        rcond: singular values <= rcond × the largest are treated as zero.

    Returns:
        w: (n, k_q) float64, so that the approximate scores are w · R (ANNCUR Eq. 2).
    """
    c = as_real_array(c, "c", 2, "(n, s)")
    r_anchor = as_real_array(r_anchor, "r_anchor", 2, "(k_q, s)")
    if r_anchor.shape[1] != c.shape[1]:
        got = f"shape {shape_str(r_anchor.shape)}"
        raise fail("r_anchor", f"s = {c.shape[1]} columns (to match c)", got)
    check_rcond(rcond)
    return c.astype(np.float64) @ anchor_pinv(r_anchor, rcond)  # (n, k_q)


def anchor_pinv(r_anchor: np.ndarray, rcond: float) -> np.ndarray:
    """U = pinv(R[:, S]) in float64, singular values <= rcond × the largest dropped:
    (s, k_q) for r_anchor (k_q, s)."""
    return np.linalg.pinv(r_anchor.astype(np.float64), rcond=rcond)


def anchor_set(
    r: np.ndarray, anchor_items: Any, method: str, seed: int, rcond: float
) -> tuple[np.ndarray, np.ndarray]:
    """(anchor ids (k_i,) int64, U = pinv(R[:, ids]) (k_i, k_q) float64) of a CUR index.

    Args:
        r: (k_q, N) finite anchor-query scores (a CUR index's R: not checked again).
        anchor_items: a count k_i (chosen by ``method`` and ``seed``) or a sequence of
            distinct item ids.
    """
    n = r.shape[1]
    if isinstance(anchor_items, (int, np.integer)) and not isinstance(anchor_items, bool):
        if not 1 <= anchor_items <= n:
            raise fail("anchor_items", f"a count in [1, {n}]", repr(int(anchor_items)))
        ids = select_checked(r, int(anchor_items), method, seed)
    else:
        try:
            ids = np.asarray(anchor_items)
        except (TypeError, ValueError) as err:
            raise fail("anchor_items", "a count or a sequence of ids", repr(anchor_items)) from err
        if ids.ndim != 1 or ids.size == 0 or ids.dtype.kind not in "iu":
            raise fail("anchor_items", "a count or a 1-D sequence of item ids", repr(anchor_items))
        if ids.min() < 0 or ids.max() >= n or np.unique(ids).size != ids.size:
            raise fail("anchor_items", f"distinct ids in [0, {n})", "others")
        ids = ids.astype(np.int64)
    return ids, anchor_pinv(r[:, ids], rcond)


def cur_approximate_scores(c: Any, r: Any, anchor_ids: Any, rcond: float) -> np.ndarray:
    """ŝ = c · pinv(R[:, S]) · R, the CUR approximation of a query's scores (ANNCUR Eq. 2).

    Args:
        c: (n, s) exact scores against the anchor items; r: (k_q, N);
        anchor_ids: (s,) the anchor items' column ids in r.

    Returns:
        ŝ: (n, N) float64.
    """
    r = as_real_array(r, "r", 2, "(k_q, N)")
    ids = as_real_array(anchor_ids, "anchor_ids", 1, "(s,)")
    if ids.dtype.kind not in "iu" or (ids.size and (ids.min() < 0 or ids.max() >= r.shape[1])):
        raise fail("anchor_ids", f"integer column ids in [0, {r.shape[1]}) of r", repr(ids))
    return cur_query_weights(c, r[:, ids], rcond) @ r.astype(np.float64)  # (n, N)


def select_anchor_items(r: Any, k: int, method: str, seed: int) -> np.ndarray:
    """Pick ``k`` distinct anchor item ids from the columns of ``r``.

    Args:
        r: (k_q, N) anchor-query scores.
        k: number of anchors, 1 <= k <= N.
        method: one of ``ANCHOR_METHODS``.
        seed: seed of the NumPy generator that drives the choice (>= 0).

    Returns:
        ids: (k,) int64 item ids, distinct, sorted ascending.
    """
    return select_checked(as_real_array(r, "r", 2, "(k_q, N)"), k, method, seed)


def select_checked(r: np.ndarray, k: int, method: str, seed: int) -> np.ndarray:
    """:func:`select_anchor_items` for an R known to be finite (a CUR index's): the
    ``random`` rule then never reads R (a memory-mapped 1 GB R stays on disk)."""
    n = r.shape[1]
    check_int(k, "k", 1, n, wanted=f"a count in [1, {n}] (the columns of r)")
    check_choice(method, "method", ANCHOR_METHODS)
    check_seed(seed)
    rng = np.random.default_rng(seed)
    if method == "random":
        ids = rng.choice(n, size=k, replace=False)
    elif method == "leverage":
        ids = _leverage(r, k, rng)
    elif method == "kmeans":
        ids = _kmeans(r, k, rng)
    else:  # checked above
        raise AssertionError(method)
    return np.sort(ids.astype(np.int64))


def _leverage(r: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sample columns ∝ leverage ℓ_j = ‖V_r[j]‖² (Mahoney & Drineas 2009, Eq. 3)."""
    r64 = r.astype(np.float64)
    # Right singular vectors from the small k_q × k_q Gram matrix: R Rᵀ = U S² Uᵀ,
    # V = Rᵀ U S⁻¹, so ‖V[j, :t]‖² = Σ_t (Rᵀ U)[j, t]² / s_t².
    gram = r64 @ r64.T  # (k_q, k_q)
    evals, evecs = np.linalg.eigh(gram)  # ascending
    evals, evecs = evals[::-1], evecs[:, ::-1]
    # Directions below 1e-12 of the top eigenvalue are rounding, not rank.
    keep = evals > evals[0] * 1e-12 if evals[0] > 0 else np.zeros_like(evals, dtype=bool)
    t = min(k, int(keep.sum()))
    if t == 0:
        return rng.choice(r.shape[1], size=k, replace=False)
    proj = r64.T @ evecs[:, :t]  # (N, t)
    lev = (proj**2 / evals[:t]).sum(axis=1)  # (N,)
    # A floor keeps every column eligible, so k > rank still gets k distinct ids.
    p = lev + 1e-9 * lev.max()
    return rng.choice(r.shape[1], size=k, replace=False, p=p / p.sum())


def _kmeans(r: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means (k-means++ seeding, Lloyd steps) on R's columns; nearest item per centroid."""
    n = r.shape[1]
    pool = rng.choice(n, size=min(n, _KMEANS_SAMPLE), replace=False) if n > _KMEANS_SAMPLE else None
    pts = (r[:, pool] if pool is not None else r).T.astype(np.float64)  # (n', k_q)
    # Columns are compared by direction: a column's scale is the item's overall
    # score level, which the reconstruction absorbs; its direction is what must be covered.
    pts = pts / np.maximum(np.linalg.norm(pts, axis=1, keepdims=True), 1e-300)
    m = pts.shape[0]
    sq = (pts**2).sum(1)  # (n',)
    # k-means++ seeding (Arthur & Vassilvitskii, 2007).
    centers = [int(rng.integers(m))]
    d2 = np.maximum(sq - 2 * pts @ pts[centers[0]] + sq[centers[0]], 0)  # (n',)
    for _ in range(1, k):
        total = d2.sum()
        nxt = int(rng.choice(m, p=d2 / total)) if total > 0 else int(rng.integers(m))
        centers.append(nxt)
        d2 = np.minimum(d2, np.maximum(sq - 2 * pts @ pts[nxt] + sq[nxt], 0))
    c = pts[centers].copy()  # (k, k_q)
    for _ in range(_KMEANS_ITERS):
        dist = sq[:, None] - 2 * pts @ c.T + (c**2).sum(1)[None, :]  # (n', k)
        assign = dist.argmin(1)  # (n',)
        new = np.zeros_like(c)
        np.add.at(new, assign, pts)
        counts = np.bincount(assign, minlength=k)
        empty = counts == 0
        new[~empty] /= counts[~empty, None]
        new[empty] = c[empty]  # an empty cluster keeps its centre
        if np.allclose(new, c):
            break
        c = new
    # The nearest distinct point to each centre, greedily; ties and collisions
    # fall through to the next-nearest unused point.
    dist = sq[:, None] - 2 * pts @ c.T + (c**2).sum(1)[None, :]  # (n', k)
    chosen: list[int] = []
    used = np.zeros(m, dtype=bool)
    for j in range(k):
        order = np.argsort(dist[:, j], kind="stable")
        pick = int(order[np.argmax(~used[order])])
        used[pick] = True
        chosen.append(pick)
    ids = np.asarray(chosen)
    return pool[ids] if pool is not None else ids
