"""API fuzzing of structmat.retrieval (see harness.py for what is checked).

Score matrices come as tensors, NumPy arrays or lists; they must be finite. The
model-backed scorers (cross-encoder, ...) need model files and are covered by
tests/retrieval; here their spec parser is fuzzed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from structmat import retrieval as rt
from tests.fuzz_api.harness import (
    FUZZ,
    Case,
    Choice,
    Int,
    Num,
    Opts,
    Tens,
    case_params,
    run_case,
    valid_call_works,
    wrong_value,
)

KQ, N, KI = 4, 12, 3
_R = torch.randn(KQ, N, dtype=torch.float64)
_SCORES = torch.randn(5, N, dtype=torch.float64)
_SCORER = rt.MatrixScorer(_SCORES)
_ITEMS = list(range(N))
_INDEX = rt.CURIndex(_R, _ITEMS, list(range(KQ)), _SCORER, backend="numpy")
_BM25 = rt.BM25(["the cat sat", "a dog ran", "cats and dogs"])
_NOT_CALLABLE = (None, 3, "score")


def _r(shape: tuple[int, ...] = (KQ, N), tied: tuple[int, ...] = ()) -> Tens:
    return Tens(lambda: torch.randn(shape, dtype=torch.float64), (len(shape), len(shape)),
                ("float",), tied=tied, finite=True, coerce=True)


def _fresh_index() -> rt.CURIndex:
    """An index of its own: ``add`` changes the index it is called on."""
    return rt.CURIndex(_R, _ITEMS, list(range(KQ)), _SCORER, backend="numpy")


def _scorer_from_spec(scorer: Any) -> object:
    # reported as "scorer": the name of the CLI option the spec comes from
    return rt.scorer_from_spec(scorer)


_COUNT = Opts(KI, (0, -1, N + 1, 2.5, True, None, "3", [N + 3], [1, 1], [[1, 2]], ["a"]))

CASES = [
    Case("CURIndex", rt.CURIndex,
         {"r": _r(tied=(-1,)), "items": Opts(_ITEMS, (None, 3, _ITEMS[:-1])),
          "anchor_queries": Opts(None, (list(range(KQ + 1)), 3)),
          "score": Opts(None, (3, "score")), "anchor_method": Choice("leverage"),
          "seed": Int(0, 0), "rcond": Num(1e-6, 0.0, 1.0), "backend": Choice("numpy"),
          "mips": Choice("flat")}),
    Case("CURIndex.build", rt.CURIndex.build,
         {"score": Opts(_SCORER, _NOT_CALLABLE), "anchor_queries": Opts([0, 1, 2], ([], None, 3)),
          "items": Opts(_ITEMS, ([], None, 3)), "batch_size": Int(5)},
         fixed={"progress": False, "backend": "numpy"}),
    # what a query is, is the scorer's business (MatrixScorer checks its ids itself)
    Case("CURIndex.search", lambda **kw: _INDEX.search(1, **kw),
         {"k": Int(3), "anchor_items": _COUNT,
          "budget": Int(8), "adaptive_rounds": Int(2, 0)}),
    Case("CURIndex.search_batch", _INDEX.search_batch,
         {"queries": Opts([0, 1], (None, 3, "q")), "k": Int(3), "anchor_items": _COUNT,
          "budget": Int(8), "adaptive_rounds": Int(0, 0)}),
    Case("CURIndex.approximate_scores", _INDEX.approximate_scores,
         {"queries": Opts([0, 1], (None, 3)), "anchor_items": _COUNT}),
    Case("CURIndex.add", lambda **kw: _fresh_index().add(**kw),
         {"items": Opts([0, 1], (None, 3, "ab", [N + 5])), "batch_size": Int(2)},
         fixed={"progress": False}),
    Case("CURIndex.anchor_ids", _INDEX.anchor_ids, {"anchor_items": _COUNT}),
    Case("cur_query_weights", rt.cur_query_weights,
         {"c": _r((2, KI), tied=(-1,)), "r_anchor": _r((KQ, KI), tied=(-1,)),
          "rcond": Num(1e-6, 0.0, 1.0)}),
    Case("cur_approximate_scores", rt.cur_approximate_scores,
         {"c": _r((2, KI), tied=(-1,)), "r": _r(), "anchor_ids": Tens(
             lambda: torch.tensor([0, 4, 7]), (1, 1), ("int",), tied=(-1,), coerce=True),
          "rcond": Num(1e-6, 0.0, 1.0)}),
    Case("select_anchor_items", rt.select_anchor_items,
         {"r": _r(), "k": Int(KI), "method": Choice("kmeans"), "seed": Int(0, 0)}),
    Case("MIPSIndex", rt.MIPSIndex,
         {"r": _r(), "backend": Choice("numpy"), "kind": Choice("flat"), "hnsw_m": Int(8),
          "ef_search": Int(16)}),
    Case("MIPSIndex.search", rt.MIPSIndex(_R.numpy(), backend="numpy").search,
         {"w": _r((2, KQ), tied=(-1,)), "m": Int(4)}),
    Case("MatrixScorer", rt.MatrixScorer, {"scores": _r((5, N))}),
    Case("MatrixScorer.__call__", _SCORER,
         {"queries": Opts([0, 1], (None, [99], ["a"], [0.5])),
          "items": Opts([2, 3], (None, [N], ["a"]))}),
    Case("CountingScorer", rt.CountingScorer, {"score": Opts(_SCORER, _NOT_CALLABLE)}),
    Case("rerank", lambda **kw: rt.rerank(query=0, **kw),
         {"score": Opts(_SCORER, _NOT_CALLABLE), "items": Opts(_ITEMS, (None, 3)),
          "candidates": Opts([1, 5, 7], ([N], [-1], ["a"], None, [[1]], [1.5])), "k": Int(2)}),
    Case("BM25", rt.BM25,
         {"docs": Opts(["a b", "b c"], ([], None, 3, [1, 2], "abc")), "k1": Num(1.5, 0.0),
          "b": Num(0.75, 0.0, 1.0)}),
    Case("BM25.scores", _BM25.scores, {"query": Opts("cat", (None, 3, ["cat"]))}),
    Case("BM25.search", _BM25.search, {"query": Opts("cat", (None, 3)), "k": Int(2)}),
    Case("scorer_from_spec", _scorer_from_spec,
         {"scorer": Opts("python:structmat.retrieval:MatrixScorer".replace(
             "MatrixScorer", "faiss_available"), (None, 3, "bogus", "python:os:sep",
                                                   "python:no_such_module_xyz:f"))}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_valid_call(case: Case) -> None:
    valid_call_works(case)


@pytest.mark.parametrize(("case", "name"), case_params(CASES))
@FUZZ
@given(data=st.data())
def test_wrong_argument(case: Case, name: str, data: st.DataObject) -> None:
    run_case(case, name, data.draw(wrong_value(case.args[name])))


def test_numpy_arrays_and_lists_are_accepted() -> None:
    """The coerced forms give the same index as a tensor."""
    a = rt.CURIndex(_R.numpy(), _ITEMS, backend="numpy").r
    b = rt.CURIndex(_R.tolist(), _ITEMS, backend="numpy").r
    np.testing.assert_array_equal(a, b)
