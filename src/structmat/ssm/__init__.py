"""Structured state spaces: HiPPO, NPLR, S4 (Cauchy kernel), S4D (Vandermonde kernel).

Public API (the project's design notes, structmat.ssm): ``hippo``, ``nplr``, ``S4``; the
structured products ``cauchy``, ``cauchy_conj`` and ``vandermonde``
(:mod:`structmat.ssm.structured`), the convolution-kernel functions ``nplr_kernel``
(:mod:`structmat.ssm.nplr_kernel`) and ``diag_kernel``, discretisation helpers,
``fft_conv`` and ``ssm_parameter_groups``.
"""

from structmat.ssm.conv import fft_conv
from structmat.ssm.discretize import discretize_dense, discretize_diag
from structmat.ssm.hippo import hippo, rank_correction
from structmat.ssm.nplr import nplr
from structmat.ssm.nplr_kernel import nplr_kernel
from structmat.ssm.optim import ssm_parameter_groups
from structmat.ssm.s4 import S4
from structmat.ssm.s4d import diag_init, diag_kernel
from structmat.ssm.structured import cauchy, cauchy_conj, vandermonde

__all__ = [
    "S4",
    "cauchy",
    "cauchy_conj",
    "diag_init",
    "diag_kernel",
    "discretize_dense",
    "discretize_diag",
    "fft_conv",
    "hippo",
    "nplr",
    "nplr_kernel",
    "rank_correction",
    "ssm_parameter_groups",
    "vandermonde",
]
