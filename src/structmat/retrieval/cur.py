"""k-NN search for expensive interaction scorers (cross-encoders) by CUR decomposition.

ANNCUR (Yadav et al., "Efficient Nearest Neighbor Search for Cross-Encoder Models
using Matrix Factorization", EMNLP 2022, Sec. 3) and its adaptive form ADACUR
(Yadav et al., "Adaptive Retrieval and Scalable Indexing for k-NN Search with
Cross-Encoders", ICLR 2024, Sec. 3):

* Index: R = s(Q_anchor, all items), k_q × N, scored once offline.
* Query q: c = s(q, I_anchor) (k_i exact scores against the anchor items), then
  all N scores are approximated by the CUR reconstruction (paper Eq. 2)

      ŝ = c · U · R,        U = pinv(R[:, I_anchor])   (k_i × k_q),

  the top (budget - k_i) items by ŝ are scored exactly, and the best k of all
  exactly scored items (anchors included) are returned.

Because ŝ = w · R with w = c · U (k_q,), ranking by ŝ is a maximum-inner-product
query over R's N columns; a FAISS index over them (built once, independent of the
anchors) serves it. ADACUR (``adaptive_rounds > 1``) spends the budget in rounds:
every round's exactly scored items join the query's anchor set S and w is
re-solved as w = c_S · pinv(R[:, S]) before the next MIPS query, so later rounds
look where the earlier exact scores point.

Stability: U is an SVD pseudo-inverse in float64 whose singular values below
``rcond`` × the largest are dropped (a truncated-SVD solve): anchor columns that
are nearly dependent would otherwise amplify score noise by 1/σ_min.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from structmat._checks import as_real_array, check_choice, check_positive_int, fail
from structmat.retrieval.anchors import (
    ANCHOR_METHODS,
    anchor_set,
    check_rcond,
    check_seed,
    cur_approximate_scores,
    cur_query_weights,
)
from structmat.retrieval.build import Scorer, as_score_block, check_sequence, score_matrix
from structmat.retrieval.mips import BACKENDS, MIPS_KINDS, MIPSIndex
from structmat.retrieval.store import read_index, write_index

__all__ = ["CURIndex", "cur_approximate_scores", "cur_query_weights"]


# The constructor's settings, as saved in an index file's config.
_SETTINGS = ("anchor_method", "seed", "rcond", "backend", "mips", "nprobe", "scorer_spec")


class _AnchorSetting:
    """A setting of the anchor rule: checked and converted when set; a change drops
    the index's cached anchors and pseudo-inverses."""

    def __init__(self, check: Callable[[Any], None], convert: Callable[[Any], Any]) -> None:
        self.check, self.convert = check, convert

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = "_" + name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        return self if obj is None else getattr(obj, self.attr)

    def __set__(self, obj: Any, value: Any) -> None:
        self.check(value)
        setattr(obj, self.attr, self.convert(value))
        obj._anchor_cache.clear()


