"""Diagonal state spaces (S4D; Gu, Gupta, Goel, Ré, "On the Parameterization and
Initialization of Diagonal State Space Models", NeurIPS 2022).

Kernel (S4D eq. 6 with conjugate pairs kept once):
    K_l = 2 Re Σ_n C_n B̄_n Ā_n^l,  0 <= l < L,
a Vandermonde product in Ā_n = exp(log Ā_n).
"""

from __future__ import annotations

import math

import torch

from structmat._checks import check_choice, check_positive_int, fail
from structmat.ssm._validate import check_diag_system
from structmat.ssm.discretize import discretize_diag
from structmat.ssm.nplr import nplr
from structmat.ssm.structured import vandermonde

__all__ = ["DIAG_INITS", "diag_init", "diag_kernel"]

DIAG_INITS = ("diag-lin", "diag-inv", "legs")


def diag_init(init: str, N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial diagonal A and B for S4D, N/2 kept modes (complex128).

    - ``diag-lin`` (S4D-Lin): λ_n = -1/2 + iπn, B_n = 1.
    - ``diag-inv`` (S4D-Inv): λ_n = -1/2 + i (N/π)(N/(2n+1) - 1), B_n = 1.
    - ``legs`` (S4D-LegS): the diagonal Λ of HiPPO-LegS's NPLR form, B = Vᴴ B_legs.

    Args:
        init: ``"diag-lin" | "diag-inv" | "legs"``.
        N: full state size, even; N/2 modes are kept.

    Returns:
        (Lambda, B): (N/2,) complex each.
    """
    check_choice(init, "init", DIAG_INITS)
    check_positive_int(N, "N")
    if N % 2:
        raise fail("N", "an even state size (conjugate pairs of modes)", repr(N))
    n = torch.arange(N // 2, dtype=torch.float64)
    if init == "legs":
        Lambda, _, B, _ = nplr("legs", N)
        return Lambda, B
    if init == "diag-lin":
        imag = math.pi * n
    else:
        imag = (N / math.pi) * (N / (2 * n + 1) - 1)
    Lambda = torch.complex(torch.full_like(n, -0.5), imag)
    return Lambda, torch.ones(N // 2, dtype=torch.complex128)


def diag_kernel(
    Lambda: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    dt: torch.Tensor,
    L: int,
    method: str = "zoh",
    chunk: int | None = None,
) -> torch.Tensor:
    """S4D convolution kernel K_l = 2 Re Σ_n C_n B̄_n Ā_n^l (S4D eq. 6).

    Args:
        Lambda: (H, N2) complex diagonal of A (N2 = N/2 kept modes).
        B: (H, N2) complex.
        C: (M, H, N2) complex (M output channels, e.g. 2 when bidirectional).
        dt: (H,) real step sizes.
        L: kernel length.
        method: ``"zoh" | "bilinear"``.
        chunk: Vandermonde chunk length (None: automatic).

    Returns:
        K: (M, H, L) real.
    """
    check_diag_system(Lambda, B, C, dt)
    check_positive_int(L, "L")
    if chunk is not None:
        check_positive_int(chunk, "chunk")
    logA, Bbar = discretize_diag(Lambda, B, dt, method)  # (H, N2) each
    v = (C * Bbar).transpose(0, 1)  # (H, M, N2)
    K = vandermonde(v, logA, L, chunk=chunk)  # (H, M, L)
    return 2.0 * K.real.transpose(0, 1)  # (M, H, L)
