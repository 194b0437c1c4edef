"""Boundary checks shared by the 1D and 2D rotary embeddings (x and positions)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from structmat._checks import as_tensor, check_ndim, check_tensor, fail, shape_str


def check_tokens(x: Any) -> None:
    """x must be a floating (..., L, D) tensor."""
    check_tensor(x, "x", "(..., L, D)", kind="float")
    check_ndim(x, "x", 2, "(..., L, D)", at_least=True)


def as_positions(
    positions: Any, kind: str, shape_ok: Callable[[torch.Tensor], bool], wanted: str
) -> torch.Tensor:
    """Positions as a tensor: integer or real (``kind`` names them in the error), of a
    shape ``shape_ok`` accepts (``wanted`` describes it), finite."""
    pos = as_tensor(positions, "positions")
    if pos.is_complex() or pos.dtype == torch.bool:
        raise fail("positions", f"integer or real {kind}", f"dtype {pos.dtype}")
    if not shape_ok(pos):
        raise fail("positions", wanted, f"shape {shape_str(pos.shape)}")
    if pos.is_floating_point() and not bool(torch.isfinite(pos).all()):
        raise fail("positions", "finite values", "NaN or infinite entries")
    return pos
