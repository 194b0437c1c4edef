"""Deprecated: renamed :mod:`structmat.ssm.nplr_kernel` (the S4 convolution kernel of
an NPLR system). Import from there, or from :mod:`structmat.ssm`; this alias warns on
import."""

import warnings

from structmat.ssm.nplr_kernel import nplr_kernel

__all__ = ["nplr_kernel"]

warnings.warn(
    "structmat.ssm.cauchy_kernel is deprecated: import from structmat.ssm.nplr_kernel "
    "(or structmat.ssm)",
    DeprecationWarning,
    stacklevel=2,
)
