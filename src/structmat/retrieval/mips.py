"""Maximum-inner-product search over the columns of R: FAISS, or a NumPy fallback.

ANNCUR's approximate scores of a query are ŝ = w · R with w = c · U (k_q,), so the
best candidates are the columns of R (k_q × N) with the largest inner product with
w: a MIPS query over N vectors of dimension k_q. FAISS serves it (exact ``flat``
or graph-based ``hnsw``); without FAISS a blocked NumPy matrix product does.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from structmat._checks import (
    as_real_array,
    check_choice,
    check_int,
    check_positive_int,
    fail,
    shape_str,
)

__all__ = ["BACKENDS", "MIPS_KINDS", "MIPSIndex", "faiss_available"]

BACKENDS = ("auto", "faiss", "numpy")
MIPS_KINDS = ("flat", "hnsw")

# The NumPy backend scores at most this many (query, item) pairs at once (≈ 80 MB in float64).
_BLOCK_PAIRS = 10_000_000


def faiss_available() -> bool:
    """Whether ``faiss`` (the ``faiss-cpu`` package) can be imported."""
    return importlib.util.find_spec("faiss") is not None


class MIPSIndex:
    """Top-m inner-product search over the N columns of ``r`` (k_q, N).

    Args:
        r: (k_q, N) vectors stored as columns (the CUR index's R).
        backend: ``"faiss"``, ``"numpy"``, or ``"auto"`` (FAISS when importable).
        kind: ``"flat"`` (exact) or ``"hnsw"`` (approximate graph search; FAISS only;
            MIPS is reduced to Euclidean search by one extra coordinate).
        hnsw_m: HNSW graph degree; ``ef_search``: HNSW beam width (raised to m when smaller).
    """

    def __init__(
        self,
        r: np.ndarray,
        backend: str = "auto",
        kind: str = "flat",
        hnsw_m: int = 32,
        ef_search: int = 256,
    ) -> None:
        r = as_real_array(r, "r", 2, "(k_q, N)")
        check_choice(backend, "backend", BACKENDS)
        check_choice(kind, "kind", MIPS_KINDS)
        check_positive_int(hnsw_m, "hnsw_m")
        check_positive_int(ef_search, "ef_search")
        if backend == "auto":
            backend = "faiss" if faiss_available() else "numpy"
        if kind == "hnsw" and backend != "faiss":
            raise fail("mips", "'flat' without faiss (HNSW needs faiss-cpu)", repr(kind))
        self.backend = backend
        self.kind = kind
        self.ef_search = ef_search
        self.dim, self.size = r.shape
        if backend == "faiss":
            import faiss  # optional dependency (faiss-cpu)

            vecs = np.ascontiguousarray(r.T, dtype=np.float32)  # (N, k_q): FAISS stores rows
            self._faiss: Any
            if kind == "flat":
                self._faiss = faiss.IndexFlatIP(self.dim)
            else:
                # MIPS -> Euclidean NN (Bachrach et al., RecSys 2014, Sec. 4): append
                # sqrt(M² - ‖v‖²) so every vector has norm M; for a query [w, 0],
                # ‖[w, 0] - v'‖² = ‖w‖² + M² - 2 w·v ranks exactly as w·v does, and
                # HNSW's graph works far better on a metric than on raw inner products.
                sq = (vecs.astype(np.float64) ** 2).sum(1)  # (N,)
                self._max_sq = float(sq.max())
                extra = np.sqrt(np.maximum(self._max_sq - sq, 0.0)).astype(np.float32)
                vecs = np.ascontiguousarray(
                    np.concatenate([vecs, extra[:, None]], 1)
                )  # (N, k_q + 1)
                self._faiss = faiss.IndexHNSWFlat(self.dim + 1, hnsw_m)
            self._faiss.add(vecs)
        else:
            self._r = r  # (k_q, N), shared with the CUR index (no copy)

    def search(self, w: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``m`` columns with the largest ``w · r[:, j]``, best first.

        Args:
            w: (n, k_q) query vectors.
            m: results per query, 1 <= m <= N.

        Returns:
            (scores, ids): (n, m) approximate scores and (n, m) int64 column ids,
            best first; ties in the NumPy backend go to the smaller id.
        """
        w = as_real_array(w, "w", 2, "(n, k_q)")
        if w.shape[1] != self.dim:
            got = f"shape {shape_str(w.shape)}"
            raise fail("w", f"k_q = {self.dim} columns (the rows of r)", got)
        check_int(m, "m", 1, self.size, wanted=f"a count in [1, {self.size}] (the columns of r)")
        if self.backend == "faiss":
            q = np.ascontiguousarray(w, dtype=np.float32)  # (n, k_q)
            if self.kind == "flat":
                scores, ids = self._faiss.search(q, m)
                return scores, ids.astype(np.int64)
            self._faiss.hnsw.efSearch = max(self.ef_search, m)
            q_aug = np.ascontiguousarray(np.concatenate([q, np.zeros((len(q), 1), np.float32)], 1))
            dist, ids = self._faiss.search(q_aug, m)  # (n, m) squared L2 distances
            # Back to inner products: w·v = (‖w‖² + M² - ‖[w, 0] - v'‖²) / 2.
            scores = 0.5 * ((q.astype(np.float64) ** 2).sum(1, keepdims=True) + self._max_sq - dist)
            return scores.astype(np.float32), ids.astype(np.int64)
        return self._numpy_search(w, m)

    def _numpy_search(self, w: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        n = w.shape[0]
        out_s = np.empty((n, m), dtype=np.result_type(self._r.dtype, np.float32))
        out_i = np.empty((n, m), dtype=np.int64)
        step = max(1, _BLOCK_PAIRS // max(self.size, 1))
        for lo in range(0, n, step):
            s = w[lo : lo + step].astype(self._r.dtype, copy=False) @ self._r  # (b, N)
            # argpartition finds the top m in O(N); only those m are then sorted,
            # by (-score, id) so that ties are broken the same way every time.
            part = np.argpartition(-s, m - 1, axis=1)[:, :m] if m < self.size else None
            for row in range(s.shape[0]):
                cand = part[row] if part is not None else np.arange(self.size)
                if part is not None:
                    # Ties with the m-th score outside the partition: take all of them,
                    # so the smallest ids among equal scores win.
                    cut = s[row, cand].min()
                    cand = np.flatnonzero(s[row] >= cut)
                order = np.lexsort((cand, -s[row, cand]))[:m]
                out_i[lo + row] = cand[order]
                out_s[lo + row] = s[row, cand[order]]
        return out_s, out_i
