"""Plain float64 references for structmat.ssm: loops, dense matrices, textbook formulas."""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import torch


def hippo_loops(measure: str, N: int) -> tuple[np.ndarray, np.ndarray]:
    """HiPPO (A, B) entry by entry from the published formulas (S4 sign convention)."""
    A = np.zeros((N, N))
    B = np.zeros(N)
    for n in range(N):
        for k in range(N):
            if measure == "legs":
                if n > k:
                    A[n, k] = -math.sqrt(2 * n + 1) * math.sqrt(2 * k + 1)
                elif n == k:
                    A[n, k] = -(n + 1)
            elif measure == "legt":
                sign = 1.0 if n >= k else (-1.0) ** (n - k)
                A[n, k] = -0.5 * math.sqrt(2 * n + 1) * math.sqrt(2 * k + 1) * sign
            elif measure == "lagt":
                A[n, k] = -1.0 if n > k else (-0.5 if n == k else 0.0)
        if measure == "legs":
            B[n] = math.sqrt(2 * n + 1)
        elif measure == "legt":
            B[n] = 0.5 * math.sqrt(2 * n + 1)
        elif measure == "lagt":
            B[n] = 1.0
    if measure == "fout":
        B[0] = 1.0
        for f in range(1, N // 2):
            B[2 * f] = math.sqrt(2.0)
            A[2 * f + 1, 2 * f] = math.pi * f
            A[2 * f, 2 * f + 1] = -math.pi * f
        A = A - np.outer(B, B)
    return A, B


def discretize(
    A: np.ndarray, B: np.ndarray, dt: float, method: str
) -> tuple[np.ndarray, np.ndarray]:
    """Textbook bilinear / ZOH (ZOH with scipy's expm and an explicit A⁻¹)."""
    N = A.shape[0]
    eye = np.eye(N)
    if method == "bilinear":
        inv = np.linalg.inv(eye - dt / 2 * A)
        return inv @ (eye + dt / 2 * A), inv @ (dt * B)
    Ab = scipy.linalg.expm(dt * A)
    return Ab, np.linalg.solve(A, (Ab - eye) @ B)


def kernel_powers(A, B, C, dt, L: int, method: str, taps=None) -> np.ndarray:  # type: ignore[no-untyped-def]
    """K[h, l] = Re(C_h Ā_h^l B̄_h) for l < L, dense float64.

    A (H, N, N), B (H, N), C (H, N), dt (H,) tensors or arrays (complex). By default
    x_l = Ā^l B̄ is built by applying the dense Ā l times (x_{l+1} = Ā x_l); with
    ``taps`` (a list of l) the matrix powers Ā^l are materialised with
    ``np.linalg.matrix_power`` and only those taps are returned, (H, len(taps)).
    """
    A, B, C, dt = (np.asarray(torch.as_tensor(x).detach()) for x in (A, B, C, dt))
    H = A.shape[0]
    K = np.zeros((H, L if taps is None else len(taps)))
    for h in range(H):
        Ab, Bb = discretize(A[h], B[h], float(dt[h]), method)
        if taps is not None:
            for i, l in enumerate(taps):
                K[h, i] = (C[h] @ np.linalg.matrix_power(Ab, l) @ Bb).real
            continue
        x = Bb.astype(complex)
        for l in range(L):
            K[h, l] = (C[h] @ x).real
            x = Ab @ x
    return K


def cauchy_loops(v: np.ndarray, z: np.ndarray, w: np.ndarray) -> np.ndarray:
    """r[b, m, j] = Σ_n v[b, m, n] / (z[j] - w[b, n]) by loops. v (Bt, M, N), w (Bt, N)."""
    Bt, M, N = v.shape
    r = np.zeros((Bt, M, len(z)), dtype=complex)
    for b in range(Bt):
        for j, zj in enumerate(z):
            for n in range(N):
                r[b, :, j] += v[b, :, n] / (zj - w[b, n])
    return r


def vandermonde_loops(v: np.ndarray, x: np.ndarray, L: int) -> np.ndarray:
    """out[b, m, l] = Σ_n v[b, m, n] x[b, n]^l (powers by repeated multiplication)."""
    Bt, M, N = v.shape
    out = np.zeros((Bt, M, L), dtype=complex)
    p = np.ones((Bt, N), dtype=complex)
    for l in range(L):
        out[:, :, l] = np.einsum("bmn,bn->bm", v, p)
        p = p * x
    return out


def causal_conv(u: np.ndarray, K: np.ndarray) -> np.ndarray:
    """y[b, h, t] = Σ_{s<=t} K[h, t-s] u[b, h, s] by loops."""
    L = u.shape[-1]
    y = np.zeros_like(u)
    for t in range(L):
        for s in range(t + 1):
            y[:, :, t] += K[:, t - s] * u[:, :, s]
    return y


def anticausal_conv(u: np.ndarray, K: np.ndarray) -> np.ndarray:
    """y[b, h, t] = Σ_{s>t} K[h, s-t-1] u[b, h, s] by loops."""
    L = u.shape[-1]
    y = np.zeros_like(u)
    for t in range(L):
        for s in range(t + 1, L):
            y[:, :, t] += K[:, s - t - 1] * u[:, :, s]
    return y
