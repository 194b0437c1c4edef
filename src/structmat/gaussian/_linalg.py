"""Matrix square-root traces for the Gaussian distances, without a complex ``sqrtm``.

The Fréchet / 2-Wasserstein distance needs ``tr (S1^{1/2} S2 S1^{1/2})^{1/2}``.
For any factors ``S1 = F1 F1ᵀ`` and ``S2 = F2 F2ᵀ`` this equals the nuclear norm
(sum of singular values) of ``G = F2ᵀ F1``, since ``GᵀG = F1ᵀ S2 F1`` has the same
nonzero eigenvalues as ``S2 S1`` and as ``S1^{1/2} S2 S1^{1/2}`` (MATHS.md,
"Gaussians"). That turns a non-symmetric ``sqrtm`` into symmetric, real, stable
factorisations.
"""

from __future__ import annotations

from typing import Any

import torch

from structmat._checks import (
    check_finite,
    check_same_last_dim,
    check_square,
    check_symmetric,
    check_tensor,
    fail,
    shape_str,
)
from structmat._numerics import safe_sqrt

__all__ = ["nuclear_norm", "sqrt_factor", "trace_sqrt_product", "trace_sqrt_product_unchecked"]


def sqrt_factor(cov: torch.Tensor, name: str) -> tuple[torch.Tensor, bool]:
    """A factor ``F`` with ``F Fᵀ = cov`` for a symmetric PSD ``cov``.

    Cholesky when every matrix in the batch is positive definite (fast, and ``F``
    is nonsingular); otherwise ``U diag(sqrt(max(λ, 0)))`` from ``eigh``, which also
    handles singular covariances (fewer samples than dimensions).

    Args:
        cov: (..., d, d) symmetric.
        name: argument name for errors.

    Returns:
        ``(F, nonsingular)``: F (..., d, d) and whether it came from Cholesky.

    Raises:
        ValueError: ``cov`` has an eigenvalue clearly below zero (not PSD).
    """
    chol, info = torch.linalg.cholesky_ex(cov)
    if not bool((info != 0).any()):
        return chol, True
    evals, evecs = torch.linalg.eigh(cov)
    ev = evals.detach()
    # Rounding leaves eigenvalues of a singular PSD matrix at about ±d·eps·λmax;
    # anything more negative than that means the input was not PSD.
    d = cov.shape[-1]
    scale = ev.abs().amax(dim=-1, keepdim=True)
    tol = 10 * d * torch.finfo(cov.dtype).eps * scale
    if bool((ev < -tol).any()):
        worst = float((ev / scale.clamp(min=torch.finfo(cov.dtype).tiny)).min())
        raise fail(
            name,
            "a positive semi-definite covariance",
            f"an eigenvalue of {worst:.2e} relative to the largest",
        )
    return evecs * safe_sqrt(evals).unsqueeze(-2), False


def nuclear_norm(g: torch.Tensor, squared_ok: bool) -> torch.Tensor:
    """Sum of singular values of ``g`` (..., m, n).

    When ``squared_ok`` (float64 and a nonsingular ``g``), the singular values
    come from ``eigvalsh(gᵀg)``, about 3x faster than an SVD. Squaring costs
    accuracy only for singular values near ``sqrt(eps)·σmax``: an eigenvalue error
    ``δ ≈ eps·λmax`` (Weyl; taken as 8·eps·λmax) moves ``sqrt(λ)`` by at most
    ``min(sqrt(δ), δ / (2 sqrt(λ)))``. That estimate is summed a posteriori, and when
    it exceeds ``1e-11`` of the result the SVD is used instead. The estimate is
    pessimistic (at condition numbers ~1e12 it says 1e-9 where the measured error is
    2e-16), so the fallback errs on the side of accuracy.
    """
    if squared_ok:
        gram = g.transpose(-1, -2) @ g  # (..., n, n)
        lam = torch.linalg.eigvalsh(0.5 * (gram + gram.transpose(-1, -2)))
        roots = safe_sqrt(lam)
        lam_max = lam.detach().abs().amax(dim=-1, keepdim=True)
        delta = 8 * torch.finfo(g.dtype).eps * lam_max
        err = torch.minimum(delta.sqrt(), delta / (2 * roots.detach()).clamp(min=1e-300))
        total = roots.sum(dim=-1)
        if bool((err.sum(dim=-1) <= 1e-11 * total.detach()).all()):
            return total
    return torch.linalg.svdvals(g).sum(dim=-1)


def trace_sqrt_product(cov1: torch.Tensor, cov2: torch.Tensor) -> torch.Tensor:
    """``tr (S1^{1/2} S2 S1^{1/2})^{1/2}`` for symmetric PSD ``S1, S2`` (..., d, d).

    Equals ``sum(sqrt(eig(S1 S2)))`` and the nuclear norm of ``F2ᵀ F1``.

    Args:
        cov1, cov2: (..., d, d) symmetric PSD, float32 or float64, one dtype,
            broadcastable batch dims.

    Returns:
        (...,) the trace, differentiable.

    Raises:
        ValueError: not such tensors, non-finite or non-symmetric entries, not PSD.
    """
    _check_covariances(cov1, cov2)
    return trace_sqrt_product_unchecked(cov1, cov2)


def _check_covariances(cov1: Any, cov2: Any) -> None:
    for name, c in (("cov1", cov1), ("cov2", cov2)):
        check_tensor(c, name, "(..., d, d)", kind="float")
        # the factorisations (Cholesky, eigh) have no 16-bit CPU kernels
        if c.dtype not in (torch.float32, torch.float64):
            raise fail(name, "dtype float32 or float64", f"dtype {c.dtype}")
        check_square(c, name)
        check_finite(c, name)
        check_symmetric(c, name)
    if cov2.dtype != cov1.dtype:
        raise fail("cov2", f"the dtype of cov1 ({cov1.dtype})", f"dtype {cov2.dtype}")
    check_same_last_dim(cov2, "cov2", cov1.shape[-1], "cov1")
    try:
        torch.broadcast_shapes(cov1.shape[:-2], cov2.shape[:-2])
    except RuntimeError as err:
        wanted = f"batch dims broadcastable with cov1 {shape_str(cov1.shape)}"
        raise fail("cov2", wanted, f"shape {shape_str(cov2.shape)}") from err


def trace_sqrt_product_unchecked(cov1: torch.Tensor, cov2: torch.Tensor) -> torch.Tensor:
    """``trace_sqrt_product`` for inputs the caller has validated (the distances)."""
    f1, ok1 = sqrt_factor(cov1, "cov1")
    f2, ok2 = sqrt_factor(cov2, "cov2")
    g = f2.transpose(-1, -2) @ f1  # (..., d, d)
    return nuclear_norm(g, squared_ok=ok1 and ok2 and g.dtype == torch.float64)
