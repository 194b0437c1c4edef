"""Plain float64 references for structmat.orthogonal: the dense textbook matrices."""

from __future__ import annotations

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x)


def reflection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Householder I - 2 v vᵀ / vᵀv with v = â - b̂ (identity when â = b̂)."""
    v = _unit(a) - _unit(b)
    d = a.shape[0]
    if not np.any(v):
        return np.eye(d)
    return np.eye(d) - 2.0 * np.outer(v, v) / (v @ v)


def rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """I + K + K²/(1 + c), K = b̂âᵀ - âb̂ᵀ, c = âᵀb̂; valid for c > -1."""
    u, v = _unit(a), _unit(b)
    k = np.outer(v, u) - np.outer(u, v)
    c = u @ v
    return np.eye(a.shape[0]) + k + k @ k / (1.0 + c)
