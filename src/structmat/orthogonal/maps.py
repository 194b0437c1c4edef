"""Orthogonal maps taking a unit vector a to a unit vector b, in any dimension.

MATHS.md, "Orthogonal map a → b". Inputs are normalised first, so the maps take
``a/‖a‖`` to ``b/‖b‖``. The ``reflect``/``rotate`` functions apply the map to
vectors in O(d) from a, b and x alone; ``reflection``/``rotation`` form the
(..., d, d) matrix by applying the same code to the identity, so the two can
never disagree.

- Reflection (Householder): ``T = I - 2 v vᵀ / ‖v‖²``, ``v = a - b``; det -1, and the
  identity (det +1) when a = b. It is discontinuous at a = b and maps a to b only
  within about eps/‖a - b‖ in floating point, so within sqrt(eps) of a = b it is
  the identity (worst-case error sqrt(eps) ≈ 1.5e-8 in float64, 3e-4 in float32).
  The rotation has no such limit: it is smooth at a = b and exact to rounding.
- Rotation in span{a, b}, identity on its orthogonal complement; det +1. With
  ``c = aᵀb`` and ``w'' = b - c a`` (the part of b orthogonal to a):
  ``T = I + (c - 1) a aᵀ - w'' w''ᵀ / (1 + c) + w'' aᵀ - a w''ᵀ``
  (= I + K + K²/(1 + c), K = b aᵀ - a bᵀ), smooth wherever c > -1, so gradients
  are exact at a = b. Near a = -b the 1/(1 + c) form loses accuracy, so for c < 0
  the same map is written with the unit vector ``w = w''/s``, ``s = ‖w''‖`` = sin θ:
  ``T = I + (c - 1)(a aᵀ + w wᵀ) + s (w aᵀ - a wᵀ)``. When a = -b (s below a few
  ulps) the plane is spanned by a and a canonical direction, the coordinate axis
  where a is smallest orthogonalised against a, giving a rotation by π.

Both maps are the identity plus a rank-1 or rank-2 term, ``I + Uᵀ M U`` with U
(k, d) and M (k, k), so applying one costs two thin products per vector.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from structmat._checks import (
    as_tensor,
    check_finite,
    check_ndim,
    check_nonzero,
    check_same_last_dim,
    fail,
)
from structmat._numerics import safe_sqrt

__all__ = ["reflect", "reflection", "rotate", "rotation"]


def _dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Batched inner product over the last dim, kept: (..., d) x (..., d) -> (..., 1)."""
    return (x * y).sum(dim=-1, keepdim=True)


def _prepare(a: Any, b: Any, *x: Any) -> tuple[torch.Tensor, ...]:
    """Validate; return unit a, unit b (and x, when given) in one floating dtype."""
    # x comes as *x, not x=None: an x of None passed by the user is an error to report
    ta, tb = as_tensor(a, "a"), as_tensor(b, "b")
    tensors = [ta, tb] + [as_tensor(t, "x") for t in x]
    # Promote among the floating inputs; integer inputs take that dtype (or the default).
    floats = [t.dtype for t in tensors if t.is_floating_point()]
    dtype = functools.reduce(torch.promote_types, floats) if floats else torch.get_default_dtype()
    names = ["a", "b", "x"]
    out = []
    for name, t in zip(names, tensors, strict=False):
        if t.is_complex():
            raise fail(name, "a real tensor (..., d)", f"complex dtype {t.dtype}")
        t = t.to(dtype)
        check_ndim(t, name, 1, "(..., d)", at_least=True)
        check_finite(t, name)
        out.append(t)
    d = out[0].shape[-1]
    if d < 2:
        raise fail(
            "a", "vectors of dimension d >= 2, shape (..., d)", f"shape {tuple(out[0].shape)}"
        )
    for name, t in zip(names[1:], out[1:], strict=False):
        check_same_last_dim(t, name, d, "a")
    check_nonzero(out[0], "a")
    check_nonzero(out[1], "b")
    out[0] = out[0] / torch.linalg.vector_norm(out[0], dim=-1, keepdim=True)
    out[1] = out[1] / torch.linalg.vector_norm(out[1], dim=-1, keepdim=True)
    out[0], out[1] = torch.broadcast_tensors(out[0], out[1])  # one map per (a, b) pair
    return tuple(out)


