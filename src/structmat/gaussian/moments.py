"""Gaussian moments of feature sets: streaming statistics and the exact Fréchet
distance straight from raw features.

``GaussianMoments`` accumulates mean and covariance over batches in float64 and
merges partial results with the parallel formula of Chan, Golub & LeVeque (1979),
so FID statistics over millions of rows never need the rows in memory at once.

``frechet_distance_from_features`` computes the Fréchet distance between the
sample Gaussians of two feature matrices. With fewer samples than dimensions
(common for FID on small sets) it never forms the d×d covariances: for centred
``Xc`` (n, d) the covariance is ``F Fᵀ`` with ``F = Xcᵀ / sqrt(n - 1)``, so the
square-root trace is the nuclear norm of the n2×n1 matrix ``Xc2 Xc1ᵀ / sqrt((n1-1)(n2-1))``
and the traces are ``‖Xc‖_F² / (n - 1)``: exact, in O(n1·n2·d + n³).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from structmat._checks import as_tensor, check_finite, check_ndim, check_same_last_dim, fail
from structmat._io import load_npz, save_npz
from structmat.gaussian._linalg import nuclear_norm
from structmat.gaussian.divergences import frechet_distance

__all__ = ["GaussianMoments", "frechet_distance_from_features"]


class GaussianMoments:
    """Streaming mean and covariance of feature rows, accumulated in float64.

    Example::

        m = GaussianMoments()
        for batch in loader:          # batch: (n_i, d)
            m.update(batch)
        mu, sigma = m.mean, m.cov     # (d,), (d, d)

    Attributes:
        count: number of rows seen.
    """

    def __init__(self) -> None:
        self.count = 0
        self._mean: torch.Tensor | None = None  # (d,)
        self._m2: torch.Tensor | None = None  # (d, d): Σ (x - mean)(x - mean)ᵀ

    @property
    def dim(self) -> int | None:
        """Feature dimension d, or None before the first update."""
        return None if self._mean is None else int(self._mean.shape[0])

    def update(self, x: Any) -> GaussianMoments:
        """Add rows ``x`` (n, d) (or one row (d,)); returns ``self``.

        Raises:
            ValueError: wrong rank, a dimension that differs from earlier rows, or
                non-finite values.
        """
        t = as_tensor(x, "x", torch.float64)
        if t.ndim == 1:
            t = t.unsqueeze(0)  # (1, d)
        check_ndim(t, "x", 2, "(n, d)")
        if self.dim is not None:
            check_same_last_dim(t, "x", self.dim, "the rows seen before")
        check_finite(t, "x")
        n = t.shape[0]
        if n == 0:
            return self
        mean = t.mean(dim=0)  # (d,)
        centred = t - mean  # (n, d)
        return self._combine(n, mean, centred.T @ centred)

    def merge(self, other: GaussianMoments) -> GaussianMoments:
        """Fold ``other``'s rows into ``self`` (parallel formula); returns ``self``."""
        if not isinstance(other, GaussianMoments):
            raise fail("other", "a GaussianMoments", type(other).__name__)
        if other.count == 0:
            return self
        assert other._mean is not None and other._m2 is not None
        if self.dim is not None and other.dim != self.dim:
            raise fail("other", f"moments of dimension {self.dim}", f"dimension {other.dim}")
        return self._combine(other.count, other._mean, other._m2)

    def _combine(self, n_b: int, mean_b: torch.Tensor, m2_b: torch.Tensor) -> GaussianMoments:
        # Chan et al.: M2 = M2a + M2b + δδᵀ·na·nb/n, mean = ma + δ·nb/n; stable
        # because each part is centred on its own mean before combining.
        if self._mean is None or self._m2 is None or self.count == 0:
            self.count, self._mean, self._m2 = n_b, mean_b.clone(), m2_b.clone()
            return self
        n_a = self.count
        n = n_a + n_b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / n)
        self._m2 = self._m2 + m2_b + torch.outer(delta, delta) * (n_a * n_b / n)
        self.count = n
        return self

    @property
    def mean(self) -> torch.Tensor:
        """(d,) sample mean."""
        if self._mean is None:
            raise fail("GaussianMoments", "at least 1 row before .mean", "0 rows")
        return self._mean.clone()

    @property
    def cov(self) -> torch.Tensor:
        """(d, d) unbiased sample covariance (divides by count - 1, as ``numpy.cov``)."""
        if self._m2 is None or self.count < 2:
            raise fail("GaussianMoments", "at least 2 rows before .cov", f"{self.count} row(s)")
        return self._m2 / (self.count - 1)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``mu``, ``sigma`` and ``count`` to an ``.npz`` file, atomically.

        The ``mu``/``sigma`` keys are those of pytorch-fid's statistics files; a
        ``sha256`` entry (the digest of the others) is verified by :meth:`load`.

        Raises:
            ValueError: the write failed (e.g. no space left); the old file survives.
        """
        arrays = {"mu": self.mean.numpy(), "sigma": self.cov.numpy(), "count": np.array(self.count)}
        save_npz(path, arrays, what="moments file")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GaussianMoments:
        """Read moments written by ``save`` (no pickle), verifying their checksum.

        Raises:
            ValueError: naming the file: unreadable, corrupt (checksum mismatch),
                missing keys, inconsistent shapes, NaN/inf or a count below 2.

        Warns:
            UserWarning: a file written before checksums is loaded unverified.
        """
        name = f"moments file {os.fspath(path)}"
        arrays = load_npz(path, name, checksum="expected")
        missing = {"mu", "sigma", "count"} - set(arrays)
        if missing:
            raise fail(name, "an .npz with mu, sigma and count", f"missing {sorted(missing)}")
        mu = as_tensor(arrays["mu"], f"{name}: mu", torch.float64)
        sigma = as_tensor(arrays["sigma"], f"{name}: sigma", torch.float64)
        check_ndim(mu, f"{name}: mu", 1, "(d,)")
        if sigma.shape != (mu.shape[0], mu.shape[0]):
            raise fail(
                f"{name}: sigma",
                f"shape ({mu.shape[0]}, {mu.shape[0]})",
                f"shape {tuple(sigma.shape)}",
            )
        check_finite(mu, f"{name}: mu")
        check_finite(sigma, f"{name}: sigma")
        count = arrays["count"]
        if count.shape != () or count.dtype.kind not in "iu" or int(count) < 2:
            raise fail(f"{name}: count", "an integer >= 2", f"{count!r}")
        out = cls()
        out.count, out._mean, out._m2 = int(count), mu, sigma * (int(count) - 1)
        return out


def frechet_distance_from_features(
    x1: Any, x2: Any, *, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Fréchet distance between the sample Gaussians of two feature matrices.

    Equals ``frechet_distance(mean(x1), cov(x1), mean(x2), cov(x2))`` with unbiased
    covariances. With fewer rows than columns it goes through the n2×n1 cross-Gram
    matrix instead of the d×d covariances (module docstring), which is exact where
    eigenvalue routes on the rank-deficient covariances lose accuracy.

    Args:
        x1: (n1, d) features, n1 >= 2.
        x2: (n2, d) features, n2 >= 2.
        dtype: computation dtype (default float64).

    Returns:
        () the distance.
    """
    dtype = torch.float64 if dtype is None else dtype
    if dtype not in (torch.float32, torch.float64):  # as frechet_distance's dtype=
        raise fail("dtype", "a floating-point torch dtype (float32 or float64)", str(dtype))
    a = as_tensor(x1, "x1", dtype)
    b = as_tensor(x2, "x2", dtype)
    check_ndim(a, "x1", 2, "(n1, d)")
    check_ndim(b, "x2", 2, "(n2, d)")
    check_same_last_dim(b, "x2", a.shape[1], "x1")
    for name, t in (("x1", a), ("x2", b)):
        if t.shape[0] < 2:
            raise fail(name, "at least 2 rows (n, d)", f"shape {tuple(t.shape)}")
        check_finite(t, name)
    n1, d = a.shape
    n2 = b.shape[0]
    mu1, mu2 = a.mean(dim=0), b.mean(dim=0)
    a_c, b_c = a - mu1, b - mu2  # (n1, d), (n2, d)
    if max(n1, n2) >= d:
        cov1 = a_c.T @ a_c / (n1 - 1)
        cov2 = b_c.T @ b_c / (n2 - 1)
        return frechet_distance(mu1, cov1, mu2, cov2, dtype=dtype)
    traces = a_c.square().sum() / (n1 - 1) + b_c.square().sum() / (n2 - 1)
    cross = (b_c @ a_c.T) / ((n1 - 1) * (n2 - 1)) ** 0.5  # (n2, n1)
    # Centring makes the cross-Gram rank-deficient (rank <= min(n1, n2) - 1), so
    # the SVD route is the accurate one here.
    value = (mu1 - mu2).square().sum() + traces - 2.0 * nuclear_norm(cross, squared_ok=False)
    return value.clamp(min=0.0)
