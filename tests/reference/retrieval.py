"""Plain float64 references for structmat.retrieval: dense pseudo-inverses,
full sorts over all N items, loops over tokens and postings."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np


def anncur(
    exact_row: np.ndarray,
    r: np.ndarray,
    anchor_ids: np.ndarray,
    k: int,
    budget: int,
    adaptive_rounds: int = 0,
    rcond: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray]:
    """ANNCUR (rounds <= 1) / ADACUR (rounds > 1) for one query, densely.

    Args:
        exact_row: (N,) the query's exact scores against every item (the scorer).
        r: (k_q, N) anchor-query scores; anchor_ids: (k_i,) initial anchor items.
        k, budget, adaptive_rounds, rcond: as in CURIndex.search.

    Returns:
        (scores (k,), ids (k,)): exact scores, best first, ties to the smaller id.
    """
    n = r.shape[1]
    budget = min(budget, n)
    scored = [int(j) for j in anchor_ids]
    rounds = max(1, adaptive_rounds)
    rest = budget - len(scored)
    sizes = [rest // rounds + (1 if i < rest % rounds else 0) for i in range(rounds)]
    for m in sizes:
        if m == 0:
            continue
        c = exact_row[scored]  # (s,)
        approx = c @ np.linalg.pinv(r[:, scored], rcond=rcond) @ r  # (N,): Eq. 2, densely
        done = set(scored)
        candidates = [j for j in range(n) if j not in done]
        candidates.sort(key=lambda j: (-approx[j], j))
        scored += candidates[:m]
    best = sorted(scored, key=lambda j: (-exact_row[j], j))[:k]
    return exact_row[best], np.asarray(best)


def exact_top_k(exact_row: np.ndarray, k: int) -> np.ndarray:
    """(k,) ids of the k best items, ties to the smaller id."""
    return np.asarray(sorted(range(len(exact_row)), key=lambda j: (-exact_row[j], j))[:k])


def maxsim(qe: np.ndarray, qm: np.ndarray, de: np.ndarray, dm: np.ndarray) -> np.ndarray:
    """Σ_i max_j ⟨q_i, d_j⟩ over real tokens, by loops: (Q, N) float64."""
    out = np.zeros((qe.shape[0], de.shape[0]))
    for a in range(qe.shape[0]):
        for b in range(de.shape[0]):
            total = 0.0
            for i in np.flatnonzero(qm[a]):
                sims = [float(qe[a, i] @ de[b, j]) for j in np.flatnonzero(dm[b])]
                total += max(sims) if sims else 0.0
            out[a, b] = total
    return out


def bm25(docs: list[str], query: str, k1: float = 1.5, b: float = 0.75) -> np.ndarray:
    """Okapi BM25 with Lucene's idf, term by term over whole documents: (N,)."""
    toks = [re.findall(r"\w+", d.lower()) for d in docs]
    n = len(docs)
    avgdl = sum(len(t) for t in toks) / n
    out = np.zeros(n)
    for term in re.findall(r"\w+", query.lower()):
        df = sum(term in t for t in toks)
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        for j, t in enumerate(toks):
            f = Counter(t)[term]
            out[j] += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len(t) / avgdl))
    return out
