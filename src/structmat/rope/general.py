"""General RoPE ``R(n) = expm(n B)`` and its reduction to standard RoPE.

Su (kexue.fm/archives/8397, 9403): a position embedding ``R(n)`` with
``R(m)^T R(n) = R(n - m)`` generated as ``expm(n B)`` has ``B`` skew-symmetric.
A real skew-symmetric matrix has a real Schur form
``B = P blockdiag(theta_i J) P^T``, ``J = [[0, -1], [1, 0]]``, ``P`` orthogonal, so

    expm(n B) = P blockdiag(rot(n theta_i)) P^T,

standard RoPE in the basis ``P``. Scores ``q^T expm((n - m) B) k`` equal
``(P^T q)^T R^std_{n-m} (P^T k)``: ``P^T`` is absorbed into ``W_q`` and ``W_k``
(:func:`absorb_generator`). Commuting generators ``B_1 .. B_k`` (N-D positions)
share one ``P``, with per-generator ``theta``: every commuting N-D RoPE is RoPE-Mixed
(:func:`structmat.rope.apply_rotary_2d`, ``mode="mixed"``) up to an orthogonal change
of basis. (Under linear attention ``P`` sits after the feature map and cannot be
absorbed.)

``P``'s columns come in pairs ``(p_2i, p_2i+1)`` spanning the plane of frequency
``theta_i``: block ``i`` acts on channels ``(2i, 2i+1)``, the ``interleaved`` layout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from structmat._checks import as_tensor, check_choice, check_floating, fail, shape_str
from structmat.rope.rotary import layout_permutation
from structmat.rope.rotation import LAYOUTS

__all__ = ["absorb_generator", "blockdiag_rotation", "general_rotary", "to_standard"]


def _skew_tol(dtype: torch.dtype) -> float:
    return 1e-10 if dtype == torch.float64 else 1e-5


def _generators(generator: Any, name: str = "generator") -> tuple[torch.Tensor, bool]:
    """Validate one (D, D) or several (k, D, D) / list of (D, D) generators.

    Returns:
        ((k, D, D) tensor, whether a single generator was given).
    """
    if isinstance(generator, Sequence) and not isinstance(generator, torch.Tensor):
        mats = [as_tensor(g, f"{name}[{i}]") for i, g in enumerate(generator)]
        if not mats:
            raise fail(name, "at least one (D, D) generator", "an empty sequence")
        for i, g in enumerate(mats):
            if g.shape != mats[0].shape or g.ndim != 2:
                raise fail(
                    f"{name}[{i}]",
                    f"shape {shape_str(mats[0].shape)} like {name}[0]",
                    f"shape {shape_str(g.shape)}",
                )
        B = torch.stack(mats)  # (k, D, D)
        single = False
    else:
        B = as_tensor(generator, name)
        single = B.ndim == 2
        if single:
            B = B.unsqueeze(0)  # (1, D, D)
    if B.ndim != 3 or B.shape[-1] != B.shape[-2] or B.shape[-1] < 1:
        raise fail(name, "a square (D, D) matrix or (k, D, D) stack", f"shape {shape_str(B.shape)}")
    check_floating(B, name)
    if not bool(torch.isfinite(B).all()):
        raise fail(name, "finite values", "NaN or infinite entries")
    scale = B.abs().amax().clamp(min=torch.finfo(B.dtype).tiny)
    asym = float((B + B.transpose(-1, -2)).abs().amax() / scale)
    if asym > _skew_tol(B.dtype):
        raise fail(name, "skew-symmetric matrices (B^T = -B)", f"relative |B + B^T| = {asym:.2e}")
    k = B.shape[0]
    for i in range(k):
        for j in range(i + 1, k):
            comm = B[i] @ B[j] - B[j] @ B[i]
            rel = float(
                comm.abs().amax() / (B[i].abs().amax() * B[j].abs().amax()).clamp(min=1e-300)
            )
            if rel > _skew_tol(B.dtype) * B.shape[-1]:
                raise fail(
                    name,
                    f"commuting generators ({name}[{i}] {name}[{j}] = {name}[{j}] {name}[{i}])",
                    f"relative commutator {rel:.2e}",
                )
    return B, single


def general_rotary(generator: Any, positions: Any) -> torch.Tensor:
    """R(n) = expm(sum_j n_j B_j) for every position.

    Args:
        generator: (D, D) skew-symmetric B, or k commuting ones as (k, D, D) or a list.
        positions: (L,) for one generator, (L, k) for k generators.

    Returns:
        (L, D, D) orthogonal matrices, the generator's dtype.

    Raises:
        ValueError: a non-skew-symmetric or non-commuting generator, wrong positions shape.
    """
    B, single = _generators(generator)
    k = B.shape[0]
    pos = as_tensor(positions, "positions")
    if pos.is_complex():
        raise fail("positions", "real positions", f"dtype {pos.dtype}")
    pos = pos.to(B.dtype)
    if single and pos.ndim == 1:
        pos = pos.unsqueeze(-1)  # (L, 1)
    if pos.ndim != 2 or pos.shape[1] != k:
        want = "(L,)" if single else f"(L, k) = (L, {k})"
        raise fail("positions", f"shape {want}", f"shape {shape_str(pos.shape)}")
    gen = torch.einsum("lk,kij->lij", pos, B)  # (L, D, D)
    return torch.linalg.matrix_exp(gen)  # (L, D, D)


def blockdiag_rotation(angles: torch.Tensor) -> torch.Tensor:
    """blockdiag(rot(a_i)) with rot(a) = [[cos a, -sin a], [sin a, cos a]].

    Args:
        angles: (..., P).

    Returns:
        (..., 2P, 2P), blocks on channels (2i, 2i+1) (interleaved layout).
    """
    angles = as_tensor(angles, "angles")
    check_floating(angles, "angles")
    if angles.ndim < 1:
        raise fail("angles", "shape (..., P)", f"shape {shape_str(angles.shape)}")
    P = angles.shape[-1]
    c, s = angles.cos(), angles.sin()
    out = angles.new_zeros(*angles.shape[:-1], 2 * P, 2 * P)
    i = torch.arange(P, device=angles.device)
    out[..., 2 * i, 2 * i] = c
    out[..., 2 * i + 1, 2 * i + 1] = c
    out[..., 2 * i, 2 * i + 1] = -s
    out[..., 2 * i + 1, 2 * i] = s
    return out


def _planes(B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Real Schur form of one skew-symmetric B (D, D), D even.

    ``iB`` is Hermitian; for an eigenpair ``iB v = lam v`` with ``lam > 0`` and
    ``v = u + i w``: ``B u = lam w``, ``B w = -lam u``, and ``|u| = |w| = 1/sqrt(2)``,
    ``u . w = 0`` (v is orthogonal to its conjugate, eigenvalue ``-lam``). Distinct
    eigenvectors of ``iB`` (orthonormal even for a repeated ``lam``) give
    orthonormal planes. The kernel of B (zero frequencies) is completed with an
    orthonormal basis of the orthogonal complement, paired with ``theta = 0``.

    Returns:
        (P (D, D) orthogonal, theta (D/2,) >= 0, largest first).
    """
    D = B.shape[-1]
    work = torch.float64
    Bw = B.to(work)
    lam, V = torch.linalg.eigh(1j * Bw.to(torch.complex128))  # ascending (D,), (D, D)
    tol = D * torch.finfo(work).eps * max(float(lam.abs().max()), 1.0) * 16
    keep = lam > tol
    lam_pos, V_pos = lam[keep].flip(0), V[:, keep].flip(1)  # largest frequency first
    p = lam_pos.shape[0]
    cols = torch.stack([V_pos.real, V_pos.imag], dim=-1).reshape(D, 2 * p) * 2**0.5  # (D, 2p)
    if 2 * p < D:
        # Zero frequencies: an orthonormal basis of the complement of the planes.
        proj = torch.eye(D, dtype=work) - cols @ cols.T
        U, _, _ = torch.linalg.svd(proj)
        cols = torch.cat([cols, U[:, : D - 2 * p]], dim=1)  # (D, D)
    theta = torch.cat([lam_pos, lam_pos.new_zeros((D - 2 * p) // 2)])  # (D/2,)
    return cols.to(B.dtype), theta.to(B.dtype)


def to_standard(generator: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthogonal P and frequencies theta with expm(n B) = P blockdiag(rot(n theta_i)) P^T.

    Handles repeated and zero frequencies. For several commuting generators one P
    block-diagonalises all of them, each with its own theta (signed).

    Args:
        generator: (D, D) skew-symmetric B, or k commuting ones as (k, D, D) or a list;
            D even.

    Returns:
        (P, theta): P (D, D) orthogonal (blocks on channels (2i, 2i+1)); theta (D/2,)
        for one generator (>= 0, largest first), (k, D/2) for k generators.

    Raises:
        ValueError: non-skew-symmetric or non-commuting generators, odd D.
    """
    B, single = _generators(generator)
    D = B.shape[-1]
    if D % 2:
        raise fail("generator", "an even size D (rotary pairs)", f"shape {shape_str(B.shape[-2:])}")
    if single:
        P, theta = _planes(B[0])
        return P, theta
    # A generic combination sum_j c_j B_j has the planes of all B_j as its
    # eigenplanes (commuting normal matrices share eigenvectors); check, and retry
    # with other coefficients if two joint frequencies happened to collide.
    gen = torch.Generator().manual_seed(0)
    Bd = B.to(torch.float64)
    norm = float(Bd.abs().amax())
    for _ in range(8):
        c = torch.randn(B.shape[0], generator=gen, dtype=torch.float64)
        P, _ = _planes(torch.einsum("k,kij->ij", c, Bd))
        blocks = P.T @ Bd @ P  # (k, D, D)
        idx = torch.arange(D // 2)
        theta = blocks[:, 2 * idx + 1, 2 * idx]  # (k, D/2) lower-left of each block
        rebuilt = torch.stack([_block_generator(t) for t in theta])  # (k, D, D)
        if float((blocks - rebuilt).abs().amax()) <= 1e-8 * max(norm, 1e-300) * D:
            return P.to(B.dtype), theta.to(B.dtype)
    raise fail(
        "generator",
        "generators with a common real Schur basis",
        "no common block-diagonal form found",
    )


def _block_generator(theta: torch.Tensor) -> torch.Tensor:
    """blockdiag(theta_i J): (D/2,) -> (D, D)."""
    P = theta.shape[-1]
    out = theta.new_zeros(2 * P, 2 * P)
    i = torch.arange(P)
    out[2 * i + 1, 2 * i] = theta
    out[2 * i, 2 * i + 1] = -theta
    return out


def absorb_generator(
    w_q: Any, w_k: Any, generator: Any, layout: str = "interleaved"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rewrite a general-RoPE attention layer as standard RoPE with new q/k weights.

    With ``to_standard(B) = (P, theta)``: ``W_q' = P^T W_q`` and ``W_k' = P^T W_k`` per
    head (rows permuted further for the ``half`` layout), so that
    ``(expm(m B) W_q x)^T (expm(n B) W_k y) = (R^std_m W_q' x)^T (R^std_n W_k' y)``
    for all positions (MATHS.md, "Completeness").

    Args:
        w_q: (H * D, d_in) query weight (an ``nn.Linear`` weight; H heads of D
            channels each share the generator), or a (H * D,) bias.
        w_k: key weight, same layout.
        generator: (D, D) skew-symmetric, or k commuting ones (N-D positions).
        layout: pair layout of the standard RoPE to use afterwards.

    Returns:
        (w_q', w_k', theta): weights of the inputs' shapes; theta (D/2,) (one
        generator: use ``apply_rotary`` with these frequencies) or (k, D/2)
        (``theta.T`` is the ``freqs`` of ``apply_rotary_2d(mode="mixed")`` for k = 2).
    """
    check_choice(layout, "layout", LAYOUTS)
    P, theta = to_standard(generator)
    D = P.shape[0]
    Pt = P.T
    if layout == "half":
        Pt = Pt[layout_permutation(D, "interleaved", "half")]  # rows in half order
    out = []
    for name, w in (("w_q", w_q), ("w_k", w_k)):
        t = as_tensor(w, name)
        if t.is_complex() or t.dtype == torch.bool:
            raise fail(name, "a real weight", f"dtype {t.dtype}")
        if t.ndim < 1 or t.shape[0] % D:
            raise fail(
                name,
                f"shape (H * D, ...) with D = {D} from generator",
                f"shape {shape_str(t.shape)}",
            )
        rest = t[0].numel() if t.shape[0] else math.prod(t.shape[1:])  # explicit: 0 rows
        heads = t.reshape(t.shape[0] // D, D, rest).to(P.dtype)  # (H, D, rest)
        out.append((Pt @ heads).reshape(t.shape).to(t.dtype))
    return out[0], out[1], theta
