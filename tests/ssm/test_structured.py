"""Cauchy and Vandermonde products: loops reference, chunking, gradients, memory."""

import numpy as np
import pytest
import torch

from structmat.ssm import cauchy, cauchy_conj, fft_conv, vandermonde
from tests.reference.ssm import cauchy_loops, vandermonde_loops

TOL = {torch.complex128: 1e-10, torch.complex64: 1e-5}


def _rel(a: torch.Tensor, b: np.ndarray) -> float:
    return float(np.abs(a.detach().numpy() - b).max() / max(np.abs(b).max(), 1e-300))


def _random(Bt: int, M: int, N: int, J: int, dtype: torch.dtype, g: torch.Generator):  # type: ignore[no-untyped-def]
    v = torch.randn(Bt, M, N, dtype=dtype, generator=g)
    w = torch.complex(-torch.rand(Bt, N, generator=g) - 0.1, 3 * torch.randn(Bt, N, generator=g))
    z = torch.complex(torch.zeros(J), 4 * torch.randn(J, generator=g))
    return v, z.to(dtype), w.to(dtype)


@pytest.mark.parametrize("dtype", [torch.complex128, torch.complex64])
@pytest.mark.parametrize(("Bt", "M", "N", "J"), [(1, 1, 1, 1), (3, 4, 8, 17), (2, 2, 32, 100)])
def test_cauchy_matches_loops(dtype: torch.dtype, Bt: int, M: int, N: int, J: int) -> None:
    g = torch.Generator().manual_seed(Bt * 100 + J)
    v, z, w = _random(Bt, M, N, J, dtype, g)
    ref = cauchy_loops(
        v.to(torch.complex128).numpy(),
        z.to(torch.complex128).numpy(),
        w.to(torch.complex128).numpy(),
    )
    for chunk in (None, 1, 5, 1000):
        r = cauchy(v, z, w, chunk=chunk)
        assert r.shape == (Bt, M, J) and r.dtype == dtype
        assert _rel(r.to(torch.complex128), ref) < TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.complex128, torch.complex64])
@pytest.mark.parametrize(("Bt", "M", "N", "L"), [(1, 1, 1, 1), (3, 2, 8, 37), (2, 3, 16, 300)])
def test_vandermonde_matches_loops(dtype: torch.dtype, Bt: int, M: int, N: int, L: int) -> None:
    g = torch.Generator().manual_seed(Bt * 7 + L)
    v = torch.randn(Bt, M, N, dtype=dtype, generator=g)
    logx = torch.complex(-0.05 * torch.rand(Bt, N, generator=g), torch.randn(Bt, N, generator=g))
    logx = logx.to(dtype)
    x = torch.exp(logx.to(torch.complex128)).numpy()
    ref = vandermonde_loops(v.to(torch.complex128).numpy(), x, L)
    for chunk in (None, 1, 7, 64, 10_000):
        out = vandermonde(v, logx, L, chunk=chunk)
        assert out.shape == (Bt, M, L) and out.dtype == dtype
        # float32: the phase l·Im(log x) is rounded to ~1e-7 relative, at l ~ 300
        tol = TOL[dtype] if dtype == torch.complex128 else 1e-4
        assert _rel(out.to(torch.complex128), ref) < tol


def test_batch_broadcasting() -> None:
    g = torch.Generator().manual_seed(0)
    v = torch.randn(2, 3, 4, 5, dtype=torch.complex128, generator=g)  # (..., M, N)
    w = torch.randn(3, 5, dtype=torch.complex128, generator=g)  # broadcast over the 2
    z = torch.randn(6, dtype=torch.complex128, generator=g)
    r = cauchy(v, z, w)
    for i in range(2):
        assert torch.allclose(r[i], cauchy(v[i], z, w), atol=1e-13)
    o = vandermonde(v, w, 9)
    assert torch.allclose(o[1], vandermonde(v[1], w, 9), atol=1e-13)


def test_cauchy_gradcheck() -> None:
    g = torch.Generator().manual_seed(1)
    v, z, w = _random(2, 3, 4, 7, torch.complex128, g)
    args = (v.requires_grad_(), z.requires_grad_(), w.requires_grad_())
    assert torch.autograd.gradcheck(lambda a, b, c: cauchy(a, b, c, chunk=3), args)


def test_vandermonde_gradcheck() -> None:
    g = torch.Generator().manual_seed(2)
    v = torch.randn(2, 3, 4, dtype=torch.complex128, generator=g).requires_grad_()
    logx = torch.complex(
        -torch.rand(2, 4, generator=g, dtype=torch.float64),
        torch.randn(2, 4, generator=g, dtype=torch.float64),
    ).requires_grad_()
    for L, chunk in ((1, None), (11, 4), (20, 20)):
        assert torch.autograd.gradcheck(
            lambda a, b, L=L, c=chunk: vandermonde(a, b, L, c), (v, logx)
        )


def test_chunked_backward_equals_unchunked() -> None:
    g = torch.Generator().manual_seed(3)
    v, z, w = _random(3, 2, 8, 50, torch.complex128, g)
    grads = []
    for chunk in (1, 7, 50):
        vv, ww = v.clone().requires_grad_(), w.clone().requires_grad_()
        r = cauchy(vv, z, ww, chunk=chunk)
        (r.real.sin().sum() + r.imag.sum()).backward()
        grads.append((vv.grad, ww.grad))
    for gv, gw in grads[1:]:
        assert torch.allclose(gv, grads[0][0], atol=1e-12)
        assert torch.allclose(gw, grads[0][1], atol=1e-12)