def _split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal sizes, larger ones first."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class CURIndex:
    """ANNCUR / ADACUR index over N items for one scorer.

    Build with :meth:`build` (scores k_q anchor queries against every item), then
    :meth:`search`. Example::

        index = CURIndex.build(score, anchor_queries, items, batch_size=256)
        scores, ids = index.search("a query", k=10, anchor_items=50, budget=100)

    Args:
        r: (k_q, N) anchor-query scores R.
        items: the N items (what the scorer takes; JSON values to be saved).
        anchor_queries: the k_q anchor queries R was scored with (for :meth:`add`
            and saving); ``None`` when unknown.
        score: the scorer, ``score(queries: list, items: list) -> (len(queries), len(items))``.
        anchor_method: how anchor items are chosen from R: ``"random"``,
            ``"leverage"`` or ``"kmeans"`` (see ``structmat.retrieval.anchors``).
        seed: seed of the anchor choice (deterministic, so a loaded index matches).
        rcond: relative cut-off of the pseudo-inverse U = pinv(R[:, anchors]).
        backend: MIPS backend, ``"auto"`` (FAISS when installed), ``"faiss"`` or ``"numpy"``.
        mips: ``"flat"`` (exact MIPS), ``"hnsw"`` (FAISS graph) or ``"ivf"`` (FAISS
            inverted file of 4-bit codes, for millions of items); both approximate.
        nprobe: inverted lists an ``ivf`` search visits.
        scorer_spec: optional text naming the scorer (the CLI stores its ``--scorer``).

    R may be float16 and memory-mapped (an index built by
    ``structmat.retrieval.build_index_file`` and loaded): searching reads only the
    columns it needs.
    """

    def __init__(
        self,
        r: Any,
        items: Sequence[Any],
        anchor_queries: Sequence[Any] | None = None,
        score: Scorer | None = None,
        *,
        anchor_method: str = "random",
        seed: int = 0,
        rcond: float = 1e-6,
        backend: str = "auto",
        mips: str = "flat",
        nprobe: int = 8,
        scorer_spec: str | None = None,
        _mips_index: MIPSIndex | None = None,
        _verified: bool = False,
    ) -> None:
        arr = as_real_array(r, "r", 2, "(k_q, N)", finite=False)
        if arr.dtype.kind != "f":
            raise fail("r", "a 2-D float array (k_q, N)", f"dtype {arr.dtype}, ndim {arr.ndim}")
        check_sequence(items, "items")
        if anchor_queries is not None:
            check_sequence(anchor_queries, "anchor_queries")
        if score is not None and not callable(score):
            raise fail("score", "a callable score(queries, items) or None", type(score).__name__)
        if arr.shape[1] != len(items):
            raise fail("items", f"{arr.shape[1]} items (columns of r)", f"{len(items)} items")
        if anchor_queries is not None and len(anchor_queries) != arr.shape[0]:
            raise fail(
                "anchor_queries", f"{arr.shape[0]} queries (rows of r)", f"{len(anchor_queries)}"
            )
        if arr.shape[0] < 1 or arr.shape[1] < 1:
            raise fail("r", "at least one anchor query and one item", f"shape {arr.shape}")
        # A loaded file's R was checked while its checksum was: not read again here.
        if not _verified and not np.isfinite(arr).all():
            raise fail("r", "finite scores", "NaN or infinite entries")
        check_choice(backend, "backend", BACKENDS)
        check_choice(mips, "mips", MIPS_KINDS)
        check_positive_int(nprobe, "nprobe")
        # float16 stays as it is only when loaded (memory-mapped, maybe larger than RAM).
        keep = _verified or arr.dtype in (np.float32, np.float64)
        self._r = arr if keep else arr.astype(np.float32)
        self.items = list(items)
        self.anchor_queries = None if anchor_queries is None else list(anchor_queries)
        self.score = score
        self._anchor_cache: dict[Any, tuple[np.ndarray, np.ndarray]] = {}
        self.anchor_method = anchor_method
        self.seed = seed
        self.rcond = rcond
        self.backend = backend
        self.mips = mips
        self.nprobe = nprobe
        self.scorer_spec = scorer_spec
        self._mips_index: MIPSIndex | None = _mips_index

    # The anchor rule's settings: changing one drops the cached anchors and U.
    anchor_method = _AnchorSetting(lambda v: check_choice(v, "anchor_method", ANCHOR_METHODS), str)
    seed = _AnchorSetting(check_seed, int)
    rcond = _AnchorSetting(check_rcond, float)

    # ------------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        score: Scorer,
        anchor_queries: Sequence[Any],
        items: Sequence[Any],
        batch_size: int = 256,
        progress: bool = True,
        executor: Any = None,
        checkpoint: str | os.PathLike[str] | None = None,
        **config: Any,
    ) -> CURIndex:
        """Score the k_q anchor queries against all N items (R, k_q × N) and index them.

        Args:
            score: the scorer; called once per item batch as ``score(anchor_queries, batch)``.
            anchor_queries: k_q queries (a sample of the expected query traffic).
            items: the N items to search.
            batch_size: items per scorer call.
            progress: show a progress bar.
            executor: ``None`` (in process), ``"ray"`` (a Ray task per batch; uses a
                running Ray session, else ``ray.init()``) or a ``concurrent.futures.Executor``.
                Every executor gives the same R (the same batches, the same calls).
            checkpoint: an ``.npz`` path that makes the build resumable: finished
                batches are kept there (also when interrupted), a rerun with the same
                inputs scores only the rest; deleted when the build completes.
            **config: ``anchor_method``, ``seed``, ``rcond``, ``backend``, ``mips``,
                ``scorer_spec`` as in the constructor.

        Raises:
            ValueError: empty queries or items, a bad batch size, or scorer output of
                the wrong shape or with NaN.
        """
        if not callable(score):
            raise fail("score", "a callable score(queries, items)", type(score).__name__)
        check_sequence(anchor_queries, "anchor_queries")
        check_sequence(items, "items")
        if len(anchor_queries) < 1:
            raise fail("anchor_queries", "at least one query", "none")
        if len(items) < 1:
            raise fail("items", "at least one item", "none")
        check_positive_int(batch_size, "batch_size")
        r = score_matrix(
            score,
            anchor_queries,
            items,
            batch_size,
            progress,
            executor,
            desc="CUR index",
            checkpoint=checkpoint,
        )
        return cls(r, items, anchor_queries, score, **config)

    def add(
        self,
        items: Sequence[Any],
        batch_size: int = 256,
        progress: bool = True,
        executor: Any = None,
    ) -> CURIndex:
        """Append items: score them against the stored anchor queries; returns ``self``.

        New ids follow the old ones. Anchor choices are recomputed for the new N.
        """
        if self.score is None or self.anchor_queries is None:
            raise fail("index", "a scorer and its anchor queries to add items", "neither stored")
        check_sequence(items, "items")
        check_positive_int(batch_size, "batch_size")
        if len(items) == 0:
            return self
        r_new = score_matrix(
            self.score, self.anchor_queries, items, batch_size, progress, executor, "CUR add"
        )
        dtype = np.result_type(self._r.dtype, r_new.dtype)
        self._r = np.concatenate([self._r.astype(dtype, copy=False), r_new.astype(dtype)], axis=1)
        self.items.extend(items)
        self._mips_index = None
        self._anchor_cache.clear()
        return self

    # ------------------------------------------------------------- properties
    @property
    def r(self) -> np.ndarray:
        """(k_q, N) the anchor-query score matrix (read-only view)."""
        view = self._r.view()
        view.flags.writeable = False
        return view

    @property
    def num_items(self) -> int:
        return int(self._r.shape[1])

    @property
    def num_anchor_queries(self) -> int:
        return int(self._r.shape[0])

    def __len__(self) -> int:
        return self.num_items

    def __repr__(self) -> str:
        return (
            f"CURIndex(num_items={self.num_items}, num_anchor_queries={self.num_anchor_queries}, "
            f"anchor_method={self.anchor_method!r}, backend={self._backend_name()!r}, "
            f"mips={self.mips!r})"
        )

    def _backend_name(self) -> str:
        return self._mips_index.backend if self._mips_index is not None else self.backend

    # ---------------------------------------------------------------- anchors
    def anchor_ids(self, anchor_items: int | Sequence[int] = 50) -> np.ndarray:
        """The anchor item ids used for ``anchor_items``: (k_i,) int64, sorted.

        ``anchor_items`` is a count (chosen by ``anchor_method`` and ``seed``) or an
        explicit sequence of distinct item ids.
        """
        return self._anchors(anchor_items)[0]

    def _anchors(self, anchor_items: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(anchor ids (k_i,), U = pinv(R[:, ids]) (k_i, k_q) float64); cached for a count
        (explicit ids may differ per query: not cached, so the cache stays small)."""
        key = anchor_items if isinstance(anchor_items, (int, np.integer)) else None
        if key is not None and not isinstance(key, bool) and int(key) in self._anchor_cache:
            return self._anchor_cache[int(key)]
        ids, u = anchor_set(self._r, anchor_items, self.anchor_method, self.seed, self.rcond)
        if key is not None:
            self._anchor_cache[int(key)] = (ids, u)
        return ids, u

    @property
    def mips_index(self) -> MIPSIndex:
        """The MIPS index over R's columns that serves :meth:`search` (built on first use)."""
        if self._mips_index is None:
            self._mips_index = MIPSIndex(self._r, self.backend, self.mips, nprobe=self.nprobe)
        return self._mips_index

    # ----------------------------------------------------------------- search
    def _exact_scores(self, queries: list[Any], ids: np.ndarray) -> np.ndarray:
        if self.score is None:
            raise fail("score", "a scorer (pass one to CURIndex(...) or CURIndex.load)", "None")
        out = self.score(queries, [self.items[j] for j in ids])
        return as_score_block(out, len(queries), len(ids))

    def approximate_scores(
        self, queries: Sequence[Any], anchor_items: int | Sequence[int] = 50
    ) -> torch.Tensor:
        """ŝ = c · U · R for every item: (n, N) float64 (k_i scorer calls per query).

        For diagnostics (how good is the approximation for this scorer?); search
        never materialises this matrix.
        """
        ids, u = self._anchors(anchor_items)
        check_sequence(queries, "queries")
        c = self._exact_scores(list(queries), ids)  # (n, k_i)
        w = c.astype(np.float64) @ u  # (n, k_q)
        return torch.from_numpy(w @ self._r.astype(np.float64))  # (n, N)

    def search(
        self,
        query: Any,
        k: int = 10,
        anchor_items: int | Sequence[int] = 50,
        budget: int = 100,
        adaptive_rounds: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The top ``k`` items for ``query`` by exact score, within ``budget`` scorer calls.

        Args:
            query: one query (what the scorer takes).
            k: results wanted, 1 <= k <= min(budget, N).
            anchor_items: k_i, the number of anchor items (or their explicit ids).
            budget: scorer calls (query-item pairs) allowed for this query, >= k_i;
                clamped to N. Never exceeded.
            adaptive_rounds: 0 or 1: ANNCUR (one approximation, one rerank);
                r > 1: ADACUR, the (budget - k_i) calls after the anchors are spent
                in r near-equal rounds, re-solving after each.

        Returns:
            (scores, ids): (k,) exact scores and (k,) int64 item ids, best first
            (FAISS's order); equal scores go to the smaller id.
        """
        scores, ids = self.search_batch([query], k, anchor_items, budget, adaptive_rounds)
        return scores[0], ids[0]

    def search_batch(
        self,
        queries: Sequence[Any],
        k: int = 10,
        anchor_items: int | Sequence[int] = 50,
        budget: int = 100,
        adaptive_rounds: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`search` for n queries: (scores (n, k), ids (n, k)).

        The anchors of all queries are scored in one call ``score(queries, anchors)``;
        each query's candidates in one call ``score([query], candidates)`` per round.
        """
        check_sequence(queries, "queries")
        queries = list(queries)
        check_positive_int(k, "k")
        check_positive_int(budget, "budget")
        check_positive_int(adaptive_rounds, "adaptive_rounds", minimum=0)
        ids0, u = self._anchors(anchor_items)
        k_i = len(ids0)
        budget = min(budget, self.num_items)
        if budget < k_i:
            raise fail("budget", f">= anchor_items ({k_i}) scorer calls", repr(budget))
        if k > budget:
            raise fail("k", f"<= the budget ({budget}, clamped to N)", repr(k))
        n = len(queries)
        if n == 0:
            return torch.zeros(0, k), torch.zeros(0, k, dtype=torch.int64)
        c = self._exact_scores(queries, ids0)  # (n, k_i)
        scored_ids = [ids0.copy() for _ in range(n)]  # each query's exactly scored items S
        scored = [c[i].copy() for i in range(n)]  # their exact scores
        sizes = [m for m in _split(budget - k_i, max(1, adaptive_rounds)) if m > 0]
        for rnd, m in enumerate(sizes):
            if rnd == 0:
                w = c.astype(np.float64) @ u  # (n, k_q): ANNCUR, U precomputed
            else:  # ADACUR: re-solve on everything scored so far
                w = np.stack(
                    [
                        cur_query_weights(scored[i][None], self._r[:, scored_ids[i]], self.rcond)[0]
                        for i in range(n)
                    ]
                )  # (n, k_q)
            fresh = self.mips_index.best_unscored(w, scored_ids, m)  # n arrays (m,)
            for i in range(n):
                exact = self._exact_scores([queries[i]], fresh[i])[0]  # (m,)
                scored_ids[i] = np.concatenate([scored_ids[i], fresh[i]])
                scored[i] = np.concatenate([scored[i], exact.astype(scored[i].dtype)])
        dtype = np.result_type(*[s.dtype for s in scored])
        out_s = np.empty((n, k), dtype=dtype)
        out_i = np.empty((n, k), dtype=np.int64)
        for i in range(n):
            order = np.lexsort((scored_ids[i], -scored[i]))[:k]  # by score desc, then id
            out_s[i], out_i[i] = scored[i][order], scored_ids[i][order]
        return torch.from_numpy(out_s), torch.from_numpy(out_i)

    # ------------------------------------------------------------ persistence
    def _config(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in _SETTINGS}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to one safetensors file, atomically (see ``retrieval.store``).

        The scorer is not saved (it is code and weights); pass it to :meth:`load`.

        Raises:
            ValueError: an item or anchor query that JSON cannot encode, or no
                stored anchor queries.
        """
        if self.anchor_queries is None:
            raise fail("anchor_queries", "the anchor queries, to save the index", "None")
        write_index(path, self._r, self.items, self.anchor_queries, self._config())

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], score: Scorer | None = None, **overrides: Any
    ) -> CURIndex:
        """Read an index written by :meth:`save` and attach ``score``.

        Args:
            path: the index file.
            score: the scorer the index was built with (``None``: search is refused
                until ``index.score`` is set).
            **overrides: constructor settings to change (``backend``, ``mips``, ...).

        Raises:
            ValueError: a missing, truncated, corrupted, foreign or newer-version file.
        """
        stored = read_index(path)
        settings = {k: v for k, v in stored.config.items() if k in _SETTINGS}
        settings.update(overrides)
        mips = MIPSIndex.saved(stored.r, stored.mips, stored.config, settings)
        return cls(stored.r, stored.items, stored.queries, score, **settings,
                   _mips_index=mips, _verified=True)  # fmt: skip
