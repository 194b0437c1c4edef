"""Optimizer parameter groups for S4 layers (S4 App. D.2).

S4 trains its SSM parameters (Λ, P, B, log Δ) with a smaller learning rate (at most
1e-3 in the paper's setups) and no weight decay; all other weights keep the user's
settings.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from structmat._checks import check_number

__all__ = ["ssm_parameter_groups"]


def ssm_parameter_groups(
    model: nn.Module,
    lr: float,
    ssm_lr: float | None = None,
    weight_decay: float = 0.0,
) -> list[dict[str, Any]]:
    """Split a model's parameters into ordinary and SSM groups for ``torch.optim``.

    Args:
        model: any module containing ``structmat.ssm.S4`` layers.
        lr: learning rate of the ordinary parameters.
        ssm_lr: learning rate of the SSM parameters; None means min(lr, 1e-3).
        weight_decay: weight decay of the ordinary parameters (SSM ones get 0).

    Returns:
        ``[{"params": ordinary, "lr": lr, "weight_decay": weight_decay},
        {"params": ssm, "lr": ssm_lr, "weight_decay": 0.0}]``; a group with no
        parameters is left out. Pass it to e.g. ``torch.optim.AdamW``.

    Raises:
        ValueError: negative learning rates or weight decay.
    """
    from structmat.ssm.s4 import S4

    check_number(lr, "lr", 0.0)
    check_number(weight_decay, "weight_decay", 0.0)
    if ssm_lr is None:
        ssm_lr = min(lr, 1e-3)
    else:
        check_number(ssm_lr, "ssm_lr", 0.0)
    ssm_ids: set[int] = set()
    for m in model.modules():
        if isinstance(m, S4):
            ssm_ids.update(id(p) for p in m.ssm_parameters())
    ordinary: list[nn.Parameter] = []
    ssm: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (ssm if id(p) in ssm_ids else ordinary).append(p)
    groups = []
    if ordinary:
        groups.append({"params": ordinary, "lr": lr, "weight_decay": weight_decay})
    if ssm:
        groups.append({"params": ssm, "lr": ssm_lr, "weight_decay": 0.0})
    return groups
