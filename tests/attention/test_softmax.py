"""softmax_attention against the loop reference, and its input checks."""

import pytest
import torch

from structmat.attention import softmax_attention
from tests.attention.helpers import TOL, qkv
from tests.reference.attention import softmax_attention_ref


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("lq", "lk"), [(5, 5), (3, 7), (9, 9)])
@pytest.mark.parametrize("causal", [False, True])
def test_matches_reference(dtype, lq, lk, causal):
    q, k, v = qkv(2, 2, lq, lk, 4, 5, dtype, seed=lq * 10 + lk)
    mask = torch.rand(2, lk, generator=torch.Generator().manual_seed(1)) > 0.3
    mask[:, -1] = True  # the last key is visible to every causal query
    for m in (None, mask):
        out = softmax_attention(q, k, v, causal=causal, mask=m)
        ref = softmax_attention_ref(q, k, v, causal=causal, mask=m)
        assert out.dtype == dtype and out.shape == ref.shape
        torch.testing.assert_close(out.double(), ref, rtol=TOL[dtype], atol=TOL[dtype])


def test_fully_masked_row_is_zero():
    q, k, v = qkv(1, 1, 4, 4, 3, 4, torch.float64, seed=3)
    mask = torch.tensor([[False, False, True, True]])
    out = softmax_attention(q, k, v, causal=True, mask=mask)
    assert torch.isfinite(out).all()
    assert (out[0, 0, :2] == 0).all()  # queries 0, 1 see only padded keys
    torch.testing.assert_close(out, softmax_attention_ref(q, k, v, causal=True, mask=mask))


def test_bf16_close_to_float64():
    q, k, v = qkv(1, 2, 16, 16, 8, 9, torch.float64, seed=4)
    out = softmax_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), causal=True)
    assert out.dtype == torch.bfloat16
    ref = softmax_attention_ref(q, k, v, causal=True)
    assert float((out.double() - ref).norm() / ref.norm()) < 2e-2


def test_errors():
    q, k, v = qkv(1, 2, 4, 4, 3, 4, torch.float32, seed=5)
    with pytest.raises(ValueError, match=r"q: expected shape \(B, H, L, D\), got shape \(2, 4,"):
        softmax_attention(q[0], k, v)
    with pytest.raises(ValueError, match=r"k: expected head dim D = 3"):
        softmax_attention(q, k[..., :2], v)
    with pytest.raises(ValueError, match=r"v: expected length L = 4"):
        softmax_attention(q, k, v[:, :, :3])
    with pytest.raises(ValueError, match=r"k, v: expected the dtype of q"):
        softmax_attention(q, k.double(), v)
    with pytest.raises(ValueError, match=r"mask: expected a bool tensor"):
        softmax_attention(q, k, v, mask=torch.ones(1, 4))
    with pytest.raises(ValueError, match=r"mask: expected shape \(B, L\) = \(1, 4\), got shape"):
        softmax_attention(q, k, v, mask=torch.ones(1, 3, dtype=torch.bool))
    bad = q.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"q: expected finite values, got 1 NaN"):
        softmax_attention(bad, k, v)
    with pytest.raises(ValueError, match=r"q: expected a floating-point tensor"):
        softmax_attention(q.long(), k, v)
