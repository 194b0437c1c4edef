"""Plain float64 references for structmat.gaussian: textbook formulas in NumPy,
with explicit inverses and determinants (fine at these sizes, never in src/)."""

from __future__ import annotations

import numpy as np


def sym_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric PSD square root via eigh, negative rounding clamped to 0."""
    w, u = np.linalg.eigh(0.5 * (s + s.T))
    return (u * np.sqrt(np.clip(w, 0, None))) @ u.T


def trace_sqrt(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr (S1^{1/2} S2 S1^{1/2})^{1/2} as the nuclear norm of S2^{1/2} S1^{1/2}."""
    return float(np.linalg.svd(sym_sqrt(s2) @ sym_sqrt(s1), compute_uv=False).sum())


def kl(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    d = mu1.shape[0]
    inv2 = np.linalg.inv(s2)
    diff = mu2 - mu1
    return 0.5 * float(
        np.trace(inv2 @ s1)
        + diff @ inv2 @ diff
        - d
        + np.linalg.slogdet(s2)[1]  # det itself underflows at d ~ 300
        - np.linalg.slogdet(s1)[1]
    )


def bhattacharyya(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    s = 0.5 * (s1 + s2)
    diff = mu2 - mu1
    _, ld = np.linalg.slogdet(s)
    _, ld1 = np.linalg.slogdet(s1)
    _, ld2 = np.linalg.slogdet(s2)
    return float(0.125 * diff @ np.linalg.inv(s) @ diff + 0.5 * (ld - 0.5 * (ld1 + ld2)))


def hellinger(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    return float(np.sqrt(1.0 - np.exp(-bhattacharyya(mu1, s1, mu2, s2))))


def frechet(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt(s1, s2))


def random_spd(rng: np.random.Generator, d: int, cond: float = 100.0) -> np.ndarray:
    """Random SPD matrix with a log-spaced spectrum of the given condition number."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    ev = np.logspace(0, -np.log10(cond), d) * rng.uniform(0.5, 2.0)
    s = (q * ev) @ q.T
    return 0.5 * (s + s.T)


def random_singular_cov(rng: np.random.Generator, d: int, n: int) -> np.ndarray:
    """Sample covariance of n < d rows: PSD with rank n - 1."""
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) / np.sqrt(d)
    return np.cov(x, rowvar=False)


def frechet_features_highprec(x1: np.ndarray, x2: np.ndarray, dps: int = 40) -> float:
    """Fréchet distance between two sample Gaussians in mpmath (``dps`` digits).

    The exact answer for rank-deficient covariances (n < d), where any float64
    route through the d×d covariance is limited to ~sqrt(eps): the square-root
    trace is not Lipschitz at zero eigenvalues. Uses the nuclear norm of the
    cross-Gram matrix, computed as sqrt of the eigenvalues of G Gᵀ in high precision.
    """
    import mpmath as mp

    with mp.workdps(dps):
        n1, d = x1.shape
        n2 = x2.shape[0]
        a, b = mp.matrix(x1.tolist()), mp.matrix(x2.tolist())
        mu1 = [mp.fsum(a[i, j] for i in range(n1)) / n1 for j in range(d)]
        mu2 = [mp.fsum(b[i, j] for i in range(n2)) / n2 for j in range(d)]
        ac = mp.matrix([[a[i, j] - mu1[j] for j in range(d)] for i in range(n1)])
        bc = mp.matrix([[b[i, j] - mu2[j] for j in range(d)] for i in range(n2)])
        g = (bc * ac.T) / mp.sqrt((n1 - 1) * (n2 - 1))
        nuclear = mp.fsum(mp.sqrt(max(e, 0)) for e in mp.eigsy(g * g.T)[0])
        tr1 = mp.fsum(ac[i, j] ** 2 for i in range(n1) for j in range(d)) / (n1 - 1)
        tr2 = mp.fsum(bc[i, j] ** 2 for i in range(n2) for j in range(d)) / (n2 - 1)
        mean_term = mp.fsum((mu1[j] - mu2[j]) ** 2 for j in range(d))
        return float(mean_term + tr1 + tr2 - 2 * nuclear)


def frechet_features_gram(x1: np.ndarray, x2: np.ndarray) -> float:
    """Float64 Fréchet distance between sample Gaussians via the textbook identity
    tr sqrt = nuclear norm of F2ᵀF1 with F = Xcᵀ/sqrt(n - 1) (NumPy SVD)."""
    a, b = x1 - x1.mean(0), x2 - x2.mean(0)
    n1, n2 = a.shape[0], b.shape[0]
    nuclear = np.linalg.svd(b @ a.T / np.sqrt((n1 - 1) * (n2 - 1)), compute_uv=False).sum()
    diff = x1.mean(0) - x2.mean(0)
    return float(diff @ diff + (a * a).sum() / (n1 - 1) + (b * b).sum() / (n2 - 1) - 2 * nuclear)
