"""Nyström attention (Xiong et al., "Nyströmformer", AAAI 2021; kexue.fm/archives/8180).

softmax(Q Kᵀ) V ≈ softmax(Q K̃ᵀ) · softmax(Q̃ K̃ᵀ)⁺ · softmax(Q̃ Kᵀ) V   (paper eq. 14)

with Q̃, K̃ (m, D) the means of m contiguous segments of Q and K (landmarks). The three
kernels are (L, m), (m, m) and (m, L): time and memory O(L·m·D). The pseudo-inverse is
the Newton–Schulz iteration of the paper (eq. 16) or ``torch.linalg.pinv``.

Differences from the official code, on purpose:
- the iteration's starting scale 1/(‖A‖₁‖A‖∞) is taken per matrix, not as a max over the
  whole batch and all heads (which starts most matrices too small, so six iterations leave
  them far from the pseudo-inverse);
- by default the iteration runs until it has converged (see ``newton_schulz_pinv``);
- any length L works: segments of ⌊L/m⌋ or ⌈L/m⌉ tokens, none dropped, no padding;
- a padding mask removes padded tokens from the landmarks and from every kernel, so the
  outputs at kept positions do not depend on what the padded positions hold (they equal
  the result on the sequence with the padding cut out).
The two (L, m) kernels are never materialised: softmax(Q̃ Kᵀ) V and softmax(Q K̃ᵀ) W are
fused ``scaled_dot_product_attention`` calls.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from structmat._checks import (
    check_choice,
    check_finite,
    check_number,
    check_positive_int,
    check_tensor,
    fail,
)
from structmat.attention._validate import check_mask, check_qkv, check_scale, compute_dtype

__all__ = [
    "PINV_METHODS",
    "landmark_side",
    "landmarks",
    "newton_schulz_pinv",
    "newton_schulz_pinv_info",
    "nystrom_attention",
    "query_side",
]

# Default stopping threshold on ‖AZA - A‖/‖A‖. Measured on (m=64, L=4096, D=64) kernels:
# six steps leave 1.6e-2 to 3.8e-2; stopping at 1e-3 takes 12-13 steps and cuts the
# output error on structured (smooth) inputs from 0.033 to 0.001, while on unstructured
# random inputs a fully converged pseudo-inverse (tol ~ eps) amplifies the kernel's
# noise directions (cond ~1e5-1e12) and doubles the error; 1e-3 keeps it at the 6-step level.
DEFAULT_TOL = 1e-3

PINV_METHODS = ("newton", "exact")


def _segment_ids(
    length: int, m: int, mask: torch.Tensor | None, device: torch.device
) -> torch.Tensor:
    """Segment of each token: ⌊rank·m / n⌋ with rank its place among the n kept tokens.

    Returns (1, L) without a mask, else (B, L); padded tokens get the dummy segment m.
    """
    if mask is None:
        pos = torch.arange(length, device=device)
        return (pos * m // length).unsqueeze(0)  # (1, L)
    rank = mask.long().cumsum(dim=1) - 1  # (B, L) place among the kept tokens
    n = mask.sum(dim=1, keepdim=True).clamp(min=1)  # (B, 1)
    seg = rank * m // n  # (B, L)
    return seg.masked_fill(~mask, m)


def landmarks(
    x: torch.Tensor, num_landmarks: int, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Segment means of x (Xiong et al. 2021, §3.2): m segments of ⌊n/m⌋ or ⌈n/m⌉ tokens.

    Token of rank r among the n kept tokens belongs to segment ⌊r·m/n⌋; with L divisible by
    m and no mask these are the usual equal segments. No token is dropped.

    Args:
        x: (B, H, L, D).
        num_landmarks: m.
        mask: (B, L) bool, True = keep; padded tokens take no part.

    Returns:
        means (B, H, m, D) (0 for an empty segment) and valid (B, m) bool (segment not
        empty: false only when fewer than m tokens are kept).
    """
    check_tensor(x, "x", "(B, H, L, D)", 4, kind="float")
    b, h, length, d = x.shape
    check_positive_int(num_landmarks, "num_landmarks")
    mask = check_mask(mask, b, length)
    m = num_landmarks
    if mask is None and length % m == 0:
        means = x.reshape(b, h, m, length // m, d).mean(dim=-2)  # (B, H, m, D)
        return means, torch.ones(b, m, dtype=torch.bool, device=x.device)
    seg = _segment_ids(length, m, mask, x.device)  # (1 or B, L)
    bs = seg.shape[0]
    # Sum each segment with one scatter-add; segment m collects padded tokens and is dropped.
    idx = seg[:, None, :, None].expand(b, h, length, d)  # (B, H, L, D)
    sums = x.new_zeros(b, h, m + 1, d).scatter_add_(2, idx, x)[:, :, :m]  # (B, H, m, D)
    counts = torch.zeros(bs, m + 1, dtype=x.dtype, device=x.device)
    counts = counts.scatter_add_(1, seg, torch.ones_like(seg, dtype=x.dtype))[:, :m]  # (B', m)
    means = sums / counts.clamp(min=1)[:, None, :, None]
    valid = (counts > 0).expand(b, m)  # (B, m)
    return means, valid


def newton_schulz_pinv(
    a: torch.Tensor,
    iterations: int | None = None,
    tol: float | None = None,
    max_iterations: int = 60,
) -> torch.Tensor:
    """Moore–Penrose pseudo-inverse by the iteration of Nyströmformer (Xiong et al. 2021, eq. 16).

    Z₀ = Aᵀ / (‖A‖₁ ‖A‖∞) for each matrix (so every singular value of A Z₀ lies in (0, 1]),
    Z_{k+1} = ¼ Z_k (13I - A Z_k (15I - A Z_k (7I - A Z_k))).

    On a singular value, x = σ² (A Z) maps to x' with 1 - x' = (1 - x)³ (4 - x) / 4:
    cubic convergence once x is near 1, but a small x only grows 3.25-fold per step, so
    the steps needed grow with log(cond(A)). Six steps (the paper's) leave ‖AZA - A‖/‖A‖
    around 3e-2 on softmax kernels of real inputs. With ``iterations=None`` the iteration
    stops when that residual is below ``tol`` (default 1e-3, about 12 steps) or stops
    decreasing (rounding floor). A residual measured in ‖·‖_F weights each singular value
    by σ, so directions with σ/‖A‖ below ``tol`` stay partly inverted: a regularised
    pseudo-inverse, which is what an ill-conditioned kernel needs.

    Args:
        a: (..., m, n) real matrices.
        iterations: a fixed number of steps (graph-friendly), or None to iterate to
            convergence.
        tol: stopping threshold on ‖AZA - A‖_F / ‖A‖_F (default 1e-3), for each matrix
            of the batch on its own.
        max_iterations: cap for ``iterations=None``.

    Returns:
        (..., n, m) approximately pinv(a).

    Raises:
        ValueError: ``a`` not at least 2-D floating, or a bad count.
    """
    if not isinstance(a, torch.Tensor) or a.ndim < 2 or not a.is_floating_point():
        got = f"shape {tuple(a.shape)}" if isinstance(a, torch.Tensor) else type(a).__name__
        raise fail("a", "a floating tensor (..., m, n)", got)
    # NaN would make the convergence test meaningless (it never converges, never diverges)
    check_finite(a, "a")
    if iterations is not None:
        check_positive_int(iterations, "iterations", minimum=0)
    if tol is not None:
        check_number(tol, "tol", 0.0, low_open=True)
    check_positive_int(max_iterations, "max_iterations")
    if a.shape[-1] == 0 or a.shape[-2] == 0:  # pinv of an empty (m, n) matrix: empty (n, m)
        return a.new_zeros(*a.shape[:-2], a.shape[-1], a.shape[-2])
    return newton_schulz_pinv_info(a, iterations, tol, max_iterations)[0]


def newton_schulz_pinv_info(
    a: torch.Tensor,
    iterations: int | None = None,
    tol: float | None = None,
    max_iterations: int = 60,
) -> tuple[torch.Tensor, int, float]:
    """``newton_schulz_pinv`` without checks, also returning (steps taken, final residual).

    Steps and residual ‖AZA - A‖_F / ‖A‖_F are the largest over the batch (the residual is
    NaN when ``iterations`` is given, as it is then not computed).
    """
    eye = torch.eye(a.shape[-2], dtype=a.dtype, device=a.device)  # (m, m)
    # Per-matrix scale: ‖A‖₁ = max column sum, ‖A‖∞ = max row sum; σ_max² <= ‖A‖₁‖A‖∞.
    norm1 = a.abs().sum(dim=-2).amax(dim=-1)  # (...,)
    norm_inf = a.abs().sum(dim=-1).amax(dim=-1)  # (...,)
    scale = 1.0 / (norm1 * norm_inf).clamp(min=torch.finfo(a.dtype).tiny)
    z = a.transpose(-1, -2) * scale[..., None, None]  # (..., n, m)

    def step(z: torch.Tensor, az: torch.Tensor) -> torch.Tensor:
        inner = az @ (7 * eye - az)
        inner = az @ (15 * eye - inner)
        return 0.25 * (z @ (13 * eye - inner))

    if iterations is not None:
        for _ in range(iterations):
            z = step(z, a @ z)
        return z, iterations, math.nan
    if tol is None:
        tol = DEFAULT_TOL
    a_norm = torch.linalg.matrix_norm(a).clamp(min=torch.finfo(a.dtype).tiny)  # (...,)
    # Each matrix stops on its own, so a sequence's result does not depend on its batch.
    done = torch.zeros(a.shape[:-2], dtype=torch.bool, device=a.device)  # (...,)
    prev_res = torch.full(a.shape[:-2], math.inf, dtype=a.dtype, device=a.device)
    prev_z = z
    steps = torch.zeros(a.shape[:-2], dtype=torch.long, device=a.device)
    for it in range(max_iterations + 1):
        az = a @ z  # (..., m, m)
        res = (torch.linalg.matrix_norm(az @ a - a) / a_norm).detach()  # (...,)
        # Rounding floor reached (no more decrease): the previous iterate was as good.
        floor = ~done & (res >= prev_res)
        if bool(floor.any()):
            z = torch.where(floor[..., None, None], prev_z, z)
            res = torch.where(floor, prev_res, res)
            steps = torch.where(floor, steps - 1, steps)
        done = done | floor | (res <= tol)
        if it == max_iterations or bool(done.all()):
            break
        new_z = step(z, az)
        prev_z, prev_res = z, torch.where(done, prev_res, res)
        # Matrices already done keep their iterate (skip the select while none is).
        z = torch.where(done[..., None, None], z, new_z) if bool(done.any()) else new_z
        steps = steps + (~done).long()
    worst = float(res.max()) if res.numel() else 0.0
    return z, int(steps.max()) if steps.numel() else 0, worst


def nystrom_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    num_landmarks: int = 64,
    pinv: str = "newton",
    pinv_iterations: int | None = None,
    mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Nyström approximation of softmax attention (Xiong et al. 2021, eq. 14).

    With ``num_landmarks >= L`` every token is its own landmark and, with the exact
    pseudo-inverse, the result equals softmax attention (F F⁺ F = F).

    Args:
        q: (B, H, L, D) queries.
        k: (B, H, L, D) keys.
        v: (B, H, L, Dv) values.
        num_landmarks: m, the number of segment-mean landmarks.
        pinv: ``"newton"`` (Newton–Schulz iteration) or ``"exact"`` (``torch.linalg.pinv``).
        pinv_iterations: Newton–Schulz steps; None iterates until converged.
        mask: (B, L) bool padding mask, True = keep. Padded tokens take no part in the
            landmarks or any kernel; outputs at padded positions are computed but meaningless.
        scale: score scale; default 1/sqrt(D).

    Returns:
        (B, H, L, Dv) in q's dtype; 16-bit inputs are computed in float32.

    Raises:
        ValueError: bad shapes, dtypes, mask or options.
    """
    check_qkv(q, k, v)
    check_positive_int(num_landmarks, "num_landmarks")
    check_choice(pinv, "pinv", PINV_METHODS)
    if pinv_iterations is not None:
        check_positive_int(pinv_iterations, "pinv_iterations")
    if q.shape[2] != k.shape[2]:
        raise fail(
            "q",
            f"length L = {k.shape[2]} (as k; landmarks pair queries and keys)",
            f"L = {q.shape[2]}",
        )
    mask = check_mask(mask, q.shape[0], q.shape[2])
    check_scale(scale)
    return _nystrom(q, k, v, num_landmarks, pinv, pinv_iterations, mask, scale)


def _nystrom(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    num_landmarks: int,
    pinv: str,
    pinv_iterations: int | None,
    mask: torch.Tensor | None,
    scale: float | None,
) -> torch.Tensor:
    """``nystrom_attention`` without the checks (for callers that made them)."""
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    ct = compute_dtype(q.dtype)
    qc, kc, vc = q.to(ct), k.to(ct), v.to(ct)
    q_lm, valid = landmarks(qc, num_landmarks, mask)  # (B, H, m, D), (B, m)
    k_lm, _ = landmarks(kc, num_landmarks, mask)  # (B, H, m, D)
    w, lm_keep = landmark_side(q_lm, k_lm, valid, kc, vc, mask, pinv, pinv_iterations, scale)
    return query_side(qc, k_lm, w, lm_keep, scale).to(q.dtype)  # (B, H, L, Dv)


def landmark_side(
    q_lm: torch.Tensor,
    k_lm: torch.Tensor,
    valid: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    pinv: str,
    pinv_iterations: int | None,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The (m, ·) half of eq. 14: W = softmax(Q̃ K̃ᵀ)⁺ softmax(Q̃ Kᵀ) V.

    After it, K and V are no longer needed (a caller may free K before ``query_side``).

    Args:
        q_lm, k_lm: (B, H, m, D) landmarks; valid: (B, m) non-empty landmarks.
        k: (B, H, L, D); v: (B, H, L, Dv); mask: (B, L) or None.

    Returns:
        W (B, H, m, Dv) and the landmark keep-mask (B, 1, 1, m) or None (all valid).
    """
    # Kernel 3 times V: softmax(Q̃ Kᵀ) V, fused (the (m, L) kernel is never stored).
    key_keep = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, L)
    w = F.scaled_dot_product_attention(q_lm, k, v, attn_mask=key_keep, scale=scale)  # (B,H,m,Dv)

    # Kernel 2: softmax(Q̃ K̃ᵀ) (m, m); empty landmarks (fewer than m kept tokens) become zero
    # rows and columns, whose pseudo-inverse is zero there too, so they drop out exactly.
    s2 = (q_lm @ k_lm.transpose(-1, -2)) * scale  # (B, H, m, m)
    lm_keep = None if bool(valid.all()) else valid[:, None, None, :]  # (B, 1, 1, m)
    if lm_keep is not None:
        s2 = s2.masked_fill(~lm_keep, -math.inf)
    a2 = torch.softmax(s2, dim=-1)
    if lm_keep is not None:
        a2 = a2.masked_fill(~valid[:, None, :, None], 0.0)  # also clears 0/0 rows (NaN)
    if pinv == "exact":
        z = torch.linalg.pinv(a2)
    else:
        z = newton_schulz_pinv(a2, iterations=pinv_iterations)
    return z @ w, lm_keep  # (B, H, m, Dv)


def query_side(
    q: torch.Tensor,
    k_lm: torch.Tensor,
    w: torch.Tensor,
    lm_keep: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    """The (L, m) half of eq. 14: softmax(Q K̃ᵀ) W, fused; q (B, H, L, D) -> (B, H, L, Dv)."""
    return F.scaled_dot_product_attention(q, k_lm, w, attn_mask=lm_keep, scale=scale)