def test_autograd_saves_only_the_inputs() -> None:
    """The (Bt, N, J) matrices are never kept for backward: saved bytes ~ inputs."""
    g = torch.Generator().manual_seed(4)
    Bt, M, N, J = 4, 2, 16, 4096
    v, z, w = _random(Bt, M, N, J, torch.complex64, g)
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        cauchy(v.requires_grad_(), z, w.requires_grad_())
        cauchy_conj(v, z.imag.contiguous(), w)
        logx = w.clone().requires_grad_()
        vandermonde(v, logx, J)
    assert max(saved) <= max(Bt * M * N, J, Bt * N)
    assert sum(saved) < Bt * N * J / 20


def test_bad_inputs() -> None:
    v = torch.randn(2, 3, 4, dtype=torch.complex64)
    with pytest.raises(
        ValueError, match=r"w: expected last dimension 4 \(to match v\), got shape \(2, 5\)"
    ):
        cauchy(v, torch.randn(3, dtype=torch.complex64), torch.randn(2, 5, dtype=torch.complex64))
    with pytest.raises(ValueError, match=r"z: expected shape \(J,\)"):
        cauchy(
            v, torch.randn(3, 2, dtype=torch.complex64), torch.randn(2, 4, dtype=torch.complex64)
        )
    with pytest.raises(ValueError, match=r"v: expected shape \(\.\.\., M, N\)"):
        vandermonde(torch.randn(4, dtype=torch.complex64), torch.randn(4, dtype=torch.complex64), 3)
    with pytest.raises(ValueError, match=r"L: expected an integer >= 1, got 0"):
        vandermonde(v, torch.randn(2, 4, dtype=torch.complex64), 0)
    with pytest.raises(ValueError, match=r"chunk: expected an integer >= 1, got 0"):
        cauchy(
            v,
            torch.randn(3, dtype=torch.complex64),
            torch.randn(2, 4, dtype=torch.complex64),
            chunk=0,
        )


@pytest.mark.parametrize("dtype", [torch.complex128, torch.complex64])
@pytest.mark.parametrize(("Bt", "M", "N", "J"), [(1, 1, 1, 1), (3, 4, 8, 17), (2, 9, 32, 100)])
def test_cauchy_conj_matches_loops(dtype: torch.dtype, Bt: int, M: int, N: int, J: int) -> None:
    """Conjugate pairs at imaginary nodes == the full-state Cauchy sum by loops."""
    g = torch.Generator().manual_seed(J + 5)
    v, _, w = _random(Bt, M, N, J, dtype, g)
    y = 3 * torch.randn(J, generator=g, dtype=torch.float64)
    y[0] = 0.0
    v64, w64 = v.to(torch.complex128), w.to(torch.complex128)
    ref = cauchy_loops(
        torch.cat([v64, v64.conj()], -1).numpy(),
        (1j * y).numpy(),
        torch.cat([w64, w64.conj()], -1).numpy(),
    )
    for chunk in (None, 1, 6, 1000):
        r = cauchy_conj(v, y.to(v.real.dtype), w, chunk=chunk)
        assert r.shape == (Bt, M, J) and r.dtype == dtype
        assert _rel(r.to(torch.complex128), ref) < TOL[dtype]


def test_cauchy_conj_far_nodes_float32() -> None:
    """Nodes far out on the axis (y ~ 1e4, S4's near-Nyquist nodes at L = 16K) and
    poles next to a node: float32 keeps 1e-5 relative accuracy (no |w|² - y² cancellation)."""
    g = torch.Generator().manual_seed(11)
    w = torch.complex(
        -1e-3 * torch.rand(2, 6, generator=g, dtype=torch.float64),
        1e4 * torch.rand(2, 6, generator=g, dtype=torch.float64),
    )
    y = torch.cat([w.imag.flatten() + 0.5, torch.tensor([1e4, 2e4])])
    v = torch.randn(2, 3, 6, dtype=torch.complex128, generator=g)
    ref = cauchy_conj(v, y, w)
    r32 = cauchy_conj(v.to(torch.complex64), y.float(), w.to(torch.complex64))
    err = (r32.to(torch.complex128) - ref).abs() / ref.abs().clamp(min=1e-30)
    assert float(err.max()) < 1e-4


def test_cauchy_conj_gradcheck() -> None:
    g = torch.Generator().manual_seed(12)
    v, _, w = _random(2, 3, 4, 7, torch.complex128, g)
    y = torch.randn(7, generator=g, dtype=torch.float64)
    args = (v.requires_grad_(), w.requires_grad_())
    assert torch.autograd.gradcheck(lambda a, c: cauchy_conj(a, y, c, chunk=3), args)
    assert torch.autograd.gradcheck(lambda a: cauchy_conj(a, y, w.detach(), chunk=2), (v,))


def test_fft_conv_gradcheck_and_loops() -> None:
    from tests.reference.ssm import anticausal_conv, causal_conv

    g = torch.Generator().manual_seed(13)
    u = torch.randn(2, 3, 9, dtype=torch.float64, generator=g).requires_grad_()
    D = torch.randn(3, dtype=torch.float64, generator=g).requires_grad_()
    for M in (1, 2):
        K = torch.randn(M, 3, 12, dtype=torch.float64, generator=g).requires_grad_()
        y = fft_conv(u, K, D).detach().numpy()
        x, k = u.detach().numpy(), K.detach().numpy()
        ref = causal_conv(x, k[0, :, :9]) + D.detach().numpy()[:, None] * x
        if M == 2:
            ref = ref + anticausal_conv(x, k[1, :, :9])
        np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
        assert torch.autograd.gradcheck(fft_conv, (u, K, D))
