"""Input validation shared by every public function.

One place for the checks, so that every message has the same form::

    ValueError: <name>: expected <what was wanted>, got <what it got>

The argument name comes from the caller, so a message can never name the wrong
variable. Internals trust their callers; only public boundaries call these.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "as_real_array",
    "as_tensor",
    "check_choice",
    "check_even_int",
    "check_finite",
    "check_floating",
    "check_int",
    "check_ndim",
    "check_nonzero",
    "check_number",
    "check_positive_int",
    "check_same_last_dim",
    "check_shape",
    "check_square",
    "check_symmetric",
    "check_tensor",
    "check_width_dtype",
    "fail",
    "shape_str",
]


def shape_str(shape: Iterable[int | None]) -> str:
    """Format a shape as ``(3, 4)``; ``None`` entries print as ``*``."""
    parts = ["*" if s is None else str(s) for s in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


MAX_GOT = 300  # characters of the offending value an error message quotes


def fail(name: str, wanted: str, got: str) -> ValueError:
    """Build the project's standard error; callers ``raise fail(...)``."""
    if len(got) > MAX_GOT:  # e.g. a 10 MB string from a damaged file: one short line
        got = f"{got[: MAX_GOT - 40]}... ({len(got):,} characters)"
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


def as_real_array(x: Any, name: str, ndim: int, layout: str, finite: bool = True) -> np.ndarray:
    """A real (integer or floating) NumPy array of rank ``ndim`` from a tensor, array or list.

    Args:
        layout: the wanted layout in words, e.g. ``"(k_q, N)"``.
        finite: reject NaN and infinity.

    Raises:
        ValueError: not array-like (ragged lists included), not real, wrong rank, non-finite.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        # NumPy has no bfloat16 / float16 matmuls worth having: widen to float32
        x = (t.float() if t.dtype in (torch.bfloat16, torch.float16) else t).numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise fail(name, f"an array of shape {layout}", type(x).__name__) from err
    if arr.dtype.kind not in "iuf":
        raise fail(name, f"a real array of shape {layout}", f"dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise fail(name, f"shape {layout}", f"shape {shape_str(arr.shape)}")
    if finite and arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise fail(name, "finite values", "NaN or infinite entries")
    return arr


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


def _is_int(value: Any) -> bool:
    # bool is an int subclass, but True as a size is always a mistake.
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(
    value: Any,
    name: str,
    minimum: int | None = None,
    maximum: int | None = None,
    *,
    multiple_of: int = 1,
    wanted: str | None = None,
) -> None:
    """Require an ``int`` (not ``bool``) in ``[minimum, maximum]``, a multiple of ``multiple_of``.

    Args:
        wanted: the requirement in words for the message; by default it is built
            from the bounds (``"an even integer >= 2"``).
    """
    ok = _is_int(value)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not (ok and value % multiple_of == 0):
        if wanted is None:
            what = {1: "an integer", 2: "an even integer"}.get(
                multiple_of, f"an integer multiple of {multiple_of}"
            )
            wanted = what + _bounds_words(minimum, maximum, False, False)
        raise fail(name, wanted, repr(value))


def check_positive_int(value: Any, name: str, minimum: int = 1) -> None:
    """Require an ``int`` (not ``bool``) that is ``>= minimum``."""
    check_int(value, name, minimum)


def check_even_int(value: Any, name: str, minimum: int = 2, wanted: str | None = None) -> None:
    """Require an even ``int`` (not ``bool``) that is ``>= minimum`` (rotary pairs)."""
    check_int(value, name, minimum, multiple_of=2, wanted=wanted)


def _bounds_words(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""


def check_number(
    value: Any,
    name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    wanted: str | None = None,
) -> None:
    """Require a finite real number (int or float, not ``bool``) in a range.

    Args:
        low, high: the bounds (None: unbounded on that side).
        low_open, high_open: exclude the bound itself (``> low`` rather than ``>= low``).
        wanted: the requirement in words; by default e.g. ``"a finite number > 1"``
            or ``"a number in [0, 1)"``.
    """
    ok = (_is_int(value) or isinstance(value, (float, np.floating))) and math.isfinite(value)
    ok = ok and (low is None or (value > low if low_open else value >= low))
    ok = ok and (high is None or (value < high if high_open else value <= high))
    if not ok:
        if wanted is None:
            both = low is not None and high is not None
            wanted = ("a number" if both else "a finite number") + _bounds_words(
                low, high, low_open, high_open
            )
        raise fail(name, wanted, repr(value))


_KINDS = {
    "float": ("a floating-point tensor", lambda t: t.is_floating_point()),
    "real": ("a real tensor", lambda t: not t.is_complex() and t.dtype != torch.bool),
    "numeric": ("a numeric tensor", lambda t: t.dtype != torch.bool),
    "complex": ("a complex tensor", lambda t: t.is_complex()),
    "integer": (
        "an integer tensor",
        lambda t: not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool),
    ),
}


def check_tensor(
    x: Any,
    name: str,
    layout: str,
    ndim: int | None = None,
    *,
    at_least: bool = False,
    kind: str | None = None,
) -> None:
    """Require a ``torch.Tensor``, optionally of rank ``ndim`` and a dtype kind.

    Args:
        layout: the wanted layout in words, e.g. ``"(B, H, L, D)"``.
        ndim, at_least: as in ``check_ndim`` (None: any rank).
        kind: ``"float"`` (floating point), ``"real"`` (floating or integer),
            ``"numeric"`` (anything but bool), ``"complex"``, ``"integer"`` or None.
    """
    if not isinstance(x, torch.Tensor):
        raise fail(name, f"a tensor of shape {layout}", type(x).__name__)
    if ndim is not None:
        check_ndim(x, name, ndim, layout, at_least)
    if kind is not None:
        words, ok = _KINDS[kind]
        if not ok(x):
            raise fail(name, words, f"dtype {x.dtype}")


def check_width_dtype(
    x: torch.Tensor, width: int, layout: str, dtype: torch.dtype, whose: str
) -> None:
    """Require a last dim of ``width`` (``layout`` names it, e.g. ``"(B, L, C = 8)"``) and
    the ``dtype`` of a module's weights (``whose`` says whose, in the error)."""
    if x.shape[-1] != width:
        raise fail("x", f"shape {layout}", f"shape {shape_str(x.shape)}")
    if x.dtype != dtype:
        raise fail("x", f"dtype {dtype} ({whose})", f"dtype {x.dtype}")
