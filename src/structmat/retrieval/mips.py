"""Maximum-inner-product search over the columns of R: FAISS, or a NumPy fallback.

ANNCUR's approximate scores of a query are ŝ = w · R with w = c · U (k_q,), so the
best candidates are the columns of R (k_q × N) with the largest inner product with
w: a MIPS query over N vectors of dimension k_q. FAISS serves it (exact ``flat``
or graph-based ``hnsw``); without FAISS a blocked NumPy matrix product does.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
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

__all__ = [
    "BACKENDS",
    "MIPS_KINDS",
    "MIPSIndex",
    "blocked_scores",
    "faiss_available",
    "ivf_index",
]

BACKENDS = ("auto", "faiss", "numpy")
MIPS_KINDS = ("flat", "hnsw", "ivf")

# The NumPy backend scores at most this many (query, item) pairs at once (≈ 80 MB in float64).
_BLOCK_PAIRS = 10_000_000


def faiss_available() -> bool:
    """Whether ``faiss`` (the ``faiss-cpu`` package) can be imported."""
    return importlib.util.find_spec("faiss") is not None


# ivf: candidates re-scored exactly, max(_RERANK * m, m + 64) of them.
_RERANK = 4
_MIN_IVF = 1_000  # about sqrt(N) lists of >= 39 training points each
_CHUNK_ROWS = 16_384  # rows of R^T read (and converted to float32) at a time


def blocked_scores(r: np.ndarray, w: np.ndarray) -> np.ndarray:
    """w · r[:, j] for every column j, in column blocks: (N,) float64.

    Args:
        r: (k_q, N), possibly float16 and memory-mapped (never copied whole).
        w: (k_q,) query vector.
    """
    w64 = np.asarray(w, dtype=np.float64)
    out = np.empty(r.shape[1], dtype=np.float64)
    for lo in range(0, r.shape[1], _CHUNK_ROWS):
        out[lo : lo + _CHUNK_ROWS] = w64 @ r[:, lo : lo + _CHUNK_ROWS].astype(np.float64)
    return out


def _augment(vecs: np.ndarray, max_sq: float, width: int) -> np.ndarray:
    """[v, sqrt(M² - ‖v‖²), 0...] of width ``width``: MIPS as Euclidean search (float32)."""
    sq = (vecs.astype(np.float64) ** 2).sum(1)  # (n,)
    out = np.zeros((len(vecs), width), dtype=np.float32)
    out[:, : vecs.shape[1]] = vecs
    out[:, vecs.shape[1]] = np.sqrt(np.maximum(max_sq - sq, 0.0))
    return out


class MIPSIndex:
    """Top-m inner-product search over the N columns of ``r`` (k_q, N).

    Args:
        r: (k_q, N) vectors stored as columns (the CUR index's R); float16 is kept
            as it is (``ivf`` re-scores from it without a copy).
        backend: ``"faiss"``, ``"numpy"``, or ``"auto"`` (FAISS when importable).
        kind: ``"flat"`` (exact), ``"hnsw"`` (approximate graph search) or
            ``"ivf"`` (inverted file of 4-bit codes, >= 1,000 items, candidates
            re-scored exactly); the last two need FAISS.
        hnsw_m: HNSW graph degree; ``ef_search``: HNSW beam width (raised to m when smaller).
        nprobe: inverted lists ``ivf`` visits per query (of about sqrt(N)).
    """

    def __init__(
        self,
        r: np.ndarray,
        backend: str = "auto",
        kind: str = "flat",
        hnsw_m: int = 32,
        ef_search: int = 256,
        nprobe: int = 8,
        *,
        _faiss_index: Any = None,
        _max_sq: float = 0.0,
    ) -> None:
        if _faiss_index is None:
            r = as_real_array(r, "r", 2, "(k_q, N)")
        check_choice(backend, "backend", BACKENDS)
        check_choice(kind, "kind", MIPS_KINDS)
        check_positive_int(hnsw_m, "hnsw_m")
        check_positive_int(ef_search, "ef_search")
        check_positive_int(nprobe, "nprobe")
        if backend == "auto":
            backend = "faiss" if faiss_available() else "numpy"
        if kind != "flat" and backend != "faiss":
            raise fail("mips", f"'flat' without faiss ({kind} needs faiss-cpu)", repr(kind))
        self.backend = backend
        self.kind = kind
        self.ef_search = ef_search
        self.nprobe = nprobe
        self.dim, self.size = r.shape
        self._r = r  # (k_q, N), shared with the CUR index (no copy)
        self._faiss: Any = _faiss_index
        self._max_sq = _max_sq
        if backend != "faiss" or _faiss_index is not None:
            return
        import faiss  # optional dependency (faiss-cpu)

        if kind == "flat":
            self._faiss = faiss.IndexFlatIP(self.dim)
            self._faiss.add(np.ascontiguousarray(r.T, dtype=np.float32))  # (N, k_q): rows
        elif kind == "hnsw":
            # MIPS -> Euclidean NN (Bachrach et al., RecSys 2014, Sec. 4): append
            # sqrt(M² - ‖v‖²) so every vector has norm M; for a query [w, 0],
            # ‖[w, 0] - v'‖² = ‖w‖² + M² - 2 w·v ranks exactly as w·v does, and
            # HNSW's graph works far better on a metric than on raw inner products.
            self._max_sq = float((r.astype(np.float64) ** 2).sum(0).max())
            self._faiss = faiss.IndexHNSWFlat(self.dim + 1, hnsw_m)
            self._faiss.add(_augment(r.T, self._max_sq, self.dim + 1))  # (N, k_q + 1)
        else:
            self._faiss, self._max_sq = ivf_index(lambda lo, hi: r[:, lo:hi].T, self.size)

    @classmethod
    def from_bytes(
        cls, r: np.ndarray, data: np.ndarray, kind: str, max_sq: float, nprobe: int = 8
    ) -> MIPSIndex:
        """A FAISS index saved in an index file, searching the columns of ``r``.

        Args:
            r: (k_q, N) the vectors the index was built from (not checked again).
            data: (bytes,) uint8, the serialised index; a memory-mapped array is
                read from its file in pieces (no copy of it in RAM).
            kind: ``"hnsw"`` or ``"ivf"``; max_sq: the saved :attr:`max_sq`.
        """
        import faiss

        if isinstance(data, np.memmap):
            with open(data.filename, "rb") as f:  # type: ignore[arg-type]
                f.seek(data.offset)
                left = data.nbytes

                def read(size: int) -> bytes:
                    nonlocal left
                    chunk = f.read(min(size, left))
                    left -= len(chunk)
                    return chunk

                index = faiss.read_index(faiss.PyCallbackIOReader(read))  # type: ignore[attr-defined]
        else:
            index = faiss.deserialize_index(np.ascontiguousarray(data, dtype=np.uint8))
        return cls(r, "faiss", kind, nprobe=nprobe, _faiss_index=index, _max_sq=max_sq)

    @classmethod
    def saved(
        cls, r: np.ndarray, data: np.ndarray | None, config: dict[str, Any], settings: dict
    ) -> MIPSIndex | None:
        """The FAISS index an index file holds, or None (none saved, or the settings
        ``settings`` of the loading index ask for another backend or kind).

        Args:
            r: (k_q, N); data: the file's ``mips`` bytes; config: the file's settings.
        """
        kind = settings.get("mips", "flat")
        if data is None or settings.get("backend", "auto") == "numpy":
            return None
        if kind != config.get("mips"):
            return None
        max_sq = float(config.get("mips_max_sq", 0.0))
        return cls.from_bytes(r, data, kind, max_sq, nprobe=int(settings.get("nprobe", 8)))

    @property
    def max_sq(self) -> float:
        """M², the Euclidean reduction's squared radius: the largest squared norm of a
        column (for ``ivf``, of a centred column)."""
        return self._max_sq

    def search(self, w: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``m`` columns with the largest ``w · r[:, j]``, best first.

        Args:
            w: (n, k_q) query vectors.
            m: results per query, 1 <= m <= N.

        Returns:
            (scores, ids): (n, m) approximate scores and (n, m) int64 column ids,
            best first; ties in the NumPy backend go to the smaller id. ``hnsw`` and
            ``ivf`` may find fewer than m: the rest are id -1 (FAISS's convention).
        """
        w = as_real_array(w, "w", 2, "(n, k_q)")
        if w.shape[1] != self.dim:
            got = f"shape {shape_str(w.shape)}"
            raise fail("w", f"k_q = {self.dim} columns (the rows of r)", got)
        check_int(m, "m", 1, self.size, wanted=f"a count in [1, {self.size}] (the columns of r)")
        if self.backend != "faiss":
            return self._numpy_search(w, m)
        q = np.ascontiguousarray(w, dtype=np.float32)  # (n, k_q)
        if self.kind == "flat":
            scores, ids = self._faiss.search(q, m)
            return scores, ids.astype(np.int64)
        if self.kind == "ivf":  # see ivf_index: [λw, 0] with λ = M / ‖w‖
            norm = np.linalg.norm(q.astype(np.float64), axis=1, keepdims=True)
            scale = np.sqrt(self._max_sq) / np.where(norm > 0, norm, 1.0)
            q_aug = np.zeros((len(q), self._faiss.d), dtype=np.float32)
            q_aug[:, : self.dim] = q * scale
            self._faiss.nprobe = min(self.nprobe, self._faiss.nlist)
            _, cand = self._faiss.search(q_aug, min(self.size, max(_RERANK * m, m + 64)))
            return self._rescore(w, cand, m)
        self._faiss.hnsw.efSearch = max(self.ef_search, m)
        q_aug = np.ascontiguousarray(np.concatenate([q, np.zeros((len(q), 1), np.float32)], 1))
        dist, ids = self._faiss.search(q_aug, m)  # (n, m) squared L2 distances
        # Back to inner products: w·v = (‖w‖² + M² - ‖[w, 0] - v'‖²) / 2.
        scores = 0.5 * ((q.astype(np.float64) ** 2).sum(1, keepdims=True) + self._max_sq - dist)
        return scores.astype(np.float32), ids.astype(np.int64)

    def best_unscored(
        self, w: np.ndarray, scored_ids: list[np.ndarray], m: int
    ) -> list[np.ndarray]:
        """Per query, the m columns not yet scored with the largest w · r[:, j].

        Args:
            w: (n, k_q) query vectors; scored_ids: n arrays (s,) of columns to skip
                (each query has scored the same number s); m: columns wanted.

        Returns:
            n int64 arrays (m,).
        """
        s = len(scored_ids[0])
        # Asking for s + m guarantees m unscored ones among exact results.
        _, top = self.search(w, min(s + m, self.size))  # (n, s + m)
        out = []
        for i in range(len(scored_ids)):
            row = top[i]
            keep = row[(row >= 0) & ~np.isin(row, scored_ids[i])][:m]
            if len(keep) < m:  # HNSW or IVF may return fewer than asked: exact fallback
                approx = blocked_scores(self._r, w[i])  # (N,)
                approx[scored_ids[i]] = -np.inf
                keep = np.lexsort((np.arange(self.size), -approx))[:m]
            out.append(keep.astype(np.int64))
        return out

    def _rescore(self, w: np.ndarray, cand: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """The best m of each row's candidates by exact w · r[:, j] (ties: smaller id)."""
        out_s = np.full((len(w), m), -np.inf, dtype=np.float32)
        out_i = np.full((len(w), m), -1, dtype=np.int64)
        for row in range(len(w)):
            c = cand[row][cand[row] >= 0].astype(np.int64)
            s = w[row].astype(np.float64) @ self._r[:, c].astype(np.float64)  # exact
            order = np.lexsort((c, -s))[:m]
            out_s[row, : len(order)], out_i[row, : len(order)] = s[order], c[order]
        return out_s, out_i

    def _numpy_search(self, w: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        n = w.shape[0]
        out_s = np.empty((n, m), dtype=np.result_type(self._r.dtype, np.float32))
        out_i = np.empty((n, m), dtype=np.int64)
        step = max(1, _BLOCK_PAIRS // max(self.size, 1))
        dtype = np.result_type(self._r.dtype, np.float32)  # no float16 products
        r = self._r.astype(dtype, copy=False)
        for lo in range(0, n, step):
            s = w[lo : lo + step].astype(dtype, copy=False) @ r  # (b, N)
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


def ivf_index(
    rows: Callable[[int, int], np.ndarray], n: int, seed: int = 1234
) -> tuple[Any, float]:
    """A FAISS inverted file of 4-bit codes over n vectors read in chunks: (index, M²).

    Three steps keep compressed codes faithful to inner products:

    1. Centre: v -> v - μ (μ the mean of an evenly spread sample). w · (v - μ) =
       w · v - w · μ ranks items exactly as w · v does, and removes the direction
       every item shares (scores of one anchor query are often all large), which
       would otherwise own the k-means lists and the 4-bit range.
    2. Reduce MIPS to Euclidean search (Bachrach et al., RecSys 2014, Sec. 4): append
       sqrt(M² - ‖v - μ‖²), so every vector has norm M and the lists are cosine
       neighbourhoods.
    3. (At search) scale the query to norm M, [λw, 0] with λ = M/‖w‖:
       ‖λw - v'‖² = λ²‖w‖² + M² - 2λ w · (v - μ), so the code's error in the large
       appended coordinate (the query is 0 there) stays small beside the term that
       ranks; unscaled, a short w is drowned by it.

    About sqrt(n) lists; one 4-bit scalar code per coordinate ((k_q + 1)/2 bytes per
    vector, zero-padded to a multiple of 16). Only one chunk of ``rows`` is converted
    to float32 at a time.

    Args:
        rows: ``rows(lo, hi)`` -> (hi - lo, d) vectors lo..hi-1 (any float dtype).
        n: number of vectors, >= 1,000.
        seed: seed of FAISS's k-means (a fixed seed gives the same index each time).
    """
    import faiss

    if n < _MIN_IVF:
        raise fail("mips", f"'ivf' for at least {_MIN_IVF} items ('flat' below)", f"{n} items")
    spans = [(lo, min(lo + _CHUNK_ROWS, n)) for lo in range(0, n, _CHUNK_ROWS)]
    nlist = int(min(max(1, round(math.sqrt(n))), n // 39))
    n_train = min(n, 64 * nlist)
    parts = []  # an evenly spread training sample
    for lo, hi in spans:
        j = np.arange(lo, hi)
        parts.append(np.asarray(rows(lo, hi), dtype=np.float32)[(j * n_train) % n < n_train])
    sample = np.concatenate(parts)
    del parts
    mu = sample.astype(np.float64).mean(0).astype(np.float32)  # (d,)
    max_sq = 0.0
    for lo, hi in spans:  # M² over every vector, so that no appended coordinate is imaginary
        centred = np.asarray(rows(lo, hi), dtype=np.float64) - mu
        max_sq = max(max_sq, float((centred**2).sum(1).max()))
    # Zero coordinates up to a multiple of 16: FAISS's SIMD scan of 4-bit codes needs
    # it (measured: 21 ms a query at 501 dimensions, 1.8 ms at 504, k_q = 500, N = 1M).
    dim = -(-(sample.shape[1] + 1) // 16) * 16
    index = faiss.IndexIVFScalarQuantizer(
        faiss.IndexFlatL2(dim), dim, nlist, faiss.ScalarQuantizer.QT_4bit
    )
    index.cp.seed = seed
    index.train(_augment(sample - mu, max_sq, dim))
    del sample
    for lo, hi in spans:  # encode and add, a chunk at a time
        index.add(_augment(np.asarray(rows(lo, hi), dtype=np.float32) - mu, max_sq, dim))
    return index, max_sq
