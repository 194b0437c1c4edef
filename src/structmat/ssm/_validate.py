"""Boundary checks shared by the public SSM functions (kernels, discretisation).

The layer (``S4``) builds these tensors itself and passes them on; users who call
``diag_kernel``, ``nplr_kernel``, ``discretize_*`` or ``fft_conv`` directly get a
``ValueError`` naming the argument instead of an error from deep inside torch.
"""

from __future__ import annotations

from typing import Any

import torch

from structmat._checks import check_finite, check_shape, check_tensor, fail, shape_str

__all__ = ["check_broadcast", "check_diag_system", "check_low_rank", "check_step_sizes"]


def check_broadcast(x: torch.Tensor, name: str, shape: tuple[int, ...], other: str) -> None:
    """Require ``x``'s shape to broadcast with ``shape`` (the shape of ``other``)."""
    n = max(x.ndim, len(shape))
    a = (1,) * (n - x.ndim) + tuple(x.shape)
    b = (1,) * (n - len(shape)) + tuple(shape)
    if any(p != q and 1 not in (p, q) for p, q in zip(a, b, strict=True)):
        wanted = f"a shape broadcastable with {other} {shape_str(shape)}"
        raise fail(name, wanted, f"shape {shape_str(x.shape)}")


def check_step_sizes(dt: Any, batch: tuple[int, ...], other: str) -> None:
    """``dt`` (...): finite real step sizes, broadcastable with ``other``'s batch dims."""
    check_tensor(dt, "dt", "(...)", kind="float")
    check_finite(dt, "dt")
    check_broadcast(dt, "dt", batch, f"the batch dims of {other}")


def check_diag_system(Lambda: Any, B: Any, C: Any, dt: Any) -> tuple[int, int, int]:
    """Lambda (H, N2) complex; B (H, N2); C (M, H, N2), M >= 1; dt (H,) float32/64.

    Returns:
        (M, H, N2).
    """
    check_tensor(Lambda, "Lambda", "(H, N2)", 2, kind="complex")
    H, N2 = Lambda.shape
    check_tensor(B, "B", "(H, N2)", 2, kind="numeric")
    check_shape(B, "B", (H, N2), "(H, N2)")
    check_tensor(C, "C", "(M, H, N2)", 3, kind="numeric")
    check_shape(C, "C", (None, H, N2), "(M, H, N2)")
    if C.shape[0] == 0:
        raise fail("C", "M >= 1 output channels", f"shape {shape_str(C.shape)}")
    check_tensor(dt, "dt", "(H,)", 1, kind="float")
    # the kernels' real arithmetic (nodes, FFT) has no 16-bit CPU kernels
    if dt.dtype not in (torch.float32, torch.float64):
        raise fail("dt", "dtype float32 or float64", f"dtype {dt.dtype}")
    check_shape(dt, "dt", (H,), "(H,)")
    check_finite(dt, "dt")
    return C.shape[0], H, N2


def check_low_rank(P: Any, H: int, N2: int) -> None:
    """P (R, H, N2) with R >= 1, the NPLR low-rank factor."""
    check_tensor(P, "P", "(R, H, N2)", 3, kind="numeric")
    check_shape(P, "P", (None, H, N2), "(R, H, N2)")
    if P.shape[0] == 0:
        raise fail("P", "rank R >= 1", f"shape {shape_str(P.shape)}")
