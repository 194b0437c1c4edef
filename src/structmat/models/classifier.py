"""Sequence classifiers and regressors with a pluggable token mixer.

encoder (token embedding or linear input map) -> n_layers × [mixer, feed-forward]
residual blocks (pre- or post-norm) -> pooling over real positions -> head.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from structmat._checks import (
    check_choice,
    check_number,
    check_positive_int,
    check_tensor,
    check_width_dtype,
    fail,
    shape_str,
)
from structmat.models.mixers import build_mixer
from structmat.models.norms import NORMS, build_norm

__all__ = ["SequenceClassifier", "SequenceModel", "SequenceRegressor"]

POOLS = ("mean", "last")


class Block(nn.Module):
    """One residual block: mixer then a GELU feed-forward, each with a norm and dropout."""

    def __init__(
        self,
        mixer: nn.Module,
        d_model: int,
        dropout: float,
        prenorm: bool,
        ffn_mult: int,
        norm: str = "layer",
    ) -> None:
        super().__init__()
        self.mixer, self.prenorm = mixer, prenorm
        self.norm1, self.norm2 = build_norm(norm, d_model), build_norm(norm, d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn_mult * d_model),
            nn.GELU(),
            nn.Linear(ffn_mult * d_model, d_model),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.prenorm:
            x = x + self.drop(self.mixer(self.norm1(x, mask), mask))
            return x + self.drop(self.ffn(self.norm2(x, mask)))
        x = self.norm1(x + self.drop(self.mixer(x, mask)), mask)
        return self.norm2(x + self.drop(self.ffn(x)), mask)


class SequenceModel(nn.Module):
    """Shared body of the classifier and the regressor.

    Args:
        num_outputs: outputs per target (classes, or regression values).
        num_tokens: vocabulary size for token inputs (id 0 is padding); or
        input_dim: channels of real-valued inputs (B, L, C). Exactly one of the two.
        d_model: width; n_layers: residual blocks.
        mixer: ``"s4" | "s4d" | "softmax" | "linear" | "nystrom"`` (``structmat.models.MIXERS``).
        rope: rotary embeddings in attention mixers.
        dropout: dropout in blocks (and inside S4).
        pool: ``"mean"`` over real positions (one state for all targets), or ``"last"``:
            the last ``num_targets`` real positions, target k read at position
            ``length - num_targets + k`` (one head shared by the positions).
        prenorm: pre-norm (True) or post-norm blocks.
        norm: ``"layer"`` (LayerNorm) or ``"batch"`` (BatchNorm over real positions,
            ``structmat.models.norms``: it lifts rare events such as adding's marks).
        heads: attention heads. causal: causal mixers (one-sided S4 kernel).
        num_targets: targets per sequence (e.g. 10 tokens to copy).
        length: the longest input (for mixers that need it, e.g. Nyström landmarks).
        ffn_mult: feed-forward width multiple.
        mixer_options: extra keyword arguments for the mixer (e.g. ``d_state``,
            ``dt_min``, ``dt_max`` for S4 mixers); see ``structmat.models.MIXERS``.

    Shapes:
        forward(x: (B, L) int64 or (B, L, C) float, mask: (B, L) bool or None)
        -> (B, num_outputs), or (B, num_targets, num_outputs) when num_targets > 1.
    """

    def __init__(
        self,
        num_outputs: int,
        *,
        num_tokens: int | None = None,
        input_dim: int | None = None,
        d_model: int = 128,
        n_layers: int = 4,
        mixer: str = "s4",
        rope: bool = True,
        dropout: float = 0.0,
        pool: str = "mean",
        prenorm: bool = True,
        heads: int = 4,
        causal: bool = False,
        num_targets: int = 1,
        length: int = 1024,
        ffn_mult: int = 2,
        mixer_options: dict[str, Any] | None = None,
        norm: str = "layer",
    ) -> None:
        super().__init__()
        if (num_tokens is None) == (input_dim is None):
            raise fail(
                "num_tokens, input_dim", "exactly one of them", f"{num_tokens!r}, {input_dim!r}"
            )
        for name, val in (
            ("num_outputs", num_outputs),
            ("d_model", d_model),
            ("n_layers", n_layers),
            ("num_targets", num_targets),
            ("heads", heads),
            ("length", length),
            ("ffn_mult", ffn_mult),
        ):
            check_positive_int(val, name)
        check_choice(pool, "pool", POOLS)
        check_choice(norm, "norm", NORMS)
        check_number(dropout, "dropout", 0.0, 1.0, high_open=True, wanted="a probability in [0, 1)")
        if mixer_options is not None and not isinstance(mixer_options, Mapping):
            raise fail("mixer_options", "a dict of mixer settings or None", repr(mixer_options))
        self.num_tokens, self.input_dim = num_tokens, input_dim
        self.num_outputs, self.num_targets, self.pool = num_outputs, num_targets, pool
        self.mixer_name = mixer
        if num_tokens is not None:
            check_positive_int(num_tokens, "num_tokens")
            self.encoder: nn.Module = nn.Embedding(num_tokens, d_model, padding_idx=0)
        else:
            assert input_dim is not None
            check_positive_int(input_dim, "input_dim")
            self.encoder = nn.Linear(input_dim, d_model)
        self.blocks = nn.ModuleList(
            Block(
                build_mixer(
                    mixer,
                    d_model,
                    heads=heads,
                    causal=causal,
                    dropout=dropout,
                    rope=rope,
                    length=length,
                    **(mixer_options or {}),
                ),
                d_model,
                dropout,
                prenorm,
                ffn_mult,
                norm,
            )
            for _ in range(n_layers)
        )
        self.norm = build_norm(norm, d_model) if prenorm else None
        # Mean pooling gives one state for all targets; "last" gives each its own position.
        head_targets = num_targets if pool == "mean" else 1
        self.head = nn.Linear(d_model, head_targets * num_outputs)

    def _check(self, x: torch.Tensor, mask: torch.Tensor | None) -> None:
        if self.num_tokens is not None:
            check_tensor(x, "x", "(B, L) token ids", 2)
            if x.dtype not in (torch.int64, torch.int32):
                raise fail("x", "integer token ids (B, L)", f"dtype {x.dtype}")
            # an id outside the vocabulary would be an IndexError inside nn.Embedding
            if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.num_tokens):
                got = f"ids in [{int(x.min())}, {int(x.max())}]"
                raise fail("x", f"token ids in [0, num_tokens = {self.num_tokens})", got)
        else:
            layout = f"(B, L, C = {self.input_dim})"
            check_tensor(x, "x", layout, 3)
            weight = self.encoder.weight
            assert self.input_dim is not None and isinstance(weight, torch.Tensor)
            check_width_dtype(x, self.input_dim, layout, weight.dtype, "the model's")
        if mask is not None and not isinstance(mask, torch.Tensor):
            raise fail("mask", f"bool (B, L) = {shape_str(x.shape[:2])}", type(mask).__name__)
        if mask is not None and (
            mask.dtype != torch.bool or tuple(mask.shape) != tuple(x.shape[:2])
        ):
            raise fail(
                "mask",
                f"bool (B, L) = {shape_str(x.shape[:2])}",
                f"{mask.dtype} {shape_str(mask.shape)}",
            )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        self._check(x, mask)
        h = self.encoder(x)  # (B, L, D)
        for block in self.blocks:
            h = block(h, mask)
        if self.norm is not None:
            h = self.norm(h, mask)
        if mask is None:
            mask = torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
        k = self.num_targets
        if self.pool == "mean":
            weights = mask.unsqueeze(-1).to(h.dtype)  # (B, L, 1)
            pooled = (h * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, D)
            out = self.head(pooled)  # (B, K * C)
            return out.view(-1, k, self.num_outputs) if k > 1 else out
        # The last K real positions (clamped into a shorter sequence), in order.
        offsets = torch.arange(k - 1, -1, -1, device=h.device)  # (K,) K-1 .. 0
        index = (mask.sum(1, keepdim=True) - 1 - offsets).clamp(min=0)  # (B, K)
        pooled = h.gather(1, index.unsqueeze(-1).expand(-1, -1, h.shape[-1]))  # (B, K, D)
        out = self.head(pooled)  # (B, K, C)
        return out if k > 1 else out.squeeze(1)


class SequenceClassifier(SequenceModel):
    """``SequenceModel`` whose outputs are class logits: (B, num_classes) or (B, K, num_classes)."""

    def __init__(self, num_classes: int, **kwargs: object) -> None:
        check_positive_int(num_classes, "num_classes")  # named as the caller knows it
        super().__init__(num_classes, **kwargs)  # type: ignore[arg-type]


class SequenceRegressor(SequenceModel):
    """``SequenceModel`` with a regression head: (B,) for one output, else (B, num_outputs)."""

    def __init__(self, num_outputs: int = 1, **kwargs: object) -> None:
        super().__init__(num_outputs, **kwargs)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        out = super().forward(x, mask)
        return out.squeeze(-1) if self.num_outputs == 1 else out
