"""Small numerical building blocks shared across modules."""

from __future__ import annotations

import torch

__all__ = ["safe_sqrt"]


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(max(x, 0))`` whose gradient is 0, not ``inf``/NaN, where ``x <= 0``.

    The double ``where`` keeps the infinite derivative of ``sqrt`` at 0 out of the
    backward pass (``where`` selects the zero branch instead of multiplying by it).
    """
    pos = x > 0
    return torch.where(
        pos, torch.sqrt(torch.where(pos, x, torch.ones_like(x))), torch.zeros_like(x)
    )
