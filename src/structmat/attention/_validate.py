"""Boundary checks shared by the attention functions (q, k, v and the padding mask)."""

from __future__ import annotations

from typing import Any

import torch

from structmat._checks import (
    check_finite,
    check_floating,
    check_ndim,
    check_number,
    fail,
    shape_str,
)

_QKV = "(B, H, L, D)"


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Require q (B, H, Lq, D), k (B, H, L, D), v (B, H, L, Dv), one floating dtype.

    Raises:
        ValueError: a wrong type, rank, dtype, size or a NaN/infinite entry.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise fail(name, f"a tensor {_QKV}", type(t).__name__)
        check_ndim(t, name, 4, _QKV)
        check_floating(t, name)
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise fail("k, v", f"the dtype of q ({q.dtype})", f"{k.dtype} and {v.dtype}")
    if k.shape[:2] != q.shape[:2] or v.shape[:2] != q.shape[:2]:
        raise fail(
            "k, v",
            f"batch and heads (B, H) = {shape_str(q.shape[:2])} as in q",
            f"shapes {shape_str(k.shape)} and {shape_str(v.shape)}",
        )
    if k.shape[-1] != q.shape[-1]:
        raise fail("k", f"head dim D = {q.shape[-1]} (to match q)", f"shape {shape_str(k.shape)}")
    if v.shape[2] != k.shape[2]:
        raise fail("v", f"length L = {k.shape[2]} (to match k)", f"shape {shape_str(v.shape)}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        # One reduction instead of an elementwise mask: a NaN/inf entry makes the sum
        # non-finite; a finite sum proves there is none. Only a non-finite sum (possibly a
        # float overflow of finite values) pays for the exact check.
        if t.numel() and not bool(torch.isfinite(t.sum())):
            check_finite(t, name)


def check_mask(mask: torch.Tensor | None, batch: int, length: int) -> torch.Tensor | None:
    """Require a padding mask (B, L) of bools, True = keep; returns it (or None).

    Raises:
        ValueError: not a bool tensor of shape (B, L).
    """
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = f"dtype {mask.dtype}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise fail("mask", "a bool tensor (B, L), True = keep", got)
    if mask.shape != (batch, length):
        raise fail(
            "mask",
            f"shape (B, L) = {shape_str((batch, length))}",
            f"shape {shape_str(mask.shape)}",
        )
    return mask


def check_scale(scale: Any) -> None:
    """A score scale: None (1/sqrt(D)) or a finite number."""
    if scale is not None:
        check_number(scale, "scale")


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the iterative/accumulating parts run in: float32 for 16-bit inputs."""
    # bf16/fp16 keep 8/11 significant bits: prefix sums over thousands of tokens and the
    # Newton–Schulz pseudo-inverse lose all accuracy there, so they run in float32.
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
