"""Token mixers for the sequence models: one registry entry per mixer.

Every mixer maps ``x: (B, L, D)`` and ``mask: (B, L)`` bool (True = real token, or
None) to ``(B, L, D)``. Padding never influences real positions: attention mixers
mask it out of their softmax/landmarks, and SSM mixers zero it before the
convolution (padding sits after the real tokens, so a causal kernel never reads it
and the anti-causal one reads zeros whatever the padding held).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from structmat._checks import check_choice, check_positive_int

__all__ = ["MIXERS", "MixerSpec", "build_mixer"]


@dataclass(frozen=True)
class MixerSpec:
    """How to build one mixer: ``build(d_model, heads, causal, dropout, rope, length)``."""

    build: Callable[..., nn.Module]
    kind: str  # "ssm" or "attention"


class SSMMixer(nn.Module):
    """Wraps a (B, L, H) -> (B, L, H) layer, zeroing padded positions first."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            x = x * mask.unsqueeze(-1).to(x.dtype)  # (B, L, D)
        return self.layer(x)


def _s4(mode: str, init: str) -> Callable[..., nn.Module]:
    def build(
        d_model: int,
        *,
        causal: bool,
        dropout: float,
        d_state: int = 64,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        **_: Any,
    ) -> nn.Module:
        from structmat.ssm import S4

        layer = S4(
            d_model,
            d_state=d_state,
            mode=mode,
            init=init,
            bidirectional=not causal,
            dropout=dropout,
            dt_min=dt_min,
            dt_max=dt_max,
        )
        return SSMMixer(layer)

    return build


def _attention(mixer: str) -> Callable[..., nn.Module]:
    def build(
        d_model: int, *, heads: int, causal: bool, rope: bool, length: int, **_: Any
    ) -> nn.Module:
        from structmat.attention import MultiHeadAttention

        rotary = None
        if rope:
            from structmat.rope import RotaryEmbedding

            rotary = RotaryEmbedding(d_model // heads)
        options: dict[str, Any] = {}
        if mixer == "nystrom":
            # Segment-mean landmarks: at most 64, and never more than the sequence.
            options["num_landmarks"] = min(64, length)
        return MultiHeadAttention(
            d_model,
            heads,
            mixer=mixer,
            rotary=rotary,
            causal=causal and mixer != "nystrom",
            **options,
        )

    return build


MIXERS: dict[str, MixerSpec] = {
    "s4": MixerSpec(_s4("nplr", "legs"), "ssm"),
    "s4d": MixerSpec(_s4("diag", "diag-lin"), "ssm"),
    "softmax": MixerSpec(_attention("softmax"), "attention"),
    "linear": MixerSpec(_attention("linear"), "attention"),
    "nystrom": MixerSpec(_attention("nystrom"), "attention"),
}


def build_mixer(
    name: str,
    d_model: int,
    *,
    heads: int = 4,
    causal: bool = False,
    dropout: float = 0.0,
    rope: bool = True,
    length: int = 1024,
    **options: Any,
) -> nn.Module:
    """Build mixer ``name`` (one of ``MIXERS``) for width ``d_model``.

    Args:
        heads: attention heads (attention mixers).
        causal: causal attention / a one-sided S4 kernel; otherwise bidirectional.
        dropout: dropout inside the mixer (S4).
        rope: rotary position embedding on q and k (attention mixers).
        length: the longest sequence (caps the Nyström landmark count).
        options: mixer-specific settings (S4 mixers: ``d_state``, ``dt_min``, ``dt_max``).
    """
    # reported as "mixer": the name SequenceModel and the CLI give this choice
    check_choice(name, "mixer", list(MIXERS))
    check_positive_int(d_model, "d_model")
    check_positive_int(heads, "heads")
    check_positive_int(length, "length")
    return MIXERS[name].build(
        d_model, heads=heads, causal=causal, dropout=dropout, rope=rope, length=length, **options
    )
