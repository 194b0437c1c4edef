"""Input validation shared by every public function.

One place for the checks, so that every message has the same form::

    ValueError: <name>: expected <what was wanted>, got <what it got>

The argument name comes from the caller, so a message can never name the wrong
variable. Internals trust their callers; only public boundaries call these.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "as_tensor",
    "check_choice",
    "check_finite",
    "check_floating",
    "check_ndim",
    "check_nonzero",
    "check_positive_int",
    "check_same_last_dim",
    "check_shape",
    "check_square",
    "check_symmetric",
    "fail",
    "shape_str",
]


def shape_str(shape: Iterable[int | None]) -> str:
    """Format a shape as ``(3, 4)``; ``None`` entries print as ``*``."""
    parts = ["*" if s is None else str(s) for s in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def fail(name: str, wanted: str, got: str) -> ValueError:
    """Build the project's standard error; callers ``raise fail(...)``."""
    return ValueError(f"{name}: expected {wanted}, got {got}")


def as_tensor(x: Any, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Turn a tensor, NumPy array or nested sequence into a tensor.

    Args:
        x: the value passed by the user.
        name: the argument's name, for the error message.
        dtype: cast to this dtype when given.

    Raises:
        ValueError: ``x`` is not array-like, or is an object/string array.
    """
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, np.ndarray):
        if x.dtype == object or x.dtype.kind in "USV":
            raise fail(name, "a numeric array", f"a NumPy array of dtype {x.dtype}")
        # Read-only arrays (memory-mapped files) are copied: torch needs writable memory.
        arr = x if x.flags.writeable else np.array(x)
        t = torch.from_numpy(np.ascontiguousarray(arr))
    else:
        try:
            t = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as err:
            raise fail(name, "a tensor or array", f"{type(x).__name__}") from err
    if t.is_complex() and dtype is not None and not dtype.is_complex:
        raise fail(name, f"a real tensor ({dtype})", f"complex dtype {t.dtype}")
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    return t


def check_floating(x: torch.Tensor, name: str) -> None:
    """Require a real floating dtype (float16/bfloat16/float32/float64)."""
    if not x.is_floating_point():
        raise fail(name, "a floating-point tensor", f"dtype {x.dtype}")


def check_ndim(x: torch.Tensor, name: str, ndim: int, layout: str, at_least: bool = False) -> None:
    """Require ``x.ndim == ndim`` (or ``>= ndim`` when ``at_least``).

    Args:
        layout: the wanted layout in words, e.g. ``"(..., d)"`` or ``"(B, L, H)"``.
    """
    ok = x.ndim >= ndim if at_least else x.ndim == ndim
    if not ok:
        raise fail(name, f"shape {layout}", f"shape {shape_str(x.shape)}")


def check_shape(x: torch.Tensor, name: str, expected: Sequence[int | None], layout: str) -> None:
    """Require an exact shape; ``None`` in ``expected`` matches any size."""
    if x.ndim != len(expected) or any(
        e is not None and s != e for s, e in zip(x.shape, expected, strict=False)
    ):
        raise fail(name, f"shape {layout} = {shape_str(expected)}", f"shape {shape_str(x.shape)}")


def check_square(x: torch.Tensor, name: str, layout: str = "(..., d, d)") -> None:
    """Require at least 2 dims with the last two equal."""
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise fail(name, f"square matrices {layout}", f"shape {shape_str(x.shape)}")


def check_same_last_dim(x: torch.Tensor, name: str, d: int, other: str) -> None:
    """Require ``x.shape[-1] == d``, where ``d`` comes from argument ``other``."""
    if x.shape[-1] != d:
        raise fail(
            name,
            f"last dimension {d} (to match {other})",
            f"shape {shape_str(x.shape)}",
        )


def check_finite(x: torch.Tensor, name: str) -> None:
    """Reject NaN and infinity."""
    # One reduction decides the common case: a NaN or inf makes the sum non-finite.
    # A finite sum proves every entry finite; a non-finite one may also be overflow,
    # so only then is every entry checked (an elementwise test is ~10x slower).
    if x.numel() == 0 or bool(torch.isfinite(x.detach().sum())):
        return
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise fail(name, "finite values", f"{bad} NaN or infinite entries")


def check_symmetric(x: torch.Tensor, name: str, rtol: float | None = None) -> None:
    """Require ``x`` (..., d, d) symmetric up to rounding.

    The tolerance is relative to the largest entry; by default it is loose enough
    for covariances computed as ``XᵀX`` in the input's precision.
    """
    if rtol is None:
        rtol = 1e-4 if x.dtype in (torch.float16, torch.bfloat16, torch.float32) else 1e-8
    x = x.detach()
    scale = x.abs().amax(dim=(-2, -1)).clamp(min=torch.finfo(x.dtype).tiny)
    asym = (x - x.transpose(-1, -2)).abs().amax(dim=(-2, -1))
    worst = float((asym / scale).max()) if x.numel() else 0.0
    if worst > rtol:
        raise fail(name, "a symmetric matrix", f"relative asymmetry {worst:.2e}")


def check_nonzero(x: torch.Tensor, name: str, layout: str = "(..., d)") -> None:
    """Reject vectors (along the last dim) whose norm is zero."""
    norms = torch.linalg.vector_norm(x.detach(), dim=-1)
    if bool((norms == 0).any()):
        raise fail(name, f"nonzero vectors {layout}", f"{int((norms == 0).sum())} zero vector(s)")


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> None:
    """Require ``value`` to be one of ``choices``."""
    if value not in choices:
        wanted = " | ".join(repr(c) for c in choices)
        raise fail(name, f"one of {wanted}", repr(value))


def check_positive_int(value: Any, name: str, minimum: int = 1) -> None:
    """Require an ``int`` (not ``bool``) that is ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise fail(name, f"an integer >= {minimum}", repr(value))
