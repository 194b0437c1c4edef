"""Plain float64 references for structmat.rope: complex numbers, loops, dense matrices.

Each function is the textbook formula, written for clarity, not speed.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import torch


def pair_index(dim: int, layout: str) -> list[tuple[int, int]]:
    """Channels (a, b) of rotary pair i: half (i, i + D/2), interleaved (2i, 2i + 1)."""
    h = dim // 2
    if layout == "half":
        return [(i, i + h) for i in range(h)]
    return [(2 * i, 2 * i + 1) for i in range(h)]


def frequencies(dim: int, base: float) -> np.ndarray:
    """theta_i = base^(-2i/dim) (RoFormer eq. 15)."""
    return np.array([base ** (-2.0 * i / dim) for i in range(dim // 2)])


def rotate_by_angles(x: np.ndarray, angles: np.ndarray, layout: str) -> np.ndarray:
    """Multiply every pair a + ib of x (..., L, D) by exp(i angle) with angles (..., L, D/2)."""
    x = np.asarray(x, dtype=np.float64)
    angles = np.broadcast_to(angles, (*x.shape[:-1], x.shape[-1] // 2))
    out = x.copy()
    for i, (a, b) in enumerate(pair_index(x.shape[-1], layout)):
        z = (x[..., a] + 1j * x[..., b]) * np.exp(1j * angles[..., i])
        out[..., a], out[..., b] = z.real, z.imag
    return out


def rotary(x: np.ndarray, positions: np.ndarray, theta: np.ndarray, layout: str) -> np.ndarray:
    """1D RoPE: pair i of the token at position n turns by n * theta_i."""
    pos = np.asarray(positions, dtype=np.float64)
    angles = pos[..., None] * np.asarray(theta)[None, :]  # (..., L, D/2)
    if pos.ndim == 2 and x.ndim > 3:  # per-batch positions (B, L)
        angles = angles.reshape(angles.shape[:1] + (1,) * (x.ndim - 3) + angles.shape[1:])
    return rotate_by_angles(x, angles, layout)


def rotation_matrix(angles: np.ndarray, dim: int, layout: str) -> np.ndarray:
    """Dense R with R[a, a] = R[b, b] = cos, R[a, b] = -sin, R[b, a] = sin per pair."""
    R = np.eye(dim)
    for i, (a, b) in enumerate(pair_index(dim, layout)):
        c, s = math.cos(angles[i]), math.sin(angles[i])
        R[a, a], R[a, b], R[b, a], R[b, b] = c, -s, s, c
    return R


def axial_angles(positions: np.ndarray, dim: int, base: float) -> np.ndarray:
    """Axial 2D: pair j turns by x * theta_g (j even) or y * theta_g (j odd), g = j // 2."""
    out = np.zeros((len(positions), dim // 2))
    for j in range(dim // 2):
        g = j // 2
        theta = base ** (-4.0 * g / dim)
        out[:, j] = positions[:, j % 2] * theta
    return out


def mixed_angles(positions: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """RoPE-Mixed: angle_j = x f_x[j] + y f_y[j]; freqs (..., D/2, 2) -> (..., L, D/2)."""
    freqs = np.asarray(freqs, dtype=np.float64)
    return np.einsum("lc,...jc->...lj", np.asarray(positions, dtype=np.float64), freqs)


def expm(B: np.ndarray) -> np.ndarray:
    """Matrix exponential (SciPy's Pade)."""
    return scipy.linalg.expm(B)


# ---------------------------------------------------------------- context scaling
def linear_freqs(dim: int, base: float, s: float) -> np.ndarray:
    """Position interpolation: theta_i / s."""
    return frequencies(dim, base) / s


def ntk_freqs(dim: int, base: float, s: float) -> np.ndarray:
    """NTK-aware: base' = base * s^(d/(d-2))."""
    return frequencies(dim, base * s ** (dim / (dim - 2)))


def dynamic_freqs(dim: int, base: float, s: float, train: int, length: int) -> np.ndarray:
    """Dynamic NTK: base' = base (s L / L_train - (s - 1))^(d/(d-2)) for L > L_train."""
    length = max(length, train)
    return frequencies(dim, base * (s * length / train - (s - 1)) ** (dim / (dim - 2)))


def llama3_freqs(
    dim: int, base: float, s: float, train: int, low: float, high: float
) -> np.ndarray:
    """Llama 3.1: per-frequency loop of Meta's apply_scaling."""
    out = []
    for f in frequencies(dim, base):
        wavelen = 2 * math.pi / f
        if wavelen < train / high:
            out.append(f)
        elif wavelen > train / low:
            out.append(f / s)
        else:
            smooth = (train / wavelen - low) / (high - low)
            out.append((1 - smooth) * f / s + smooth * f)
    return np.array(out)


def yarn_freqs(
    dim: int, base: float, s: float, train: int, beta_fast: float = 32, beta_slow: float = 1
) -> tuple[np.ndarray, float]:
    """YaRN (Peng et al. 2023) NTK-by-parts with the truncated ramp, and sqrt(1/t)."""

    def idx(rot: float) -> float:
        return dim * math.log(train / (rot * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(idx(beta_fast)), 0)
    high = min(math.ceil(idx(beta_slow)), dim - 1)
    if low == high:
        high += 0.001
    out = []
    for i, f in enumerate(frequencies(dim, base)):
        ramp = min(max((i - low) / (high - low), 0.0), 1.0)  # 0: keep, 1: interpolate
        out.append(f * (1 - ramp) + (f / s) * ramp)
    mscale = 0.1 * math.log(s) + 1 if s > 1 else 1.0
    return np.array(out), mscale


def random_skew(dim: int, rng: np.random.Generator, freqs: np.ndarray | None = None) -> np.ndarray:
    """Skew-symmetric Q blockdiag(theta_i J) Q^T with random orthogonal Q (given freqs)."""
    if freqs is None:
        A = rng.standard_normal((dim, dim))
        return A - A.T
    Q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    Bstd = np.zeros((dim, dim))
    for i, t in enumerate(freqs):
        Bstd[2 * i + 1, 2 * i], Bstd[2 * i, 2 * i + 1] = t, -t
    return Q @ Bstd @ Q.T


def to_torch(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))
