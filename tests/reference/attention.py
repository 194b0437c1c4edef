"""Plain float64 references for attention: explicit softmax, explicit sums, dense Nyström."""

from __future__ import annotations

import math

import torch


def softmax_attention_ref(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(q kᵀ / sqrt(D)) v by loops over batch, head and query; q (B, H, Lq, D).

    Causal is aligned bottom-right (query i sees keys j <= i + L - Lq); a query with no
    kept key gives zeros.
    """
    q, k, v = q.double(), k.double(), v.double()
    b, h, lq, d = q.shape
    lk = k.shape[2]
    out = torch.zeros(b, h, lq, v.shape[-1], dtype=torch.float64)
    for bi in range(b):
        for hi in range(h):
            for i in range(lq):
                keep = [
                    j
                    for j in range(lk)
                    if (mask is None or bool(mask[bi, j])) and (not causal or j <= i + lk - lq)
                ]
                if not keep:
                    continue
                s = torch.stack([q[bi, hi, i] @ k[bi, hi, j] / math.sqrt(d) for j in keep])
                p = torch.exp(s - s.max())
                p = p / p.sum()
                out[bi, hi, i] = sum(p[t] * v[bi, hi, j] for t, j in enumerate(keep))
    return out


def softmax_dense_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / sqrt(D)) v with the (L, L) matrix formed, in float64 (larger sizes)."""
    q, k, v = q.double(), k.double(), v.double()
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1) @ v


def feature_ref(x: torch.Tensor, feature_map: str) -> torch.Tensor:
    """elu(x) + 1 written out: x + 1 for x > 0, exp(x) otherwise; or max(x, 0)."""
    if feature_map == "elu":
        return torch.where(x > 0, x + 1, torch.exp(x))
    return torch.where(x > 0, x, torch.zeros_like(x))


def linear_attention_ref(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    feature_map: str = "elu",
    mask: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """out_i = Σ_j (φq_i·φk_j) v_j / (Σ_j φq_i·φk_j + eps), j over kept (and j <= i if causal).

    The quadratic form, an explicit (L, L) weight matrix per head.
    """
    q, k, v = q.double(), k.double(), v.double()
    fq, fk = feature_ref(q, feature_map), feature_ref(k, feature_map)
    w = fq @ fk.transpose(-1, -2)  # (B, H, Lq, L)
    if causal:
        lq, lk = w.shape[-2:]
        w = w * torch.ones(lq, lk, dtype=torch.float64).tril(lk - lq)
    if mask is not None:
        w = w * mask[:, None, None, :].double()
    return (w @ v) / (w.sum(-1, keepdim=True) + eps)


def segment_means_ref(x: torch.Tensor, m: int, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Landmarks by loops: the kept tokens of x (L, D), in order, cut into m runs of
    ⌊n/m⌋ or ⌈n/m⌉ (token of rank r in run ⌊r·m/n⌋), each averaged; empty runs give 0."""
    idx = [i for i in range(x.shape[0]) if keep is None or bool(keep[i])]
    n = len(idx)
    out = torch.zeros(m, x.shape[1], dtype=torch.float64)
    for s in range(m):
        members = [idx[r] for r in range(n) if r * m // n == s]
        if members:
            out[s] = x[members].double().mean(0)
    return out


def nystrom_attention_ref(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, m: int, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Xiong et al. 2021 eq. 14 with dense matrices and SVD pseudo-inverse, per batch and head.

    Padded tokens are cut out first; outputs at padded positions are left at 0.
    """
    b, h, length, d = q.shape
    out = torch.zeros(b, h, length, v.shape[-1], dtype=torch.float64)
    for bi in range(b):
        keep = None if mask is None else mask[bi]
        idx = [i for i in range(length) if keep is None or bool(keep[i])]
        for hi in range(h):
            qq, kk, vv = (t[bi, hi, idx].double() for t in (q, k, v))
            n = len(idx)
            mm = min(m, n)
            ql, kl = segment_means_ref(qq, mm), segment_means_ref(kk, mm)
            f1 = torch.softmax(qq @ kl.T / math.sqrt(d), -1)
            f2 = torch.softmax(ql @ kl.T / math.sqrt(d), -1)
            f3 = torch.softmax(ql @ kk.T / math.sqrt(d), -1)
            out[bi, hi, idx] = f1 @ torch.linalg.pinv(f2, rtol=1e-13) @ f3 @ vv
    return out


def linear_rotary_ref(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rotate,
    basis: torch.Tensor | None = None,
    causal: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor:
    """RoFormer linear attention (Su et al. 2021, eq. 19) by loops over query and key:

    out_i = Σ_j (R_i W φq_i)·(R_j W φk_j) v_j / (Σ_j φq_i·φk_j + eps), φ = elu + 1,
    R_n the rotation ``rotate`` applies at position n, W the basis (identity if None).
    """
    q, k, v = q.double(), k.double(), v.double()
    fq, fk = feature_ref(q, "elu"), feature_ref(k, "elu")
    if basis is not None:
        fq, fk = fq @ basis.double().T, fk @ basis.double().T
    rq, rk = rotate(fq), rotate(fk)
    dq, dk = feature_ref(q, "elu"), feature_ref(k, "elu")
    b, h, length, _ = q.shape
    out = torch.zeros(b, h, length, v.shape[-1], dtype=torch.float64)
    for i in range(length):
        js = range(i + 1) if causal else range(length)
        num = sum((rq[:, :, i] * rk[:, :, j]).sum(-1, keepdim=True) * v[:, :, j] for j in js)
        den = sum((dq[:, :, i] * dk[:, :, j]).sum(-1, keepdim=True) for j in js)
        out[:, :, i] = num / (den + eps)
    return out
