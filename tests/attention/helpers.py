"""Shared by the attention tests: random q, k, v and the tolerances by dtype."""

import torch

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def qkv(b, h, lq, lk, d, dv, dtype=torch.float64, seed=0, scale=1.0):
    """q (b, h, lq, d), k (b, h, lk, d) scaled by ``scale``, v (b, h, lk, dv), seeded."""
    g = torch.Generator().manual_seed(seed)
    return (
        scale * torch.randn(b, h, lq, d, generator=g, dtype=dtype),
        scale * torch.randn(b, h, lk, d, generator=g, dtype=dtype),
        torch.randn(b, h, lk, dv, generator=g, dtype=dtype),
    )
