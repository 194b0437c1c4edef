"""HiPPO transition matrices (A, B) and their low-rank corrections.

Sources: Gu, Dao, Ermon, Rudra, Ré, "HiPPO: Recurrent Memory with Optimal Polynomial
Projections" (NeurIPS 2020), and the S4 paper (Gu, Goel, Ré, ICLR 2022), whose sign
convention is used: the continuous system is x'(t) = A x(t) + B u(t) with A stable.
The matrices match the official state-spaces/s4 code (models/s4/s4.py ``transition``
and ``rank_correction``; ``lagt`` as src/models/hippo/hippo.py ``transition('lagt')``
with beta = 1).
"""

from __future__ import annotations

import math

import torch

from structmat._checks import check_choice, check_positive_int, fail

__all__ = ["MEASURES", "hippo", "rank_correction"]

MEASURES = ("legs", "legt", "lagt", "fout")


def hippo(
    measure: str, N: int, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """HiPPO transition matrices in the S4 sign convention.

    - ``legs`` (scaled Legendre, HiPPO eq. 29 / S4 eq. 2):
      A[n, k] = -sqrt(2n+1) sqrt(2k+1) for n > k, -(n+1) for n = k, 0 above;
      B[n] = sqrt(2n+1).
    - ``legt`` (translated Legendre, halved for timescale as in the official code):
      A[n, k] = -(1/2) sqrt(2n+1) sqrt(2k+1) * (1 if n >= k else (-1)^(n-k));
      B[n] = (1/2) sqrt(2n+1).
    - ``lagt`` (translated Laguerre): A = I/2 - tril(ones), B = ones.
    - ``fout`` (translated Fourier): cos/sin pairs at indices (2f, 2f+1) with
      A[2f+1, 2f] = pi f, A[2f, 2f+1] = -pi f, minus the endpoint term B Bᵀ, where
      B = (1, 0, sqrt2, 0, sqrt2, 0, ...).

    Args:
        measure: one of ``"legs" | "legt" | "lagt" | "fout"``.
        N: state size (``fout`` needs N even).
        dtype: real floating dtype of the result.

    Returns:
        (A, B): A (N, N), B (N,).

    Raises:
        ValueError: unknown measure, N not a positive integer, odd N for ``fout``.
    """
    check_choice(measure, "measure", MEASURES)
    check_positive_int(N, "N")
    q = torch.arange(N, dtype=torch.float64)
    r = torch.sqrt(2 * q + 1)  # (N,)
    n_idx = q[:, None]  # row index n
    k_idx = q[None, :]  # column index k
    if measure == "legs":
        A = -r[:, None] * r[None, :]  # (N, N)
        A = torch.tril(A, diagonal=-1) - torch.diag(q + 1)
        B = r.clone()
    elif measure == "legt":
        parity = torch.where(
            n_idx >= k_idx, torch.ones(()), torch.pow(-1.0, (n_idx - k_idx).abs())
        )  # (N, N)
        A = -0.5 * r[:, None] * parity * r[None, :]
        B = 0.5 * r
    elif measure == "lagt":
        A = 0.5 * torch.eye(N, dtype=torch.float64) - torch.tril(
            torch.ones(N, N, dtype=torch.float64)
        )
        B = torch.ones(N, dtype=torch.float64)
    else:  # fout
        if N % 2:
            raise fail("N", "an even state size for measure 'fout' (cos/sin pairs)", repr(N))
        B = _fout_b(N)
        A = torch.zeros(N, N, dtype=torch.float64)
        for f in range(1, N // 2):
            A[2 * f + 1, 2 * f] = math.pi * f
            A[2 * f, 2 * f + 1] = -math.pi * f
        A = A - B[:, None] * B[None, :]
    return A.to(dtype), B.to(dtype)


def _fout_b(N: int) -> torch.Tensor:
    """(1, 0, sqrt2, 0, sqrt2, 0, ...): the FouT input vector, (N,)."""
    B = torch.zeros(N, dtype=torch.float64)
    B[0::2] = math.sqrt(2.0)
    B[0] = 1.0
    return B


def rank_correction(measure: str, N: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Low-rank P (r, N) such that A + Pᵀ P is normal (S4 Sec. 3.2, Thm. 1).

    For every measure here A + PᵀP = S + c I with S skew-symmetric:
    ``legs`` P = sqrt(n + 1/2) (r = 1, c = -1/2); ``legt`` splits sqrt(n + 1/2) by
    parity into two rows (r = 2, c = 0); ``lagt`` P = sqrt(1/2) (r = 1, c = 0);
    ``fout`` P = B (r = 1, c = 0).

    Args:
        measure: one of ``"legs" | "legt" | "lagt" | "fout"``.
        N: state size.
        dtype: real floating dtype of the result.

    Returns:
        P: (r, N).
    """
    check_choice(measure, "measure", MEASURES)
    check_positive_int(N, "N")
    q = torch.arange(N, dtype=torch.float64)
    if measure == "legs":
        P = torch.sqrt(q + 0.5)[None, :]  # (1, N)
    elif measure == "legt":
        p = torch.sqrt(q + 0.5)  # (N,)
        odd = torch.where(q % 2 == 1, p, torch.zeros(()))
        even = torch.where(q % 2 == 0, p, torch.zeros(()))
        P = torch.stack([odd, even])  # (2, N)
    elif measure == "lagt":
        P = torch.full((1, N), math.sqrt(0.5), dtype=torch.float64)
    else:  # fout
        if N % 2:
            raise fail("N", "an even state size for measure 'fout' (cos/sin pairs)", repr(N))
        P = _fout_b(N)[None, :]  # (1, N)
    return P.to(dtype)
