"""Scorers for evaluation and tests: :class:`MatrixScorer` (a look-up in a precomputed
score matrix, by integer ids) and :class:`CountingScorer` (counts the pairs scored);
and :func:`package_folder`, where a pip package that ships model files keeps them."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from structmat._checks import as_real_array, fail

__all__ = ["CountingScorer", "MatrixScorer", "item_ids", "package_folder"]


def package_folder(module: str, sub: str, marker: str, name: str, package: str) -> Path:
    """``<module's folder>/<sub>``, found without importing the module (imports of model
    packages are slow and pull more packages), checked to hold the file ``marker``.

    Args:
        name: the argument errors name; package: the pip package, for the message.

    Raises:
        ValueError: the package is not installed, or its files are not there.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise fail(name, f"the {package} package installed", "it is missing")
    path = Path(next(iter(spec.submodule_search_locations))) / sub
    if not (path / marker).is_file():
        raise fail(name, f"{marker} under {path}", "no such file")
    return path


def item_ids(ids: Any, name: str, n: int) -> np.ndarray:
    """A 1-D sequence of integer ids in [0, n): (m,) int64."""
    arr = np.asarray(ids) if isinstance(ids, (Sequence, np.ndarray, torch.Tensor)) else None
    if arr is not None and arr.size == 0:
        arr = arr.astype(np.int64)  # an empty list is float64 to NumPy
    if arr is None or arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise fail(name, f"a 1-D sequence of integer ids in [0, {n})", repr(ids))
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise fail(name, f"ids in [0, {n})", f"ids in [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64)


class MatrixScorer:
    """Scores looked up in a precomputed matrix: queries and items are integer ids.

    Args:
        scores: (num_queries, num_items) the full score matrix.
    """

    def __init__(self, scores: Any) -> None:
        self.scores = as_real_array(scores, "scores", 2, "(num_queries, num_items)")
        if self.scores.dtype.kind != "f":
            self.scores = self.scores.astype(np.float64)

    def __call__(self, queries: Sequence[int], items: Sequence[int]) -> torch.Tensor:
        q = item_ids(queries, "queries", self.scores.shape[0])
        i = item_ids(items, "items", self.scores.shape[1])
        return torch.from_numpy(self.scores[np.ix_(q, i)])  # (Q, N)


class CountingScorer:
    """Wraps a scorer and counts what it scores: ``calls`` (query-item pairs) and ``batches``.

    Counts only calls made in this process (not those run by Ray workers).
    """

    def __init__(self, score: Callable[[list[Any], list[Any]], Any]) -> None:
        if not callable(score):
            raise fail("score", "a callable score(queries, items)", type(score).__name__)
        self.score = score
        self.calls = 0
        self.batches = 0

    def __call__(self, queries: Sequence[Any], items: Sequence[Any]) -> Any:
        self.calls += len(queries) * len(items)
        self.batches += 1
        return self.score(list(queries), list(items))

    def reset(self) -> None:
        self.calls = 0
        self.batches = 0
