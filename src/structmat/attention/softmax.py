"""Exact softmax attention: a checked wrapper over ``scaled_dot_product_attention``.

softmax(q kᵀ / sqrt(D)) v (Vaswani et al., "Attention Is All You Need", 2017, eq. 1),
with an optional causal mask and a padding mask over the keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from structmat.attention._validate import check_mask, check_qkv, check_scale

__all__ = ["causal_keep", "softmax_attention"]


def causal_keep(lq: int, lk: int, device: torch.device | None = None) -> torch.Tensor:
    """Causal keep-mask (Lq, Lk), aligned bottom-right: query i sees keys j <= i + Lk - Lq.

    With Lq == Lk this is the usual lower triangle; with Lq < Lk (decoding against a
    cache of earlier keys) the last query sees every key.
    """
    return torch.ones(lq, lk, dtype=torch.bool, device=device).tril(lk - lq)  # (Lq, Lk)


def softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Exact attention softmax(q kᵀ · scale) v (Vaswani et al. 2017, eq. 1).

    Args:
        q: (B, H, Lq, D) queries.
        k: (B, H, L, D) keys.
        v: (B, H, L, Dv) values.
        causal: mask the future; aligned bottom-right (see ``causal_keep``).
        mask: (B, L) bool padding mask over the keys, True = keep.
        scale: score scale; default 1/sqrt(D).

    Returns:
        (B, H, Lq, Dv). A query that sees no kept key gets a zero row (not NaN).

    Raises:
        ValueError: wrong shapes, dtypes, mask, or non-finite inputs.
    """
    check_qkv(q, k, v)
    mask = check_mask(mask, k.shape[0], k.shape[2])
    check_scale(scale)
    return _softmax(q, k, v, causal, mask, scale)


def _softmax(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool,
    mask: torch.Tensor | None,
    scale: float | None,
) -> torch.Tensor:
    """``softmax_attention`` without the checks (for callers that made them)."""
    lq, lk = q.shape[2], k.shape[2]
    keep: torch.Tensor | None = None
    if mask is not None:
        keep = mask[:, None, None, :]  # (B, 1, 1, L)
    if causal and not (keep is None and lq == lk):
        tri = causal_keep(lq, lk, q.device)  # (Lq, L)
        keep = tri if keep is None else keep & tri  # (B, 1, Lq, L)
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=keep, is_causal=causal and keep is None, scale=scale
    )  # (B, H, Lq, Dv)
    if keep is not None:
        # A row with no kept key is 0/0; some SDPA backends give NaN there, so pin it to 0.
        out = out.masked_fill(~keep.any(dim=-1, keepdim=True), 0.0)
    return out
