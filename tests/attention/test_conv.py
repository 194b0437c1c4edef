"""sequence_conv (block-Toeplitz matmuls) == the depthwise Conv2d it replaces."""

import pytest
import torch
import torch.nn.functional as F

from structmat.attention.conv import sequence_conv


def conv_ref(v, w):
    """Loop over taps: out[l] = Σ_t w[t] v[l + t - K//2], zero outside the sequence."""
    b, h, length, d = v.shape
    k = w.shape[-1]
    out = torch.zeros(b, h, length, d, dtype=torch.float64)
    for t in range(k):
        shift = t - k // 2
        lo, hi = max(0, -shift), min(length, length - shift)
        if hi <= lo:
            continue
        out[:, :, lo:hi] += w[None, :, t, None, None].double() * v[:, :, lo + shift:hi + shift]
    return out


@pytest.mark.parametrize(("length", "k", "block", "chunk"),
                         [(1, 3, 64, 2048), (5, 33, 64, 2048), (100, 7, 8, 24),
                          (130, 33, 16, 50), (257, 1, 64, 128), (64, 65, 64, 64)])
def test_matches_conv(length, k, block, chunk):
    g = torch.Generator().manual_seed(length + k)
    v = torch.randn(2, 3, length, 4, generator=g, dtype=torch.float64)
    w = torch.randn(3, 1, k, 1, generator=g, dtype=torch.float64)
    out = sequence_conv(v, w, block=block, chunk=chunk)
    torch.testing.assert_close(out, conv_ref(v, w[:, 0, :, 0]), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out, F.conv2d(v, w, padding=(k // 2, 0), groups=3))
    acc = torch.ones_like(v)
    res = sequence_conv(v, w, out=acc, block=block, chunk=chunk)
    assert res is acc
    torch.testing.assert_close(acc, out + 1)


def test_float32_and_gradients():
    v = torch.randn(1, 2, 300, 8, requires_grad=True)
    w = torch.randn(2, 1, 9, 1, requires_grad=True)
    out = sequence_conv(v, w, block=32, chunk=96)
    ref = F.conv2d(v, w, padding=(4, 0), groups=2)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g_out = torch.randn_like(out)
    gv, gw = torch.autograd.grad(out, (v, w), g_out)
    rv, rw = torch.autograd.grad(ref, (v, w), g_out)
    torch.testing.assert_close(gv, rv, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gw, rw, rtol=1e-4, atol=1e-4)
