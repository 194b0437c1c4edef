"""API fuzzing of structmat.attention (see harness.py for what is checked).

Finiteness: every attention function promises to reject NaN / inf in q, k, v
(``check_qkv``), so those cases must raise; masks must be bool (B, L).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from structmat import attention as att
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

B, H, L, D, DV = 2, 2, 6, 4, 3


def _qkv(causal: bool = False) -> dict[str, Tens]:
    """q, k, v (B, H, L, D): every dim tied except q's length (non-causal) and Dv."""
    q_tied = (-4, -3, -2, -1) if causal else (-4, -3, -1)
    return {
        "q": Tens(lambda: torch.randn(B, H, L, D), (4, 4), tied=q_tied, finite=True),
        "k": Tens(lambda: torch.randn(B, H, L, D), (4, 4), tied=(-4, -3, -2, -1), finite=True),
        "v": Tens(lambda: torch.randn(B, H, L, DV), (4, 4), tied=(-4, -3, -2), finite=True),
    }


def _step_qkv() -> dict[str, Tens]:
    return {
        "q": Tens(lambda: torch.randn(B, H, D), (3, 3), tied=(-3, -2, -1), finite=True),
        "k": Tens(lambda: torch.randn(B, H, D), (3, 3), tied=(-3, -2, -1), finite=True),
        "v": Tens(lambda: torch.randn(B, H, DV), (3, 3), tied=(-3, -2), finite=True),
    }


_MASK = Tens(lambda: torch.ones(B, L, dtype=torch.bool), (2, 2), ("bool",), tied=(-2, -1),
             optional=True)
_BAD_STATE = (
    "state",
    (torch.zeros(B, H, D, DV), torch.zeros(B, H, D)),
    att.LinearAttentionState(torch.zeros(B, H, D + 1, DV), torch.zeros(B, H, D + 1)),
    att.LinearAttentionState(torch.zeros(B, H, D, DV), torch.zeros(B, H)),
    att.LinearAttentionState(torch.zeros(B + 1, H, D, DV), torch.zeros(B + 1, H, D)),
    att.LinearAttentionState(torch.zeros(B, H, D, DV + 2), torch.zeros(B, H, D)),
    att.LinearAttentionState(torch.zeros(B, H, D, DV, dtype=torch.int64), torch.zeros(B, H, D)),
    att.LinearAttentionState(None, None),  # type: ignore[arg-type]
)
_EPS = Num(1e-6, 0.0)
_MHA = att.MultiHeadAttention(8, 2, mixer="nystrom", num_landmarks=3)
_MHA_LIN = att.MultiHeadAttention(8, 2, mixer="linear", causal=True)

CASES = [
    Case("softmax_attention", att.softmax_attention,
         {**_qkv(), "mask": _MASK, "scale": Num(None, optional=True)}),
    Case("softmax_attention(causal)", att.softmax_attention, {**_qkv(), "mask": _MASK},
         fixed={"causal": True}),
    Case("linear_attention", att.linear_attention,
         {**_qkv(), "feature_map": Choice("relu"), "mask": _MASK, "chunk_size": Int(4),
          "eps": _EPS}),
    Case("linear_attention(causal)", att.linear_attention,
         {**_qkv(causal=True), "chunk_size": Int(4), "eps": _EPS}, fixed={"causal": True}),
    Case("causal_linear_attention", att.causal_linear_attention,
         {**_qkv(causal=True), "state": Opts(None, _BAD_STATE), "feature_map": Choice("elu"),
          "chunk_size": Int(4), "eps": _EPS}),
    Case("linear_attention_step", att.linear_attention_step,
         {**_step_qkv(), "state": Opts(None, _BAD_STATE), "feature_map": Choice("elu"),
          "eps": _EPS}),
    Case("nystrom_attention", att.nystrom_attention,
         {**_qkv(causal=True), "num_landmarks": Int(3), "pinv": Choice("newton"),
          "pinv_iterations": Int(None, optional=True), "mask": _MASK,
          "scale": Num(None, optional=True)}),
    Case("landmarks", att.landmarks,
         {"x": Tens(lambda: torch.randn(B, H, L, D), (4, 4), tied=(-4, -2)),
          "num_landmarks": Int(3), "mask": _MASK}),
    Case("newton_schulz_pinv", att.newton_schulz_pinv,
         {"a": Tens(lambda: torch.rand(2, 3, 3) + torch.eye(3), (2, None), finite=True),
          "iterations": Int(None, 0, optional=True), "tol": Num(None, 0.0, low_open=True,
          optional=True), "max_iterations": Int(20)}),
    Case("MultiHeadAttention", att.MultiHeadAttention,
         {"d_model": Int(8), "heads": Int(2), "mixer": Choice("softmax"),
          "rotary": Opts(None, ("rope", 3)), "num_landmarks": Int(4), "pinv": Choice("exact"),
          "pinv_iterations": Int(None, optional=True), "conv_kernel": Int(None, optional=True),
          "feature_map": Choice("elu"), "chunk_size": Int(8)}),
    Case("MultiHeadAttention(nystrom).forward", _MHA,
         {"x": Tens(lambda: torch.randn(B, L, 8), (3, 3), tied=(-1, -2, -3), finite=True),
          "mask": _MASK}),
    Case("MultiHeadAttention(linear).forward", _MHA_LIN,
         {"x": Tens(lambda: torch.randn(B, L, 8), (3, 3), tied=(-1, -2, -3), finite=True),
          "mask": _MASK}),
    Case("layer_flops", att.layer_flops,
         {"n": Int(128), "d": Int(64), "heads": Int(4), "ffn_mult": Int(4),
          "mixer": Choice("nystrom"), "landmarks": Int(16), "pinv_iterations": Int(6, 0),
          "conv_kernel": Int(0, 0)}),
    Case("layer_bytes", att.layer_bytes,
         {"n": Int(128), "d": Int(64), "heads": Int(4), "ffn_mult": Int(4),
          "mixer": Choice("linear"), "landmarks": Int(16), "bytes_per_element": Int(2)}),
    Case("crossover_length", att.crossover_length, {"d": Int(64), "ffn_mult": Int(4)}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_valid_call(case: Case) -> None:
    valid_call_works(case)


@pytest.mark.parametrize(("case", "name"), case_params(CASES))
@FUZZ
@given(data=st.data())
def test_wrong_argument(case: Case, name: str, data: st.DataObject) -> None:
    run_case(case, name, data.draw(wrong_value(case.args[name])))
