"""Normalisation layers for the sequence models: LayerNorm, or BatchNorm over real positions.

Why BatchNorm is here: on tasks whose signal is carried by a few positions among
many (the adding problem marks 2 of L positions), LayerNorm normalises every
position on its own and leaves a rare event as small as the rest, while BatchNorm
divides each channel by its spread over the batch and all positions, so a channel
that fires at 2 of L positions is scaled up by about sqrt(L / 2). That removes the
long constant-predictor plateau of S4 models on adding (``benchmarks/ssm_recipe.py``),
and the official S4 LRA configurations use BatchNorm for the same family of tasks.

``MaskedBatchNorm`` takes its statistics over real positions only, so padding never
changes real outputs; under ``torch.distributed`` the statistics (and their
gradients) are summed over all processes, so DDP trains the single-process model.
In training mode the statistics include later positions of the same sequences:
fine for the classifiers here (the label depends on the whole input), not for
autoregressive models; in eval mode it is a fixed per-position affine map.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from structmat._checks import check_choice, check_positive_int

__all__ = ["NORMS", "MaskedBatchNorm", "build_norm"]

NORMS = ("layer", "batch")


def _all_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over processes with gradient (identity without a process group)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        from torch.distributed.nn.functional import all_reduce

        return all_reduce(t)
    return t


class MaskedBatchNorm(nn.Module):
    """BatchNorm over the channels of (B, L, D) inputs, statistics over real positions.

    Args:
        d_model: D, channels.
        momentum: running-statistics update factor (as ``nn.BatchNorm1d``).
        eps: added to the variance.

    Shapes: ``forward(x: (B, L, D), mask: (B, L) bool or None) -> (B, L, D)``.
    """

    def __init__(self, d_model: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))
        self.register_buffer("running_mean", torch.zeros(d_model))
        self.register_buffer("running_var", torch.ones(d_model))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.training:
            if mask is None:
                w = x.new_ones((*x.shape[:2], 1))
            else:
                w = mask.unsqueeze(-1).to(x.dtype)  # (B, L, 1)
            # one reduction for count, sum and sum of squares: (2D + 1,)
            stats = torch.cat([(x * w).sum((0, 1)), (x * x * w).sum((0, 1)), w.sum().view(1)])
            stats = _all_sum(stats)
            d = x.shape[-1]
            n = stats[-1].clamp(min=1.0)
            mean = stats[:d] / n
            var = (stats[d : 2 * d] / n - mean.square()).clamp(min=0.0)
            with torch.no_grad():
                unbiased = var * (n / (n - 1).clamp(min=1.0))
                self.running_mean.lerp_(mean.detach(), self.momentum)  # type: ignore[operator]
                self.running_var.lerp_(unbiased, self.momentum)  # type: ignore[operator]
        else:
            mean, var = self._running()
        scale = self.weight * torch.rsqrt(var + self.eps)  # (D,)
        return (x - mean) * scale + self.bias


    def _running(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean, var = self.running_mean, self.running_var
        assert isinstance(mean, torch.Tensor) and isinstance(var, torch.Tensor)
        return mean, var


class _LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` that accepts (and ignores) a mask, like ``MaskedBatchNorm``."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x)


def build_norm(norm: str, d_model: int) -> nn.Module:
    """``"layer"`` (per position) or ``"batch"`` (per channel over batch and real positions);
    the module is called as ``norm(x, mask)``."""
    check_choice(norm, "norm", NORMS)
    check_positive_int(d_model, "d_model")
    return _LayerNorm(d_model) if norm == "layer" else MaskedBatchNorm(d_model)
