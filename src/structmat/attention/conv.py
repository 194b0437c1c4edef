"""Depthwise convolution along the sequence (the Nyströmformer's skip on v) as block matmuls.

out[b, h, l, :] = Σ_t w[h, t] · v[b, h, l + t - K//2, :]  (zero padding; Xiong et al. 2021,
§3.3, as ``Conv2d(H, H, (K, 1), groups=H)``). Single-thread CPU convolution kernels are slow
for this shape (one filter per head shared over D), so the sequence is cut into blocks of T
rows and each block is one matmul with a banded (T, T + K - 1) Toeplitz matrix holding the
filter: (T + K - 1)/K times the convolution's multiply-adds, but at matmul speed. Blocks
are processed a chunk at a time and added into the output, so the extra memory is one chunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["sequence_conv"]


def sequence_conv(
    v: torch.Tensor,
    weight: torch.Tensor,
    out: torch.Tensor | None = None,
    block: int = 64,
    chunk: int = 2048,
) -> torch.Tensor:
    """Depthwise 'same' convolution of each head's sequence with its own filter.

    Args:
        v: (B, H, L, D).
        weight: (H, 1, K, 1) (a ``Conv2d(H, H, (K, 1), groups=H)`` weight) or (H, K); K odd.
        out: (B, H, L, D) to add the result into (in place), or None for a new tensor.
        block: rows per Toeplitz block T.
        chunk: rows per chunk (a multiple of ``block`` is best).

    Returns:
        ``out + conv`` (the same tensor as ``out``) or the convolution, (B, H, L, D); equal
        to ``F.conv2d(v, weight, padding=(K // 2, 0), groups=H)`` up to rounding.
    """
    w = weight.reshape(weight.shape[0], -1).to(v.dtype)  # (H, K)
    b, h, length, d = v.shape
    k = w.shape[-1]
    p = k // 2
    t = max(1, min(block, length))
    chunk = max(t, chunk // t * t)
    s = t + k - 1  # input rows one block of outputs needs
    # Banded Toeplitz matrix per head: row i holds the filter in columns i .. i + K - 1.
    cols = torch.arange(t, device=v.device)[:, None] + torch.arange(k, device=v.device)  # (T, K)
    band = v.new_zeros(h, t, s).scatter(2, cols.expand(h, t, k), w[:, None, :].expand(h, t, k))
    if out is None:
        out = torch.zeros_like(v)
    for start in range(0, length, chunk):
        stop = min(start + chunk, length)
        nb = -(-(stop - start) // t)  # blocks in this chunk
        lo, hi = start - p, start + nb * t + p  # input rows needed, before clipping
        piece = v[:, :, max(lo, 0) : min(hi, length)]
        # Zero rows beyond either end of the sequence (the convolution's zero padding).
        piece = F.pad(piece, (0, 0, max(0, -lo), max(0, hi - length)))  # (B, H, nb·T + K - 1, D)
        windows = piece.unfold(2, s, t).transpose(-1, -2)  # (B, H, nb, S, D) overlapping
        res = band[None, :, None] @ windows  # (B, H, nb, T, D)
        out[:, :, start:stop] += res.reshape(b, h, nb * t, d)[:, :, : stop - start]
    return out
