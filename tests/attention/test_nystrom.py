"""Nyström attention: landmarks, Newton–Schulz, exactness at full landmarks, padding."""

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from structmat.attention import landmarks, newton_schulz_pinv, nystrom_attention
from structmat.attention.nystrom import newton_schulz_pinv_info
from tests.attention.helpers import qkv
from tests.reference.attention import (
    nystrom_attention_ref,
    segment_means_ref,
    softmax_attention_ref,
    softmax_dense_ref,
)


def _smooth(b, h, length, d, seed, nfreq=6):
    """Sequences that vary smoothly along L (structured: nearby tokens alike)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, length, dtype=torch.float64)[:, None]
    freq = 6 * torch.randn(b, h, 1, nfreq, generator=g, dtype=torch.float64)
    phase = 6.3 * torch.rand(b, h, 1, nfreq, generator=g, dtype=torch.float64)
    mix = torch.randn(b, h, nfreq, d, generator=g, dtype=torch.float64)
    return 2 * torch.sin(t * freq + phase) @ mix / math.sqrt(nfreq)


@given(length=st.integers(1, 40), m=st.integers(1, 12), seed=st.integers(0, 1000))
def test_landmarks_match_loop_reference(length, m, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 1, length, 3, generator=g, dtype=torch.float64)
    mask = torch.rand(2, length, generator=g) > 0.3
    for msk in (None, mask):
        means, valid = landmarks(x, m, msk)
        for b in range(2):
            keep = None if msk is None else msk[b]
            ref = segment_means_ref(x[b, 0], m, keep)
            torch.testing.assert_close(means[b, 0], ref)
            n = length if keep is None else int(keep.sum())
            assert int(valid[b].sum()) == min(n, m)


def test_landmarks_keep_every_token():
    # L = 10, m = 4: segments {0,1,2} {3,4} {5,6,7} {8,9}; none dropped.
    x = torch.arange(10, dtype=torch.float64).reshape(1, 1, 10, 1)
    means, _ = landmarks(x, 4)
    assert means.flatten().tolist() == [1.0, 3.5, 6.0, 8.5]


@pytest.mark.parametrize("m", [3, 8, 16])
def test_newton_schulz_converges_to_pinv(m):
    g = torch.Generator().manual_seed(m)
    # Softmax kernels with a clear diagonal: well conditioned, as on structured inputs.
    a = torch.softmax(3 * torch.randn(2, 3, m, m, generator=g, dtype=torch.float64)
                      + 4 * torch.eye(m, dtype=torch.float64), dim=-1)
    exact = torch.linalg.pinv(a)
    z = newton_schulz_pinv(a, tol=1e-13)
    torch.testing.assert_close(z, exact, rtol=1e-9, atol=1e-9)
    # Residual falls monotonically with the step count.
    res = [
        float(torch.linalg.matrix_norm(a @ newton_schulz_pinv(a, iterations=i) @ a - a).max())
        for i in range(0, 12, 2)
    ]
    assert all(r1 < r0 for r0, r1 in itertools.pairwise(res))


def test_newton_schulz_scale_is_per_matrix():
    # One matrix with large column sums next to one with small: a batch-wide max (the
    # official code's) would start the second one far too small; per matrix, both converge.
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(8, 8, generator=g, dtype=torch.float64)
    small = torch.softmax(noise + 5 * torch.eye(8), -1)
    big = small.clone()
    big[:, 0] += 30.0
    a = torch.stack([big, small])
    z = newton_schulz_pinv(a, iterations=8)
    err = torch.linalg.matrix_norm(z - torch.linalg.pinv(a)) / torch.linalg.matrix_norm(z)
    assert float(err[1]) < 1e-8


def test_newton_schulz_default_converges_on_real_kernels():
    # Kernels of structured inputs: 6 steps (the paper's) leave a residual > 1e-2; the
    # default stops at <= 1e-3.
    q, k, _ = (_smooth(1, 4, 512, 16, seed=s) for s in (1, 2, 3))
    ql, _ = landmarks(q, 32)
    kl, _ = landmarks(k, 32)
    a = torch.softmax(ql @ kl.transpose(-1, -2) / 4, -1)

    def res(z):
        return float((torch.linalg.matrix_norm(a @ z @ a - a) / torch.linalg.matrix_norm(a)).max())

    assert res(newton_schulz_pinv(a, iterations=6)) > 1e-2
    z, steps, r = newton_schulz_pinv_info(a)
    assert res(z) <= 1e-3 and r == pytest.approx(res(z)) and steps > 6


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("length", [1, 5, 12])
def test_full_landmarks_equal_softmax(dtype, length):
    q, k, v = qkv(2, 2, length, length, 4, 4, dtype, seed=length, scale=1.5)
    out = nystrom_attention(q, k, v, num_landmarks=length, pinv="exact")
    ref = softmax_attention_ref(q, k, v)
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)
    # More landmarks than tokens: every token is its own landmark, still exact.
    out = nystrom_attention(q, k, v, num_landmarks=length + 3, pinv="exact")
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize(("length", "m"), [(24, 6), (29, 6), (40, 7)])
def test_matches_dense_reference(length, m):
    q, k, v = qkv(2, 2, length, length, 4, 4, seed=length, scale=2.0)
    mask = torch.rand(2, length, generator=torch.Generator().manual_seed(m)) > 0.25
    for msk in (None, mask):
        out = nystrom_attention(q, k, v, num_landmarks=m, pinv="exact", mask=msk)
        ref = nystrom_attention_ref(q, k, v, m, mask=msk)
        keep = torch.ones(2, length, dtype=torch.bool) if msk is None else msk
        sel = keep[:, None, :, None].expand_as(out)
        torch.testing.assert_close(out[sel], ref[sel], rtol=1e-7, atol=1e-7)


def test_error_falls_as_landmarks_grow():
    q, k, v = (_smooth(1, 2, 256, 16, seed=s) for s in (4, 5, 6))
    exact = softmax_dense_ref(q, k, v)
    errs = []
    for m in (4, 8, 16, 32, 64):
        out = nystrom_attention(q, k, v, num_landmarks=m)
        errs.append(float((out - exact).norm() / exact.norm()))
    assert all(e1 < e0 for e0, e1 in itertools.pairwise(errs)), errs
    assert errs[-1] < 1e-2 < errs[0]


def test_default_more_accurate_than_six_steps_on_structured_inputs():
    q, k, v = (_smooth(1, 4, 512, 16, seed=s) for s in (7, 8, 9))
    exact = softmax_dense_ref(q, k, v)

    def err(out):
        return float((out - exact).norm() / exact.norm())

    six = err(nystrom_attention(q, k, v, 32, pinv_iterations=6))
    default = err(nystrom_attention(q, k, v, 32))
    assert default < six / 3, (default, six)


@pytest.mark.parametrize("m", [4, 7])
def test_padding_invariance(m):
    q, k, v = qkv(2, 2, 30, 30, 4, 4, seed=m, scale=1.5)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[0, 21:] = False  # right padding
    mask[1, :5] = False  # left padding
    mask[1, 12] = False  # a hole
    out = nystrom_attention(q, k, v, num_landmarks=m, mask=mask)
    junk = 1e3 * torch.randn(2, 2, 30, 4, dtype=torch.float64)
    pad = ~mask[:, None, :, None]
    out2 = nystrom_attention(
        torch.where(pad, junk, q), torch.where(pad, junk, k), torch.where(pad, junk, v),
        num_landmarks=m, mask=mask,
    )
    sel = mask[:, None, :, None].expand_as(out)
    torch.testing.assert_close(out2[sel], out[sel], rtol=1e-10, atol=1e-10)
    # ... and equal the result on the sequence with its padding cut out.
    for b in range(2):
        idx = mask[b].nonzero().flatten()
        alone = nystrom_attention(q[b:b + 1, :, idx], k[b:b + 1, :, idx], v[b:b + 1, :, idx], m)
        torch.testing.assert_close(out[b:b + 1, :, idx], alone, rtol=1e-10, atol=1e-10)


def test_fewer_kept_tokens_than_landmarks_and_empty_rows():
    q, k, v = qkv(2, 1, 10, 10, 4, 4, seed=3)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, :3] = True  # 3 kept tokens, 8 landmarks: 5 empty landmarks drop out exactly
    out = nystrom_attention(q, k, v, num_landmarks=8, pinv="exact", mask=mask)
    assert torch.isfinite(out).all()
    ref = softmax_attention_ref(q[:1, :, :3], k[:1, :, :3], v[:1, :, :3])
    torch.testing.assert_close(out[:1, :, :3], ref, rtol=1e-9, atol=1e-9)
    assert (out[1] == 0).all()  # nothing kept: zeros, not NaN


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision(dtype):
    q, k, v = (_smooth(1, 2, 128, 16, seed=s) for s in (1, 2, 3))
    ref = nystrom_attention(q, k, v, 16)
    out = nystrom_attention(q.to(dtype), k.to(dtype), v.to(dtype), 16)
    assert out.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    assert float((out.double() - ref).norm() / ref.norm()) < tol


def test_gradients_flow():
    q, k, v = (t.requires_grad_() for t in qkv(1, 2, 20, 20, 4, 4, seed=1))
    nystrom_attention(q, k, v, 5).sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (q, k, v))


def test_errors():
    q, k, v = qkv(1, 2, 8, 8, 4, 4, torch.float32)
    with pytest.raises(ValueError, match=r"pinv: expected one of 'newton' \| 'exact', got 'svd'"):
        nystrom_attention(q, k, v, pinv="svd")
    with pytest.raises(ValueError, match=r"num_landmarks: expected an integer >= 1, got 0"):
        nystrom_attention(q, k, v, num_landmarks=0)
    with pytest.raises(ValueError, match=r"pinv_iterations: expected an integer >= 1, got 0"):
        nystrom_attention(q, k, v, pinv_iterations=0)
    with pytest.raises(ValueError, match=r"q: expected length L = 8 \(as k"):
        nystrom_attention(q[:, :, :5], k, v)
    with pytest.raises(ValueError, match=r"a: expected a floating tensor \(\.\.\., m, n\)"):
        newton_schulz_pinv(torch.ones(3))


def test_gradcheck_exact_pinv():
    q, k, v = (t.requires_grad_() for t in qkv(1, 1, 9, 9, 3, 3, seed=2, scale=1.5))
    assert torch.autograd.gradcheck(
        lambda a, b, c: nystrom_attention(a, b, c, 3, pinv="exact"), (q, k, v)
    )
