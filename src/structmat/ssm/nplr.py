"""Normal-plus-low-rank (NPLR) form of the HiPPO matrices (S4, Sec. 3.2 and Thm. 1).

A = V (diag(Λ) - P̃ P̃ᴴ) Vᴴ with V unitary. Since A + PᵀP = S + c I with S real
skew-symmetric, the eigen-decomposition is taken of the Hermitian matrix -i S with
``torch.linalg.eigh`` (stable, orthonormal V even for clustered eigenvalues), and
Λ = c + i·eig(-i S). S is real, so eigenvalues come in pairs ±μ with conjugate
eigenvectors; one of each pair is kept (N/2 complex modes), and the full system is
recovered with Λ_full = (Λ, Λ̄), V_full = (V, V̄), P̃_full = (P̃, P̃̄).
"""

from __future__ import annotations

import math

import torch

from structmat._checks import check_choice, check_positive_int, fail
from structmat.ssm.hippo import MEASURES, hippo, rank_correction

__all__ = ["conj_pair_basis", "full_system", "nplr"]


def conj_pair_basis(S: torch.Tensor, tol: float = 1e-9) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of a real skew-symmetric S, one of each conjugate pair.

    Args:
        S: (N, N) real skew-symmetric, N even, float64.
        tol: eigenvalues with |μ| <= tol·(1 + max|μ|) count as zero.

    Returns:
        (mu, V): mu (N/2,) real >= 0 and V (N, N/2) complex with orthonormal columns,
        such that S = V diag(i mu) Vᴴ + V̄ diag(-i mu) Vᵀ and (V, V̄) is unitary.
    """
    N = S.shape[-1]
    H = -1j * S.to(torch.complex128)  # Hermitian: (-iS)ᴴ = i Sᵀ = -i S
    mu, U = torch.linalg.eigh(H)  # ascending, (N,), (N, N)
    scale = 1.0 + float(mu.abs().max()) if N else 1.0
    zero = mu.abs() <= tol * scale
    pos = mu > tol * scale
    mu_pos, V_pos = mu[pos], U[:, pos]
    n_zero = int(zero.sum())
    if n_zero:
        # Null space of a real skew matrix is spanned by real vectors, but eigh may
        # return any complex basis of it. Take a real orthonormal basis Z of the span
        # (SVD of the real and imaginary parts) and pair columns as (z1 + i z2)/sqrt2,
        # whose conjugates (z1 - i z2)/sqrt2 complete an orthonormal basis.
        Uz = U[:, zero]
        R = torch.cat([Uz.real, Uz.imag], dim=1)  # (N, 2 n_zero)
        Zfull, _, _ = torch.linalg.svd(R, full_matrices=False)
        Z = Zfull[:, :n_zero]  # (N, n_zero), the span is n_zero-dimensional
        Vz = (Z[:, 0::2] + 1j * Z[:, 1::2]) / math.sqrt(2.0)  # (N, n_zero/2)
        V_pos = torch.cat([V_pos, Vz.to(V_pos.dtype)], dim=1)
        mu_pos = torch.cat([mu_pos, torch.zeros(n_zero // 2, dtype=mu.dtype)])
    return mu_pos, V_pos


def nplr(
    measure: str, N: int, dtype: torch.dtype = torch.complex128
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """NPLR form of HiPPO ``measure``: A = V (diag(Λ) - P Pᴴ) Vᴴ, conjugate pairs once.

    With the N/2 kept modes, the full N-state system is
    Λ_full = cat(Λ, Λ̄), P_full = cat(P, P̄, dim=-1), B_full = cat(B, B̄),
    V_full = cat(V, V̄, dim=-1) (unitary), and A = V_full (diag(Λ_full) - P_fullᵀ
    P̄_full) V_fullᴴ exactly (see ``full_system``); B here is Vᴴ B_hippo and P is
    Vᴴ P_hippo (S4 Thm. 1 and Sec. 3.2).

    Args:
        measure: one of ``"legs" | "legt" | "lagt" | "fout"``.
        N: state size, even (conjugate pairs).
        dtype: complex dtype of the results.

    Returns:
        (Lambda, P, B, V): Lambda (N/2,), P (r, N/2), B (N/2,), V (N, N/2), complex.

    Raises:
        ValueError: unknown measure, N not a positive even integer.
    """
    check_choice(measure, "measure", MEASURES)
    check_positive_int(N, "N")
    if N % 2:
        raise fail("N", "an even state size (conjugate pairs of modes)", repr(N))
    if not dtype.is_complex:
        raise fail("dtype", "a complex dtype", str(dtype))
    A, B = hippo(measure, N)  # (N, N), (N,) float64
    P = rank_correction(measure, N)  # (r, N)
    AP = A + P.T @ P  # normal: S + c I
    c = float(torch.diagonal(AP).mean())
    S = 0.5 * (AP - AP.T)  # exact skew part (the symmetric part is c I)
    mu, V = conj_pair_basis(S)  # (N/2,), (N, N/2)
    Lambda = c + 1j * mu.to(torch.complex128)  # (N/2,)
    Vh = V.conj().T  # (N/2, N)
    B_t = Vh @ B.to(torch.complex128)  # (N/2,)
    P_t = (Vh @ P.T.to(torch.complex128)).T  # (r, N/2)
    return Lambda.to(dtype), P_t.to(dtype), B_t.to(dtype), V.to(dtype)


def full_system(
    Lambda: torch.Tensor, P: torch.Tensor, B: torch.Tensor, V: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Unfold the kept half of an NPLR system into the full N-state system.

    Args:
        Lambda: (..., N/2) complex.
        P: (r, ..., N/2) complex.
        B: (..., N/2) complex.
        V: (N, N/2) or None.

    Returns:
        (A, B_full, V_full): A (..., N, N) = diag(Λ_full) - Σ_r P_full P_fullᴴ,
        B_full (..., N), V_full (N, N) or None.
    """
    lam = torch.cat([Lambda, Lambda.conj()], dim=-1)  # (..., N)
    Pf = torch.cat([P, P.conj()], dim=-1)  # (r, ..., N)
    A = torch.diag_embed(lam) - torch.einsum("r...m,r...n->...mn", Pf, Pf.conj())  # (..., N, N)
    Bf = torch.cat([B, B.conj()], dim=-1)  # (..., N)
    Vf = None if V is None else torch.cat([V, V.conj()], dim=-1)  # (N, N)
    return A, Bf, Vf
