"""Linear attention: chunked causal == quadratic reference, step == forward, checks."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from structmat.attention import (
    LinearAttentionState,
    causal_linear_attention,
    linear_attention,
    linear_attention_step,
)
from tests.attention.helpers import TOL, qkv
from tests.reference.attention import linear_attention_ref


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("feature_map", ["elu", "relu"])
@pytest.mark.parametrize("length", [1, 7, 33])
def test_noncausal_matches_reference(dtype, feature_map, length):
    q, k, v = qkv(2, 3, length, length, 8, 5, dtype, seed=length)
    out = linear_attention(q, k, v, feature_map=feature_map)
    ref = linear_attention_ref(q, k, v, feature_map=feature_map)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), ref, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("chunk_size", [1, 4, 7, 16, 100])
@pytest.mark.parametrize("length", [13, 32])
def test_causal_chunked_matches_quadratic(dtype, chunk_size, length):
    # L not a multiple of the chunk (13 with 4, 7, 16), a multiple (32 with 4, 16), one chunk (100).
    q, k, v = qkv(2, 2, length, length, 6, 4, dtype, seed=chunk_size)
    out = linear_attention(q, k, v, causal=True, chunk_size=chunk_size)
    ref = linear_attention_ref(q, k, v, causal=True)
    torch.testing.assert_close(out.double(), ref, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("causal", [False, True])
def test_mask_removes_padded_keys(causal):
    q, k, v = qkv(2, 2, 11, 11, 4, 3, torch.float64, seed=9)
    mask = torch.rand(2, 11, generator=torch.Generator().manual_seed(2)) > 0.4
    out = linear_attention(q, k, v, causal=causal, mask=mask, chunk_size=4)
    ref = linear_attention_ref(q, k, v, causal=causal, mask=mask)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    # Changing what padded positions hold changes nothing at kept queries.
    k2 = torch.where(mask[:, None, :, None], k, 100 * torch.randn_like(k))
    v2 = torch.where(mask[:, None, :, None], v, 100 * torch.randn_like(v))
    out2 = linear_attention(q, k2, v2, causal=causal, mask=mask, chunk_size=4)
    torch.testing.assert_close(out2, out, rtol=1e-10, atol=1e-10)


@given(
    length=st.integers(1, 20),
    split=st.integers(0, 20),
    chunk=st.integers(1, 8),
    feature_map=st.sampled_from(["elu", "relu"]),
)
def test_prefill_then_steps_equals_forward(length, split, chunk, feature_map):
    split = min(split, length)
    q, k, v = qkv(1, 2, length, length, 4, 3, torch.float64, seed=length * 31 + split)
    full = linear_attention(q, k, v, causal=True, feature_map=feature_map, chunk_size=chunk)
    outs = []
    state = None
    if split:
        out, state = causal_linear_attention(
            q[:, :, :split],
            k[:, :, :split],
            v[:, :, :split],
            feature_map=feature_map,
            chunk_size=chunk,
        )
        outs.append(out)
    for t in range(split, length):
        o, state = linear_attention_step(
            q[:, :, t], k[:, :, t], v[:, :, t], state, feature_map=feature_map
        )
        outs.append(o.unsqueeze(2))
    torch.testing.assert_close(torch.cat(outs, dim=2), full, rtol=1e-10, atol=1e-10)
    assert isinstance(state, LinearAttentionState)
    assert state.kv.shape == (1, 2, 4, 3) and state.k_sum.shape == (1, 2, 4)


def test_state_sums():
    q, k, v = qkv(1, 1, 9, 9, 3, 2, torch.float64, seed=4)
    _, state = causal_linear_attention(q, k, v, chunk_size=4)
    fk = torch.nn.functional.elu(k) + 1
    torch.testing.assert_close(state.kv, fk.transpose(-1, -2) @ v)
    torch.testing.assert_close(state.k_sum, fk.sum(2))


def test_bf16_runs_in_float32():
    q, k, v = qkv(1, 2, 50, 50, 8, 8, torch.float64, seed=5)
    out = linear_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), causal=True, chunk_size=16)
    assert out.dtype == torch.bfloat16
    ref = linear_attention_ref(q, k, v, causal=True)
    assert float((out.double() - ref).norm() / ref.norm()) < 2e-2


def test_errors():
    q, k, v = qkv(1, 2, 5, 5, 4, 4, torch.float32, seed=6)
    with pytest.raises(ValueError, match=r"feature_map: expected one of 'elu' \| 'relu', got 'ex"):
        linear_attention(q, k, v, feature_map="exp")
    with pytest.raises(ValueError, match=r"chunk_size: expected an integer >= 1, got 0"):
        linear_attention(q, k, v, causal=True, chunk_size=0)
    with pytest.raises(ValueError, match=r"q: expected length Lq = L = 5 when causal, got Lq = 3"):
        linear_attention(q[:, :, :3], k, v, causal=True)
    with pytest.raises(ValueError, match=r"eps: expected a finite number >= 0"):
        linear_attention(q, k, v, eps=-1.0)
    with pytest.raises(ValueError, match=r"q: expected shape \(B, H, D\)"):
        linear_attention_step(q, k[:, :, 0], v[:, :, 0])
    _, state = causal_linear_attention(q, k, v)
    with pytest.raises(ValueError, match=r"state: expected kv \(B, H, D, Dv\) = \(1, 2, 4, 3\)"):
        linear_attention_step(q[:, :, 0], k[:, :, 0], v[:, :, 0, :3], state)


@pytest.mark.parametrize("causal", [False, True])
def test_gradients(causal):
    q, k, v = (t.requires_grad_() for t in qkv(1, 2, 7, 7, 3, 2, torch.float64, seed=8))
    assert torch.autograd.gradcheck(
        lambda a, b, c: linear_attention(a, b, c, causal=causal, chunk_size=3), (q, k, v)
    )
