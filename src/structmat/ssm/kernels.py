"""Deprecated: renamed :mod:`structmat.ssm.structured` (the Cauchy and Vandermonde
products). Import from there, or from :mod:`structmat.ssm`; this alias warns on import."""

import warnings

from structmat.ssm.structured import cauchy, cauchy_conj, vandermonde

__all__ = ["cauchy", "cauchy_conj", "vandermonde"]

warnings.warn(
    "structmat.ssm.kernels is deprecated: import from structmat.ssm.structured (or structmat.ssm)",
    DeprecationWarning,
    stacklevel=2,
)
