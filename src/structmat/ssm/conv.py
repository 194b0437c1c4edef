"""Long convolutions by FFT with zero padding (no circular wrap-around)."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from structmat._checks import check_shape, check_tensor, fail, shape_str

__all__ = ["fft_conv"]


class _FFTConv(torch.autograd.Function):
    """y = (u ⊛ k)[:L] with u, k zero-padded to n (circular convolution of length n).

    Backward in closed form with real FFTs only (autograd's generic rule for
    rfft/irfft goes through complex-to-complex transforms of twice the work):
        grad_u = irfft(rfft(g, n) · conj(K̂), n)[:L]        (cross-correlation with k)
        grad_k = irfft(Σ_b rfft(g, n) · conj(Û), n)[:Lk]   (cross-correlation with u)
    Saves Û (B, H, n/2+1) and K̂ (H, n/2+1) only.
    """

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, k: torch.Tensor, n: int) -> torch.Tensor:
        L, Lk = u.shape[-1], k.shape[-1]
        U = torch.fft.rfft(u, n=n)  # (B, H, n/2+1)
        Kf = torch.fft.rfft(k, n=n)  # (H, n/2+1)
        y = torch.fft.irfft(U * Kf, n=n)[..., :L]  # (B, H, L)
        ctx.save_for_backward(U, Kf)
        ctx.n, ctx.L, ctx.Lk = n, L, Lk
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        U, Kf = ctx.saved_tensors
        n, L, Lk = ctx.n, ctx.L, ctx.Lk
        G = torch.fft.rfft(g, n=n)  # (B, H, n/2+1)
        gu = gk = None
        if ctx.needs_input_grad[0]:
            gu = torch.fft.irfft(G * Kf.conj(), n=n)[..., :L]  # (B, H, L)
        if ctx.needs_input_grad[1]:
            GU = torch.einsum("bhf,bhf->hf", G, U.conj())  # Σ_b, (H, n/2+1)
            gk = torch.fft.irfft(GU, n=n)[..., :Lk]  # (H, Lk)
        return gu, gk, None


def _check_conv(u: Any, K: Any, D: Any) -> None:
    """u (B, H, L) with L >= 1; K (1 or 2, H, Lk >= L) and D (H,) of u's dtype."""
    check_tensor(u, "u", "(B, H, L)", 3, kind="float")
    # torch's CPU FFT has no 16-bit kernels; one dtype keeps the closed-form backward simple
    if u.dtype not in (torch.float32, torch.float64):
        raise fail("u", "dtype float32 or float64", f"dtype {u.dtype}")
    _, H, L = u.shape
    if L == 0:
        raise fail("u", "a sequence length L >= 1", f"shape {shape_str(u.shape)}")
    check_tensor(K, "K", "(M, H, Lk)", 3)
    if K.dtype != u.dtype:
        raise fail("K", f"dtype {u.dtype} (u's)", f"dtype {K.dtype}")
    if K.shape[0] not in (1, 2) or K.shape[1] != H or K.shape[2] < L:
        want = f"shape (1 or 2, H, Lk) with H = {H}, Lk >= L = {L} (to match u)"
        raise fail("K", want, f"shape {shape_str(K.shape)}")
    if D is not None:
        check_tensor(D, "D", "(H,)", 1)
        if D.dtype != u.dtype:
            raise fail("D", f"dtype {u.dtype} (u's)", f"dtype {D.dtype}")
        check_shape(D, "D", (H,), "(H,) (to match u)")


def fft_conv(u: torch.Tensor, K: torch.Tensor, D: torch.Tensor | None = None) -> torch.Tensor:
    """y = K * u (+ D u) along the last axis, causal and optionally anti-causal.

    y[..., t] = Σ_{s<=t} K[0, ..., t-s] u[..., s] (+ Σ_{s>t} K[1, ..., s-t-1] u[..., s]
    when two kernels are given: the anti-causal one of a bidirectional S4 layer)
    (+ D u[..., t]).

    Both sequences are zero-padded to n = 2L before the FFT, so lags of either sign
    (|lag| <= L-1) never wrap around the circle. The skip term D u is folded into
    tap 0 of the causal kernel (y = (K + D δ) * u), which saves a pass over (B, H, L).

    Args:
        u: (B, H, L) real input.
        K: (1, H, Lk) or (2, H, Lk) real kernels with Lk >= L (only L taps are used).
        D: (H,) skip weights or None.

    Returns:
        y: (B, H, L).
    """
    _check_conv(u, K, D)
    if u.numel() == 0:  # no sequences or no channels: nothing to convolve
        return torch.zeros_like(u)
    L = u.shape[-1]
    n = 2 * L
    k = K[0] if K.shape[-1] == L else K[0, :, :L]  # (H, L) causal taps
    if D is not None:
        k = torch.cat([k[:, :1] + D[:, None], k[:, 1:]], dim=-1)  # D u folded into tap 0
    if K.shape[0] == 2:
        # anti-causal taps at circular positions n-1, n-2, ..., i.e. lags -1, -2, ...
        k = F.pad(k, (0, L)) + F.pad(K[1, :, :L].flip(-1), (L, 0))  # (H, 2L)
    return _FFTConv.apply(u, k, n)  # (B, H, L)
