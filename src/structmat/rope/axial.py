"""2D rotary position embedding for images: axial and mixed (learnable) frequencies.

A patch at column ``x`` and row ``y`` turns rotary pair ``j`` by the angle
``x * f_x[j] + y * f_y[j]``. With ``R(x, y) = exp(x B_1 + y B_2)`` for commuting
skew-symmetric ``B_1, B_2`` (Su, kexue.fm/archives/8397), ``R(p)^T R(p') = R(p' - p)``,
so the score between two patches depends only on their 2D offset.

* ``axial`` (Su 2021; Heo et al. 2024 "RoPE-Axial"): per 4-channel group ``g`` the
  rotation is ``blockdiag(rot(x theta_g), rot(y theta_g))``: even-numbered pairs turn
  with x, odd-numbered pairs with y, ``theta_g = base ** (-4 g / D)``. In the
  ``interleaved`` layout this is literally that block diagonal.
* ``mixed`` (Heo et al. 2024, "Rotary Position Embedding for Vision Transformer",
  eq. 11 "RoPE-Mixed"): every pair has its own (learnable, per head) frequency
  vector ``(f_x, f_y)``. The default has ``|f| = theta_g`` (``base = 10`` as in the
  paper) with directions ``phi_h + (pi/2)(j mod 2)``; head ``h`` is turned by
  ``phi_h = h * golden angle``, so head 0 starts as axial and heads differ
  (deterministic; Heo et al. draw ``phi_h`` at random).

Pairs live in ``x``'s channels by the 1D ``layout`` (``"half"`` or ``"interleaved"``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from structmat._checks import (
    as_tensor,
    check_choice,
    check_floating,
    check_int,
    check_number,
    check_positive_int,
    check_tensor,
    fail,
    shape_str,
)
from structmat.rope._validate import as_positions, check_tokens
from structmat.rope.rotary import _angle_dtype
from structmat.rope.rotation import LAYOUTS, compute_dtype, rotate_pairs

__all__ = [
    "RotaryEmbedding2D",
    "apply_rotary_2d",
    "axial_frequencies",
    "grid_positions",
    "mixed_frequencies",
]

MODES = ("axial", "mixed")
_DEFAULT_BASE = {"axial": 100.0, "mixed": 10.0}  # Heo et al. 2024, Sec. 4 / official code
_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


def _check_dim4(dim: Any, name: str = "dim") -> None:
    check_int(
        dim, name, 4, multiple_of=4, wanted="a multiple of 4 (one x pair and one y pair per group)"
    )


def _magnitudes(dim: int, base: float) -> torch.Tensor:
    """theta_j = base ** (-4 (j // 2) / dim) for every pair j: (dim/2,) float64."""
    g = torch.arange(dim // 2, dtype=torch.float64) // 2  # group of pair j
    return base ** (-4.0 * g / dim)


def axial_frequencies(dim: int, base: float = 100.0) -> torch.Tensor:
    """Axial 2D frequencies as (f_x, f_y) per pair: even pairs (theta_g, 0), odd (0, theta_g).

    Args:
        dim: head dim D, a multiple of 4.

    Returns:
        (D/2, 2) float64.
    """
    _check_dim4(dim)
    check_number(base, "base", 1.0, low_open=True)
    mag = _magnitudes(dim, float(base))
    odd = torch.arange(dim // 2) % 2 == 1
    fx = torch.where(odd, torch.zeros_like(mag), mag)
    fy = torch.where(odd, mag, torch.zeros_like(mag))
    return torch.stack([fx, fy], dim=-1)  # (D/2, 2)


def mixed_frequencies(dim: int, heads: int | None = None, base: float = 10.0) -> torch.Tensor:
    """Deterministic RoPE-Mixed initial frequencies (see module docstring).

    Args:
        dim: head dim D, a multiple of 4.
        heads: number of heads H, or None for one shared set.

    Returns:
        (D/2, 2) float64, or (H, D/2, 2) when ``heads`` is given.
    """
    _check_dim4(dim)
    H = 1 if heads is None else heads
    check_int(H, "heads", 1, wanted="an integer >= 1 or None")
    check_number(base, "base", 1.0, low_open=True)
    mag = _magnitudes(dim, float(base))  # (D/2,)
    turn = (math.pi / 2) * (torch.arange(dim // 2) % 2).to(torch.float64)  # (D/2,)
    phi = _GOLDEN_ANGLE * torch.arange(H, dtype=torch.float64)[:, None] + turn  # (H, D/2)
    f = torch.stack([mag * torch.cos(phi), mag * torch.sin(phi)], dim=-1)  # (H, D/2, 2)
    return f[0] if heads is None else f


def _check_train_size(train_size: Any) -> None:
    wanted = "(H0, W0), two integers >= 1"
    if not isinstance(train_size, (tuple, list)) or len(train_size) != 2:
        raise fail("train_size", wanted, repr(train_size))
    for t in train_size:
        check_int(t, "train_size", 1, wanted=wanted)


def grid_positions(
    height: int,
    width: int,
    *,
    train_size: tuple[int, int] | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(x, y) positions of an ``height x width`` patch grid, row-major.

    Token ``r * width + c`` (row r, column c) gets position ``(c, r)``. With
    ``train_size = (H0, W0)`` the grid is rescaled to the range the model was
    trained on, ``(c * W0 / width, r * H0 / height)`` (position interpolation for
    a different resolution at inference, as EVA-02 / Heo et al. do); keep the
    grid unscaled to extrapolate instead.

    Returns:
        (height * width, 2) float64.
    """
    check_positive_int(height, "height")
    check_positive_int(width, "width")
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64, device=device),
        torch.arange(width, dtype=torch.float64, device=device),
        indexing="ij",
    )  # (height, width) each
    if train_size is not None:
        _check_train_size(train_size)
        ys = ys * (train_size[0] / height)
        xs = xs * (train_size[1] / width)
    return torch.stack([xs.flatten(), ys.flatten()], dim=-1)  # (height * width, 2)


def _angles_2d(positions: torch.Tensor, freqs: torch.Tensor, work: torch.dtype) -> torch.Tensor:
    """positions (L, 2) x freqs (..., P, 2) -> angles (..., L, P)."""
    if freqs.requires_grad and torch.is_grad_enabled():
        # Keep the graph to the learnable frequencies; compute in their dtype.
        pos = positions.to(device=freqs.device, dtype=freqs.dtype)
        return torch.einsum("lc,...pc->...lp", pos, freqs)  # (..., L, P)
    dt = _angle_dtype(positions.device)
    f = freqs.detach().to(device=positions.device, dtype=dt)
    return torch.einsum("lc,...pc->...lp", positions.to(dt), f)  # (..., L, P)


def apply_rotary_2d(
    x: torch.Tensor,
    positions: Any,
    base: float | None = None,
    mode: str = "axial",
    freqs: torch.Tensor | None = None,
    layout: str = "half",
) -> torch.Tensor:
    """Rotate image tokens by their 2D positions.

    Args:
        x: (..., L, D) floating tensor, e.g. (B, H, L, D).
        positions: (L, 2) (x, y) per token, e.g. from :func:`grid_positions`.
        base: frequency base; None means 100 (axial) or 10 (mixed), as Heo et al.
        mode: ``"axial"`` or ``"mixed"``.
        freqs: mixed only: (D/2, 2) per pair (f_x, f_y), or (H, D/2, 2) per head
            with x (..., H, L, D); None means :func:`mixed_frequencies`. Gradients
            flow into ``freqs`` when it requires grad.
        layout: ``"half"`` or ``"interleaved"`` pair layout.

    Returns:
        (..., L, D) tensor of x's dtype.

    Raises:
        ValueError: D not a multiple of 4 (axial or default mixed), odd D, shapes
            that do not match, ``freqs`` given with ``mode="axial"``.
    """
    check_tokens(x)
    check_choice(mode, "mode", MODES)
    check_choice(layout, "layout", LAYOUTS)
    L, D = x.shape[-2], x.shape[-1]
    b = _DEFAULT_BASE[mode] if base is None else base
    check_number(b, "base", 1.0, low_open=True)
    pos = as_positions(
        positions, "(x, y) positions", lambda p: p.shape == (L, 2), f"shape (L, 2) = ({L}, 2)"
    ).to(x.device)
    if mode == "axial":
        if freqs is not None:
            raise fail("freqs", "None for mode='axial' (use mode='mixed')", "a tensor")
        if D % 4:
            raise fail(
                "x", "a last dim D divisible by 4 for axial 2D RoPE", f"shape {shape_str(x.shape)}"
            )
        f = axial_frequencies(D, float(b))
    elif freqs is None:
        if D % 4:
            raise fail(
                "x",
                "a last dim D divisible by 4 for the default mixed frequencies",
                f"shape {shape_str(x.shape)}",
            )
        f = mixed_frequencies(D, base=float(b))
    else:
        f = as_tensor(freqs, "freqs")
        check_floating(f, "freqs")
        if D % 2:
            raise fail("x", "an even last dim D (rotary pairs)", f"shape {shape_str(x.shape)}")
        ok = f.ndim in (2, 3) and f.shape[-2:] == (D // 2, 2)
        if f.ndim == 3:
            ok = ok and x.ndim >= 3 and x.shape[-3] == f.shape[0]
        if not ok:
            H = x.shape[-3] if x.ndim >= 3 else "H"
            raise fail(
                "freqs",
                f"shape (D/2, 2) = ({D // 2}, 2) or (H, D/2, 2) = ({H}, {D // 2}, 2)",
                f"shape {shape_str(f.shape)}",
            )
    work = compute_dtype(x.dtype)
    angles = _angles_2d(pos, f, work)  # (L, D/2) or (H, L, D/2)
    return rotate_pairs(x, angles.cos().to(work), angles.sin().to(work), layout)


class RotaryEmbedding2D(nn.Module):
    """2D RoPE for a ViT; owns learnable per-head frequencies in ``mixed`` mode.

    Args:
        dim: head dim D (multiple of 4).
        heads: number of heads H; ``mixed`` learns one (D/2, 2) table per head.
        mode: ``"mixed"`` (learnable, Heo et al. 2024) or ``"axial"`` (fixed).
        base: None means 10 (mixed) or 100 (axial).
        layout: ``"half"`` or ``"interleaved"``.
        learnable: mixed frequencies are an ``nn.Parameter`` (True) or a buffer.

    ``forward(x, positions)``: x (B, H, L, D), positions (L, 2) -> (B, H, L, D).
    """

    def __init__(
        self,
        dim: int,
        heads: int = 1,
        mode: str = "mixed",
        base: float | None = None,
        layout: str = "half",
        learnable: bool = True,
    ) -> None:
        super().__init__()
        _check_dim4(dim)
        check_choice(mode, "mode", MODES)
        check_choice(layout, "layout", LAYOUTS)
        check_positive_int(heads, "heads")
        if base is not None:
            check_number(base, "base", 1.0, low_open=True)
        self.dim, self.heads, self.mode, self.layout = dim, heads, mode, layout
        self.base = float(_DEFAULT_BASE[mode] if base is None else base)
        self.freqs: torch.Tensor | None
        if mode == "mixed":
            init = mixed_frequencies(dim, heads, self.base).to(torch.float32)  # (H, D/2, 2)
            if learnable:
                self.freqs = nn.Parameter(init)
            else:
                self.register_buffer("freqs", init)
        else:
            self.freqs = None

    def forward(self, x: torch.Tensor, positions: Any) -> torch.Tensor:
        """Rotate x (..., H, L, D) by positions (L, 2)."""
        # x is checked against the layer first, so a wrong x is named as such
        # (not as a mismatch with the layer's own frequencies)
        check_tensor(x, "x", "(..., H, L, D)", 3 if self.mode == "mixed" else 2, at_least=True)
        if x.shape[-1] != self.dim or (self.mode == "mixed" and x.shape[-3] != self.heads):
            want = f"(..., H, L, D) with H = {self.heads}, D = {self.dim} (the layer's)"
            raise fail("x", f"shape {want}", f"shape {shape_str(x.shape)}")
        if self.mode == "axial":
            return apply_rotary_2d(x, positions, self.base, "axial", None, self.layout)
        return apply_rotary_2d(x, positions, self.base, "mixed", self.freqs, self.layout)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, heads={self.heads}, mode={self.mode!r}, layout={self.layout!r}"
