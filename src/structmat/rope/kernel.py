"""Deprecated: renamed :mod:`structmat.rope.rotation` (the rotation of rotary pairs).
Import from there; this alias warns on import."""

import warnings

from structmat.rope.rotation import LAYOUTS, compute_dtype, rotate_pairs

__all__ = ["LAYOUTS", "compute_dtype", "rotate_pairs"]

warnings.warn(
    "structmat.rope.kernel is deprecated: import from structmat.rope.rotation",
    DeprecationWarning,
    stacklevel=2,
)
