"""Discretisation of x' = A x + B u with step Δ: bilinear (S4) and ZOH (S4D).

Dense forms (S4 eq. 3; S4D Sec. 2):
    bilinear: Ā = (I - Δ/2 A)⁻¹ (I + Δ/2 A),   B̄ = (I - Δ/2 A)⁻¹ Δ B
    ZOH:      Ā = exp(Δ A),                     B̄ = A⁻¹ (exp(Δ A) - I) B
Diagonal forms work on log Ā, which the Vandermonde kernel takes as input.
"""

from __future__ import annotations

import torch

from structmat._checks import (
    check_choice,
    check_finite,
    check_same_last_dim,
    check_square,
    check_tensor,
)
from structmat.ssm._validate import check_broadcast, check_step_sizes

__all__ = ["DISCRETIZATIONS", "complex_expm1", "discretize_dense", "discretize_diag"]

DISCRETIZATIONS = ("bilinear", "zoh")


def complex_expm1(x: torch.Tensor) -> torch.Tensor:
    """exp(x) - 1 for complex x without cancellation when |x| is small.

    exp(a + ib) - 1 = expm1(a) cos b - 2 sin²(b/2) + i e^a sin b; every term is
    computed to full relative precision (plain exp(x) - 1 loses ~log10(1/|x|) digits,
    e.g. 4 digits of float32 at Δλ = 1e-4).
    """
    a, b = x.real, x.imag
    re = torch.expm1(a) * torch.cos(b) - 2.0 * torch.sin(0.5 * b) ** 2
    im = torch.exp(a) * torch.sin(b)
    return torch.complex(re, im)


def discretize_diag(
    Lambda: torch.Tensor, B: torch.Tensor, dt: torch.Tensor, method: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Discretise a diagonal system; returns (log Ā, B̄).

    Args:
        Lambda: (..., N) complex diagonal of A.
        B: (..., N) complex.
        dt: (...) real step sizes, broadcast over N.
        method: ``"bilinear" | "zoh"``.

    Returns:
        (logA, Bbar): (..., N) each; Ā = exp(logA).
    """
    check_choice(method, "method", DISCRETIZATIONS)
    check_tensor(Lambda, "Lambda", "(..., N)", 1, at_least=True, kind="complex")
    check_tensor(B, "B", "(..., N)", 1, at_least=True, kind="numeric")
    check_same_last_dim(B, "B", Lambda.shape[-1], "Lambda")
    check_broadcast(B, "B", tuple(Lambda.shape), "Lambda")
    check_step_sizes(dt, tuple(Lambda.shape[:-1]), "Lambda")
    mu = Lambda * dt.unsqueeze(-1)  # Δλ, (..., N)
    if method == "zoh":
        # B̄ = (exp(Δλ) - 1)/λ · B, with the cancellation-free expm1
        return mu, complex_expm1(mu) / Lambda * B
    # log((1 + μ/2)/(1 - μ/2)) = 2 atanh(μ/2): accurate when μ is small
    logA = 2.0 * torch.atanh(0.5 * mu)
    return logA, B * dt.unsqueeze(-1) / (1.0 - 0.5 * mu)


def discretize_dense(
    A: torch.Tensor, B: torch.Tensor, dt: torch.Tensor, method: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Discretise a dense system.

    Args:
        A: (..., N, N).
        B: (..., N).
        dt: (...) step sizes.
        method: ``"bilinear" | "zoh"``.

    Returns:
        (Abar, Bbar): (..., N, N) and (..., N).
    """
    check_choice(method, "method", DISCRETIZATIONS)
    check_tensor(A, "A", "(..., N, N)", kind="numeric")
    check_square(A, "A", "(..., N, N)")
    # a solve or matrix exponential of non-finite entries is meaningless (or fails)
    check_finite(A, "A")
    check_tensor(B, "B", "(..., N)", 1, at_least=True, kind="numeric")
    check_same_last_dim(B, "B", A.shape[-1], "A")
    check_broadcast(B, "B", tuple(A.shape[:-1]), "A")
    check_step_sizes(dt, tuple(A.shape[:-2]), "A")
    # one dtype for the solve / matrix exponential (a real A with a complex B is fine)
    dtype = torch.promote_types(torch.promote_types(A.dtype, B.dtype), dt.dtype)
    A, B, dt = A.to(dtype), B.to(dtype), dt.to(dtype)
    N = A.shape[-1]
    eye = torch.eye(N, dtype=A.dtype, device=A.device)
    dtA = dt[..., None, None] * A  # (..., N, N)
    if method == "bilinear":
        lhs = eye - 0.5 * dtA
        Abar = torch.linalg.solve(lhs, eye + 0.5 * dtA)
        Bbar = torch.linalg.solve(lhs, (dt[..., None] * B).unsqueeze(-1)).squeeze(-1)
        return Abar, Bbar
    # ZOH via the exponential of the augmented matrix [[ΔA, ΔB], [0, 0]]: its top-right
    # block is A⁻¹(exp(ΔA) - I)B without inverting A (valid for singular A too).
    aug = torch.zeros(*A.shape[:-2], N + 1, N + 1, dtype=A.dtype, device=A.device)
    aug[..., :N, :N] = dtA
    aug[..., :N, N] = dt[..., None] * B
    E = torch.linalg.matrix_exp(aug)  # (..., N+1, N+1)
    return E[..., :N, :N], E[..., :N, N]