def _low_rank_apply(basis: torch.Tensor, coef: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``x + basisᵀ · coef · basis · x``: the identity plus a rank-k term, in O(k·d).

    Args:
        basis: (..., k, d) vectors spanning the part of space the map moves.
        coef: (..., k, k) the map minus the identity, in those coordinates.
        x: (..., d), broadcast against the leading dims of basis.
    """
    if basis.ndim == 2:
        # One map for every x: two thin matmuls, O(k·d) per vector.
        flat = x.reshape(-1, x.shape[-1])  # (n, d)
        moved = (flat @ basis.T) @ coef.T  # (n, k)
        return torch.addmm(flat, moved, basis).reshape(x.shape)
    # A map per vector: elementwise products and sums (batched matmuls of
    # k×d by d×1 would be far slower).
    coords = (basis * x.unsqueeze(-2)).sum(dim=-1)  # (..., k)
    moved = (coef * coords.unsqueeze(-2)).sum(dim=-1)  # (..., k)
    return x + (moved.unsqueeze(-1) * basis).sum(dim=-2)  # (..., d)


def _reflect_unit(u: torch.Tensor, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Householder map taking unit u to unit v, applied to x (..., d)."""
    h = u - v  # (..., d)
    n2 = _dot(h, h)  # (..., 1)
    # Rounding leaves ‖u‖² - ‖v‖² ~ eps, so T u misses v by about eps/‖h‖: the
    # Householder map is ill-conditioned as a → b (and discontinuous at a = b,
    # where it is the identity). Below ‖h‖ = sqrt(eps) the identity is the more
    # accurate answer, so both errors stay under sqrt(eps). The guard on the
    # denominator keeps the unselected branch (and its gradient) finite.
    ok = n2 > torch.finfo(n2.dtype).eps
    coef = torch.where(ok, -2.0 / torch.where(ok, n2, torch.ones_like(n2)), torch.zeros_like(n2))
    return _low_rank_apply(h.unsqueeze(-2), coef.unsqueeze(-1), x)  # rank 1


def _canonical_normal(u: torch.Tensor) -> torch.Tensor:
    """A unit vector orthogonal to unit u (..., d): the axis where |u| is smallest,
    orthogonalised against u twice (classical Gram–Schmidt needs the second pass
    for orthogonality to rounding)."""
    e = torch.nn.functional.one_hot(u.abs().argmin(dim=-1), u.shape[-1]).to(u.dtype)  # (..., d)
    e = e - _dot(u, e) * u
    e = e - _dot(u, e) * u
    return e / torch.linalg.vector_norm(e, dim=-1, keepdim=True)


def _rotate_unit(u: torch.Tensor, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Plane rotation taking unit u to unit v, applied to x (..., d) (module docstring).

    T = I + [u z]ᵀ M [u z] with a 2×2 M, so applying it costs two inner products
    and one rank-2 update per vector.
    """
    c = _dot(u, v)  # (..., 1) cos θ
    w2 = v - c * u
    w2 = w2 - _dot(u, w2) * u  # re-orthogonalise: accuracy when v ≈ ±u
    one = torch.ones_like(c)
    # Form for c >= 0, smooth through a = b, basis (u, w''):
    #   T x - x = u[(c-1)(uᵀx) - w''ᵀx] + w''[uᵀx - w''ᵀx/(1+c)].
    # The denominator guard only matters in the unselected branch, where it keeps
    # the gradient finite.
    near = c >= 0
    den = torch.where(near, 1.0 + c, one)
    m_near = torch.stack([torch.cat([c - 1.0, -one], -1), torch.cat([one, -1.0 / den], -1)], -2)
    # Form for c < 0, accurate near a = -b, basis (u, w) with w = w''/s unit:
    #   T x - x = u[(c-1)(uᵀx) - s wᵀx] + w[s uᵀx + (c-1) wᵀx].
    s = safe_sqrt(_dot(w2, w2))  # (..., 1) sin θ
    # Below a few ulps w'' is rounding noise (a = -b up to rounding): its direction
    # means nothing and 1/s would blow up the gradient, so take the canonical plane.
    has_plane = s > 16 * torch.finfo(s.dtype).eps
    w = torch.where(has_plane, w2 / torch.where(has_plane, s, one), _canonical_normal(u))
    m_far = torch.stack([torch.cat([c - 1.0, -s], -1), torch.cat([s, c - 1.0], -1)], -2)
    z = torch.where(near, w2, w)  # (..., d)
    coef = torch.where(near.unsqueeze(-1), m_near, m_far)  # (..., 2, 2)
    return _low_rank_apply(torch.stack([u, z], dim=-2), coef, x)  # rank 2


def _as_matrix(apply: Any, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Matrix of the linear map ``x -> apply(u, v, x)``: columns are images of e_j."""
    d = u.shape[-1]
    eye = torch.eye(d, dtype=u.dtype, device=u.device)  # rows e_j
    images = apply(u.unsqueeze(-2), v.unsqueeze(-2), eye)  # (..., d, d): row j = T e_j
    return images.transpose(-1, -2)


def reflection(a: Any, b: Any) -> torch.Tensor:
    """Householder reflection T with T a/‖a‖ = b/‖b‖.

    Args:
        a, b: (..., d) nonzero vectors, d >= 2, broadcastable leading dims.

    Returns:
        (..., d, d) symmetric orthogonal T (det -1; the identity when a ∥ b, same direction).

    Raises:
        ValueError: zero, non-finite or mismatched vectors.
    """
    u, v = _prepare(a, b)
    return _as_matrix(_reflect_unit, u, v)


def rotation(a: Any, b: Any) -> torch.Tensor:
    """Rotation in the plane of a and b taking a/‖a‖ to b/‖b‖ (det +1).

    Identity on the orthogonal complement of span{a, b}; a rotation by π in a
    canonical plane when a and b point in opposite directions.

    Args:
        a, b: (..., d) nonzero vectors, d >= 2, broadcastable leading dims.

    Returns:
        (..., d, d) orthogonal T.

    Raises:
        ValueError: zero, non-finite or mismatched vectors.
    """
    u, v = _prepare(a, b)
    return _as_matrix(_rotate_unit, u, v)


def reflect(a: Any, b: Any, x: Any) -> torch.Tensor:
    """Apply ``reflection(a, b)`` to x (..., d) in O(d) without forming the matrix.

    Returns:
        (..., d) T x, leading dims broadcast among a, b and x.
    """
    u, v, tx = _prepare(a, b, x)
    return _reflect_unit(u, v, tx)


def rotate(a: Any, b: Any, x: Any) -> torch.Tensor:
    """Apply ``rotation(a, b)`` to x (..., d) in O(d) without forming the matrix.

    Returns:
        (..., d) T x, leading dims broadcast among a, b and x.
    """
    u, v, tx = _prepare(a, b, x)
    return _rotate_unit(u, v, tx)
