"""API fuzzing of structmat.models (see harness.py for what is checked).

Finiteness: the models do not promise to reject NaN in real-valued inputs (SSM
mixers propagate it; attention mixers reject it), so NaN may pass or raise.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from structmat import models
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

B, L, V, C = 2, 6, 7, 3


def _model(mixer: str, **kw: Any) -> models.SequenceModel:
    torch.manual_seed(0)
    return models.SequenceClassifier(
        4, d_model=8, n_layers=1, mixer=mixer, heads=2, length=L, **kw
    )


_TOK = {m: _model(m, num_tokens=V) for m in ("s4d", "softmax")}
_REAL = models.SequenceRegressor(input_dim=C, d_model=8, n_layers=1, mixer="linear", heads=2,
                                 norm="batch", pool="last", causal=True)
_MASK = Tens(lambda: torch.ones(B, L, dtype=torch.bool), (2, 2), ("bool",), tied=(-2, -1),
             optional=True)
_IDS = Tens(lambda: torch.randint(1, V, (B, L)), (2, 2), ("int",))
_BAD_IDS = Opts(torch.randint(1, V, (B, L)), (torch.full((B, L), V), torch.full((B, L), -1)))


def _build_mixer(mixer: str, d_model: int, heads: int, length: int) -> object:
    # the registry key is reported as "mixer", the name SequenceModel and the CLI use
    return models.build_mixer(mixer, d_model, heads=heads, length=length)


CASES = [
    Case("SequenceClassifier", models.SequenceClassifier,
         {"num_classes": Int(3), "num_tokens": Int(V), "d_model": Int(8), "n_layers": Int(1),
          "mixer": Choice("softmax"), "dropout": Num(0.0, 0.0, 1.0), "pool": Choice("mean"),
          "heads": Int(2), "num_targets": Int(1), "length": Int(L), "ffn_mult": Int(2),
          "mixer_options": Opts(None, ("d_state", 3, ["a"])), "norm": Choice("layer")}),
    Case("SequenceRegressor", models.SequenceRegressor,
         {"num_outputs": Int(1), "input_dim": Int(C), "mixer": Choice("s4d"), "d_model": Int(4),
          "n_layers": Int(1), "heads": Int(1)}),
    *[
        Case(f"SequenceClassifier({m}).forward", _TOK[m], {"x": _IDS, "mask": _MASK})
        for m in _TOK
    ],
    Case("SequenceClassifier(ids out of range)", _TOK["softmax"], {"x": _BAD_IDS}),
    Case("SequenceRegressor(linear, batch norm).forward", _REAL,
         {"x": Tens(lambda: torch.randn(B, L, C), (3, 3), tied=(-1,)), "mask": _MASK}),
    Case("build_mixer", _build_mixer,
         {"mixer": Choice("nystrom"), "d_model": Int(8), "heads": Int(2), "length": Int(L)}),
]


@pytest.mark.parametrize("case", [c for c in CASES if "out of range" not in c.id],
                         ids=lambda c: c.id)
def test_valid_call(case: Case) -> None:
    valid_call_works(case)


@pytest.mark.parametrize(("case", "name"), case_params(CASES))
@FUZZ
@given(data=st.data())
def test_wrong_argument(case: Case, name: str, data: st.DataObject) -> None:
    run_case(case, name, data.draw(wrong_value(case.args[name])))
