"""API fuzzing of structmat.rope (see harness.py for what is checked)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from structmat import rope
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

L, D = 5, 8
BAD_SCALING = (
    "linear",
    {"rope_type": "linear", "factor": "2"},
    {"rope_type": "linear", "factor": float("nan")},
    {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 2.5},
    {"rope_type": "bogus"},
    {"factor": 2.0},
    {"rope_type": "linear", "nonsense": 1},
    3,
)


def _x(*shape: int) -> Tens:
    """x (..., L, D): leading dims free, L and D tied to positions and the rotary width."""
    return Tens(lambda: torch.randn(shape), (2, None), tied=(-1, -2))


def _skew() -> torch.Tensor:
    a = torch.randn(D, D, dtype=torch.float64)
    return a - a.T


_POS2 = Tens(lambda: torch.rand(L, 2) * 4, (2, 2), ("int", "float"), tied=(-2, -1), finite=True,
             coerce=True)
_GEN = Tens(_skew, (2, 3), tied=(-2, -1), finite=True, coerce=True)
_ROT = rope.RotaryEmbedding(D)
_ROT2 = rope.RotaryEmbedding2D(D, heads=2)

CASES = [
    Case(
        "apply_rotary",
        rope.apply_rotary,
        {"x": _x(2, L, D), "positions": Tens(lambda: torch.arange(L), (1, 2), ("int", "float"),
         tied=(-1,), finite=True, coerce=True, optional=True), "base": Num(1e4, 1.0, low_open=True),
         "layout": Choice("half"), "scaling": Opts(None, BAD_SCALING),
         "rotary_dim": Int(None, 2, optional=True, even=True), "seq_len": Int(None, optional=True),
         "freqs": Tens(lambda: torch.rand(D // 2), (1, 1), tied=(-1,), coerce=True,
                       optional=True)},
    ),
    Case(
        "apply_rotary_2d",
        rope.apply_rotary_2d,
        {"x": _x(2, L, D), "positions": _POS2, "base": Num(None, 1.0, low_open=True,
         optional=True), "mode": Choice("mixed"), "layout": Choice("interleaved"),
         "freqs": Tens(lambda: torch.rand(D // 2, 2), (2, 3), tied=(-2, -1), coerce=True,
                       optional=True)},
    ),
    Case("RotaryEmbedding", rope.RotaryEmbedding,
         {"dim": Int(D, 2, even=True), "base": Num(1e4, 1.0, low_open=True),
          "layout": Choice("half"), "scaling": Opts(None, BAD_SCALING)}),
    Case("RotaryEmbedding.rotate", _ROT.rotate,
         {"x": Tens(lambda: torch.randn(2, 3, L, D), (2, None), tied=(-1,)),
          "offset": Int(0, 0), "seq_len": Int(None, optional=True)}),
    Case("RotaryEmbedding.rotate(offsets)", _ROT.rotate,
         {"x": Tens(lambda: torch.randn(2, 3, L, D), (3, None), tied=(-1, -4)),
          "offset": Tens(lambda: torch.tensor([0, 3]), (1, 1), ("int",), tied=(-1,))}),
    Case("RotaryEmbedding.tables", _ROT.tables, {"length": Int(L, 0)}),
    Case("RotaryEmbedding2D", rope.RotaryEmbedding2D,
         {"dim": Opts(D, (6, 0, -4, 2.0, "8", True, None)), "heads": Int(2),
          "mode": Choice("axial"), "base": Num(None, 1.0, low_open=True, optional=True),
          "layout": Choice("half")}),
    Case("RotaryEmbedding2D.forward", _ROT2,
         {"x": Tens(lambda: torch.randn(3, 2, L, D), (3, None), tied=(-1, -2, -3)),
          "positions": _POS2}),
    Case("axial_frequencies", rope.axial_frequencies,
         {"dim": Opts(D, (6, 0, 2.0, None, True)), "base": Num(100.0, 1.0, low_open=True)}),
    Case("mixed_frequencies", rope.mixed_frequencies,
         {"dim": Opts(D, (6, 0, 2.0, None, True)), "heads": Int(None, optional=True),
          "base": Num(10.0, 1.0, low_open=True)}),
    Case("grid_positions", rope.grid_positions,
         {"height": Int(3), "width": Int(2),
          "train_size": Opts(None, ((2,), (2, 0), (2, 2.5), "ab", 3, (True, 2)))}),
    Case("general_rotary", rope.general_rotary,
         {"generator": _GEN, "positions": Tens(lambda: torch.arange(L), (1, 2), ("int", "float"),
                                               finite=True, coerce=True)}),
    Case("to_standard", rope.to_standard, {"generator": _GEN}),
    Case(
        "absorb_generator",
        rope.absorb_generator,
        {"w_q": Tens(lambda: torch.randn(2 * D, 5, dtype=torch.float64), (1, 2), tied=(-2,),
                     coerce=True),
         "w_k": Tens(lambda: torch.randn(2 * D, 5, dtype=torch.float64), (1, 2), tied=(-2,),
                     coerce=True),
         "generator": _GEN, "layout": Choice("half")},
    ),
    Case("blockdiag_rotation", rope.blockdiag_rotation,
         {"angles": Tens(lambda: torch.rand(3, 4), (1, None), coerce=True)}),
    Case("convert_rotary_weight", rope.convert_rotary_weight,
         {"weight": Tens(lambda: torch.randn(2 * D, 5), (1, None), ("float", "complex"), tied=(-2,),
                         coerce=True),
          "head_dim": Int(D, 2, even=True), "source": Choice("half"),
          "target": Choice("interleaved")}),
    Case("layout_permutation", rope.layout_permutation,
         {"dim": Int(D, 2, even=True), "source": Choice("half"), "target": Choice("half")}),
    Case("inverse_frequencies", rope.inverse_frequencies,
         {"dim": Int(D, 2, even=True), "base": Num(1e4, 1.0, low_open=True),
          "scaling": Opts({"rope_type": "dynamic", "factor": 2.0,
                           "original_max_position_embeddings": 16}, BAD_SCALING),
          "seq_len": Int(None, optional=True)}),
    Case("parse_scaling", rope.parse_scaling, {"scaling": Opts(None, BAD_SCALING)}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_valid_call(case: Case) -> None:
    valid_call_works(case)


@pytest.mark.parametrize(("case", "name"), case_params(CASES))
@FUZZ
@given(data=st.data())
def test_wrong_argument(case: Case, name: str, data: st.DataObject) -> None:
    run_case(case, name, data.draw(wrong_value(case.args[name])))
