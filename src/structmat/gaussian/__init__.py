"""Closed-form distances between multivariate normals, and streaming moments."""

from structmat.gaussian._linalg import trace_sqrt_product
from structmat.gaussian.divergences import (
    bhattacharyya_distance,
    frechet_distance,
    hellinger_distance,
    kl_divergence,
    wasserstein2,
)
from structmat.gaussian.moments import GaussianMoments, frechet_distance_from_features

__all__ = [
    "GaussianMoments",
    "bhattacharyya_distance",
    "frechet_distance",
    "frechet_distance_from_features",
    "hellinger_distance",
    "kl_divergence",
    "trace_sqrt_product",
    "wasserstein2",
]
