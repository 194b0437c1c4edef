"""The S4 convolution kernel of a diagonal-plus-low-rank system (S4 Alg. 1).

For A = Λ - P Pᴴ (N/2 kept modes of conjugate pairs), bilinear discretisation with
step Δ, and C̃ = C (I - Ā^L), the generating function of K = (C̄ Āˡ B̄)_{l<L} at the
roots of unity ω_j = exp(-2πij/L) is (S4 Lemma C.2, C.3)

    K̂(ω_j) = C̃ (I - Ā ω_j)⁻¹ B̄ = (2/(1+ω_j)) C̃ (z_j I - A)⁻¹ B,
    z_j = (2/Δ)(1-ω_j)/(1+ω_j) = (2i/Δ) tan(πj/L),

and Woodbury on z I - A = (z I - Λ) + P Pᴴ gives four Cauchy products that share
their denominators, k(a, b) = Σ_n a_n b_n / (z - λ_n):

    C̃ (zI - A)⁻¹ B = k(C̃, B) - k(C̃, P) (I + k(Pᴴ, P))⁻¹ k(Pᴴ, B).

K = irfft(K̂) (K is real, so only j <= L/2 is evaluated). Two exact rewrites avoid
dividing by 1 + ω_j = 0 at the Nyquist node ω = -1 (even L): with ζ_j = Δ z_j =
2i tan(πj/L), 1/(z - λ) = Δ/(ζ - Δλ) and 2/(1+ω_j) = 1 + ζ_j/2; and at ω = -1 itself
(I + Ā)⁻¹ B̄ = Δ B / 2 for any A, so K̂(-1) = (Δ/2) C̃ B exactly.
"""

from __future__ import annotations

import math

import torch

from structmat._checks import check_positive_int
from structmat.ssm._validate import check_diag_system, check_low_rank
from structmat.ssm.structured import cauchy_conj

__all__ = ["nplr_kernel"]


def nplr_kernel(
    Lambda: torch.Tensor,
    P: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    dt: torch.Tensor,
    L: int,
    chunk: int | None = None,
) -> torch.Tensor:
    """S4 kernel from the truncated generating function (S4 Alg. 1), bilinear.

    The represented system is the full N-state one (Λ, Λ̄), (P, P̄), (B, B̄), (C̃, C̃̄),
    whose kernel is real. ``C`` is C̃ = C (I - Ā^L) for this L (see ``S4`` for how the
    layer keeps it): with it the result equals the first L terms of C Āˡ B̄ exactly.

    Args:
        Lambda: (H, N2) complex diagonal part (N2 = N/2 kept modes).
        P: (R, H, N2) complex low-rank factor (rank R).
        B: (H, N2) complex.
        C: (M, H, N2) complex C̃ (M output channels).
        dt: (H,) real step sizes.
        L: kernel length (number of roots of unity).
        chunk: Cauchy chunk (None: automatic).

    Returns:
        K: (M, H, L) real.
    """
    M, H, N2 = check_diag_system(Lambda, B, C, dt)
    check_low_rank(P, H, N2)
    check_positive_int(L, "L")
    if chunk is not None:
        check_positive_int(chunk, "chunk")
    R = P.shape[0]
    rdt = dt.dtype
    mu = Lambda * dt.unsqueeze(-1)  # Δλ, (H, N2)
    # rows a ∈ (C̃_1..C̃_M, P̄_1..P̄_R), columns b ∈ (B, P_1..P_R); v = a b Δ
    a = torch.cat([C, P.conj()], dim=0)  # (M+R, H, N2)
    b = torch.cat([B.unsqueeze(0), P], dim=0)  # (1+R, H, N2)
    v = a.unsqueeze(1) * b.unsqueeze(0) * dt[:, None]  # (M+R, 1+R, H, N2)
    v = v.permute(2, 0, 1, 3).reshape(H, (M + R) * (1 + R), N2)  # (H, (M+R)(1+R), N2)
    J = (L + 1) // 2  # nodes j = 0 .. ceil(L/2)-1 (all but the Nyquist node)
    y = 2.0 * torch.tan(math.pi * torch.arange(J, dtype=torch.float64) / L)  # ζ_j = i y_j
    y = y.to(dtype=rdt, device=dt.device)  # (J,)
    # Σ over the conjugate pairs (v, λ) and (v̄, λ̄) of the full state
    r = cauchy_conj(v, y, mu, chunk=chunk)  # (H, (M+R)(1+R), J)
    # unbind (not slicing): its backward is one stack, where every slice's backward
    # would zero-fill and copy a full-size gradient of r
    rows = r.unbind(1)  # (M+R)(1+R) tensors (H, J)

    def rr(i: int, k: int) -> torch.Tensor:  # row a_i, column b_k
        return rows[i * (1 + R) + k]

    # k(C̃_m, B) = rr(m, 0), k(C̃_m, P_k) = rr(m, 1+k),
    # k(P̄_q, B) = rr(M+q, 0), k(P̄_q, P_k) = rr(M+q, 1+k)
    if R == 1:
        s = [rr(M, 0) / (1.0 + rr(M, 1))]  # (I + r11)⁻¹ r10, (H, J)
    elif R == 2:
        # explicit 2x2 inverse of I + r11 (batched LAPACK calls per node are slow)
        a11, a12 = 1.0 + rr(M, 1), rr(M, 2)
        a21, a22 = rr(M + 1, 1), 1.0 + rr(M + 1, 2)
        det = a11 * a22 - a12 * a21  # (H, J)
        s = [
            (a22 * rr(M, 0) - a12 * rr(M + 1, 0)) / det,
            (a11 * rr(M + 1, 0) - a21 * rr(M, 0)) / det,
        ]
    else:
        eye = torch.eye(R, dtype=r.dtype, device=r.device)
        r11 = torch.stack(
            [torch.stack([rr(M + q, 1 + k) for k in range(R)], -1) for q in range(R)], -2
        )
        r10 = torch.stack([rr(M + q, 0) for q in range(R)], -1)  # (H, J, R)
        sol = torch.linalg.solve(eye + r11, r10.unsqueeze(-1)).squeeze(-1)  # (H, J, R)
        s = list(sol.unbind(-1))
    # Woodbury: k(C̃, B) - k(C̃, P) (I + k(Pᴴ, P))⁻¹ k(Pᴴ, B)
    outs = []
    for m in range(M):
        km = rr(m, 0)
        for q in range(R):
            km = km - rr(m, 1 + q) * s[q]
        outs.append(km)
    k = torch.stack(outs, dim=1)  # (H, M, J)
    k = k * torch.complex(torch.ones_like(y), 0.5 * y)  # × 2/(1+ω_j) = 1 + ζ_j/2
    if L % 2 == 0:
        # Nyquist node ω = -1: K̂ = (Δ/2) Σ_full C̃ B = Δ Re Σ_n C̃_n B_n
        nyq = dt[:, None] * (C * B).sum(-1).real.transpose(0, 1)  # (H, M)
        k = torch.cat([k, nyq.to(k.dtype).unsqueeze(-1)], dim=-1)  # (H, M, L/2+1)
    K = torch.fft.irfft(k, n=L)  # (H, M, L)
    return K.transpose(0, 1)  # (M, H, L)
