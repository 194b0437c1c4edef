"""Retrieve-then-rerank baselines for the same test-time scorer budget.

A first stage proposes ``budget`` candidates cheaply (BM25 over the text, or a
bi-encoder's dot product), the expensive scorer scores exactly those, and the
best ``k`` by exact score are returned: ``budget`` scorer calls per query, as
ANNCUR spends them (Yadav et al. 2022, Sec. 5, the "retrieve-and-rerank" baselines).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from structmat._checks import check_number, check_positive_int, fail
from structmat.retrieval.build import as_score_block
from structmat.retrieval.evaluation import item_ids

__all__ = ["BM25", "rerank", "tokenize"]

_WORD = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (``\\w+``); no stemming, no stop list."""
    return _WORD.findall(text.lower())


class BM25:
    """Okapi BM25 (Robertson & Zaragoza, "The Probabilistic Relevance Framework:
    BM25 and Beyond", 2009, Eq. 3.15 with Lucene's non-negative idf):

        s(q, d) = Σ_{t ∈ q} idf(t) · f(t, d) (k1 + 1) / (f(t, d) + k1 (1 - b + b |d| / avgdl)),
        idf(t) = ln(1 + (N - n_t + 0.5) / (n_t + 0.5)).

    Args:
        docs: N texts; k1, b: the usual saturation and length-normalisation constants.
    """

    def __init__(self, docs: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        if not isinstance(docs, Sequence) or isinstance(docs, str):
            raise fail("docs", "a sequence of texts", type(docs).__name__)
        if len(docs) == 0:
            raise fail("docs", "at least one document", "none")
        if not all(isinstance(d, str) for d in docs):
            raise fail("docs", "texts (str)", "a non-str entry")
        check_number(k1, "k1", 0.0)
        check_number(b, "b", 0.0, 1.0)
        self.k1, self.b = k1, b
        counts = [Counter(tokenize(d)) for d in docs]
        lengths = np.array([sum(c.values()) for c in counts], dtype=np.float64)  # (N,)
        avgdl = max(lengths.mean(), 1e-12)
        norm = k1 * (1 - b + b * lengths / avgdl)  # (N,)
        postings: dict[str, tuple[list[int], list[float]]] = {}
        for j, c in enumerate(counts):
            for term, f in c.items():
                ids, tfs = postings.setdefault(term, ([], []))
                ids.append(j)
                tfs.append(f)
        n = len(docs)
        self.num_docs = n
        # Per term: the document ids and their precomputed BM25 term weights.
        self._index: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for term, (ids, tfs) in postings.items():
            ids_a = np.asarray(ids, dtype=np.int64)
            tf = np.asarray(tfs, dtype=np.float64)
            idf = math.log(1 + (n - len(ids) + 0.5) / (len(ids) + 0.5))
            self._index[term] = (ids_a, idf * tf * (k1 + 1) / (tf + norm[ids_a]))

    def scores(self, query: str) -> np.ndarray:
        """BM25 scores of ``query`` against every document: (N,) float64."""
        if not isinstance(query, str):
            raise fail("query", "a text (str)", type(query).__name__)
        out = np.zeros(self.num_docs)
        for term, qtf in Counter(tokenize(query)).items():
            hit = self._index.get(term)
            if hit is not None:
                out[hit[0]] += qtf * hit[1]  # a repeated query term counts each time
        return out

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` documents: (scores (k,), ids (k,)), best first, ties to the smaller id."""
        check_positive_int(k, "k")
        s = self.scores(query)
        order = np.lexsort((np.arange(self.num_docs), -s))[: min(k, self.num_docs)]
        return s[order], order


def rerank(
    score: Callable[[list[Any], list[Any]], Any],
    query: Any,
    items: Sequence[Any],
    candidates: Sequence[int],
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Score ``candidates`` exactly (one call, len(candidates) pairs) and keep the best ``k``.

    Args:
        score: the expensive scorer; query: one query; items: all N items.
        candidates: (m,) distinct item ids from a first stage.
        k: results, 1 <= k <= m.

    Returns:
        (scores (k,), ids (k,)): exact scores, best first, ties to the smaller id.
    """
    if not callable(score):
        raise fail("score", "a callable score(queries, items)", type(score).__name__)
    if not isinstance(items, Sequence):
        raise fail("items", "a sequence of items", type(items).__name__)
    cand = item_ids(candidates, "candidates", len(items))
    check_positive_int(k, "k")
    if k > len(cand):
        raise fail("k", f"<= the number of candidates ({len(cand)})", repr(k))
    exact = as_score_block(score([query], [items[j] for j in cand]), 1, len(cand))[0]
    order = np.lexsort((cand, -exact))[:k]
    return torch.from_numpy(exact[order]), torch.from_numpy(cand[order])
