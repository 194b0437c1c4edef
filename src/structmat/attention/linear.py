"""Kernelised linear attention (Katharopoulos et al., "Transformers are RNNs", ICML 2020).

With a positive feature map φ, softmax(q kᵀ) is replaced by φ(q) φ(k)ᵀ, so that (eq. 5)

    out_i = φ(q_i)ᵀ S / (φ(q_i)ᵀ z + eps),  S = Σ_j φ(k_j) v_jᵀ (D, Dv),  z = Σ_j φ(k_j) (D,)

costs O(L·D·Dv) instead of O(L²·D). Causal attention sums only j <= i (eq. 8-9): here by
chunks, quadratic inside a chunk of C tokens and a carried (S, z) state between chunks, so
memory stays O(L·D + D·Dv + C²) instead of the O(L·D·Dv) of a cumulative sum over all
prefixes. ``linear_attention_step`` is the recurrent form for decoding (eq. 18-20).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from structmat._checks import (
    check_choice,
    check_ndim,
    check_number,
    check_positive_int,
    check_tensor,
    fail,
)
from structmat.attention._validate import check_mask, check_qkv, compute_dtype

__all__ = [
    "FEATURE_MAPS",
    "LinearAttentionState",
    "apply_feature_map",
    "causal_linear_attention",
    "linear_attention",
    "linear_attention_step",
]

FEATURE_MAPS = ("elu", "relu")


class LinearAttentionState(NamedTuple):
    """Running sums of causal linear attention (Katharopoulos et al. 2020, eq. 18-19).

    Attributes:
        kv: (B, H, D, Dv) S = Σ_j φ(k_j) v_jᵀ over the tokens seen so far.
        k_sum: (B, H, D) z = Σ_j φ(k_j).
    """

    kv: torch.Tensor
    k_sum: torch.Tensor


def apply_feature_map(x: torch.Tensor, feature_map: str) -> torch.Tensor:
    """φ(x): ``"elu"`` is elu(x) + 1 (Katharopoulos et al. 2020, eq. 7), ``"relu"`` is max(x, 0).

    Args:
        x: (..., D).

    Returns:
        (..., D), non-negative.
    """
    if feature_map == "elu":
        return F.elu(x).add_(1.0)  # in place on elu's fresh output: one tensor, not two
    return F.relu(x)


def _state(kf: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """[S | z] = [φ(K)ᵀ V | Σ φ(k_j)] (B, H, D, Dv + 1): numerator and normaliser sums in one.

    Carrying z as an extra value column lets one matmul φ(q) [S | z] give both the
    numerator and the normaliser of every query.
    """
    return torch.cat([kf.transpose(-1, -2) @ v, kf.sum(dim=-2).unsqueeze(-1)], dim=-1)


def _read(num_den: torch.Tensor, eps: float) -> torch.Tensor:
    """Split φ(q) [S | z] (..., Dv + 1) into numerator / (normaliser + eps), (..., Dv)."""
    den = num_den[..., -1:].add_(eps)  # (..., 1)
    return num_den[..., :-1] / den


class _Features(NamedTuple):
    """Query and key features: numerator (qn, kn) and denominator (qd, kd), (B, H, L, D).

    The two pairs differ only when a rotary embedding acts on the numerator (RoFormer,
    Su et al. 2021, eq. 19); ``_Features.of(qf, kf)`` is the usual one pair for both.
    """

    qn: torch.Tensor
    kn: torch.Tensor
    qd: torch.Tensor
    kd: torch.Tensor

    @classmethod
    def of(cls, qf: torch.Tensor, kf: torch.Tensor) -> _Features:
        return cls(qf, kf, qf, kf)

    @property
    def same(self) -> bool:
        return self.qn is self.qd and self.kn is self.kd


def _noncausal(f: _Features, v: torch.Tensor, eps: float) -> torch.Tensor:
    """Non-causal core on features ``f``; v (B, H, L, Dv)."""
    qn, kn, qd, kd = f
    if f.same:
        return _read(qn @ _state(kn, v), eps)  # (B, H, Lq, Dv)
    kv = kn.transpose(-1, -2) @ v  # (B, H, D, Dv)
    num = qn @ kv  # (B, H, Lq, Dv)
    den = qd @ kd.sum(dim=-2).unsqueeze(-1)  # (B, H, Lq, 1)
    return num / (den + eps)


def _causal(
    f: _Features, v: torch.Tensor, eps: float, chunk_size: int, state: LinearAttentionState | None
) -> tuple[torch.Tensor, LinearAttentionState]:
    """Causal core by chunks: shapes as in ``_noncausal`` (Lq == L); returns (out, state)."""
    qn, kn, qd, kd = f
    b, h, length, d = qn.shape
    dv = v.shape[-1]
    if state is None:
        s = qn.new_zeros(b, h, d, dv)  # (B, H, D, Dv)
        z = qn.new_zeros(b, h, d, 1)  # (B, H, D, 1)
    else:
        s = state.kv.to(qn.dtype)
        z = state.k_sum.to(qn.dtype).unsqueeze(-1)  # (B, H, D, 1)
    out = qn.new_empty(b, h, length, dv)
    if f.same:
        # Values with a column of ones: one matmul per term gives numerator and normaliser.
        sz = torch.cat([s, z], dim=-1)  # (B, H, D, Dv + 1)
        ones = qn.new_ones(b, h, min(chunk_size, length), 1)
        for start in range(0, length, chunk_size):
            stop = min(start + chunk_size, length)
            q_c, k_c = qn[:, :, start:stop], kn[:, :, start:stop]
            v_c = torch.cat([v[:, :, start:stop], ones[:, :, : stop - start]], dim=-1)
            a = (q_c @ k_c.transpose(-1, -2)).tril_()  # (B, H, C, C), future masked (eq. 8)
            out[:, :, start:stop] = _read(a @ v_c + q_c @ sz, eps)
            sz = sz + k_c.transpose(-1, -2) @ v_c  # carry the chunk into the state
        return out, LinearAttentionState(sz[..., :-1], sz[..., -1])
    for start in range(0, length, chunk_size):
        stop = min(start + chunk_size, length)
        qn_c, kn_c, v_c = qn[:, :, start:stop], kn[:, :, start:stop], v[:, :, start:stop]
        # Inside the chunk: the quadratic form with the future masked out (eq. 8).
        a = (qn_c @ kn_c.transpose(-1, -2)).tril()  # (B, H, C, C)
        num = a @ v_c + qn_c @ s  # (B, H, C, Dv)
        qd_c, kd_c = qd[:, :, start:stop], kd[:, :, start:stop]
        ad = (qd_c @ kd_c.transpose(-1, -2)).tril()  # (B, H, C, C)
        den = ad.sum(dim=-1, keepdim=True) + qd_c @ z  # (B, H, C, 1)
        out[:, :, start:stop] = num / (den + eps)
        # Carry the chunk's keys into the state for every later chunk.
        s = s + kn_c.transpose(-1, -2) @ v_c
        z = z + kd_c.sum(dim=-2).unsqueeze(-1)
    return out, LinearAttentionState(s, z.squeeze(-1))


def _check_common(feature_map: str, chunk_size: int, eps: float) -> None:
    check_choice(feature_map, "feature_map", FEATURE_MAPS)
    check_positive_int(chunk_size, "chunk_size")
    check_number(eps, "eps", 0.0)


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    feature_map: str = "elu",
    mask: torch.Tensor | None = None,
    chunk_size: int = 64,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Linear attention φ(q) [φ(k)ᵀ v] / (φ(q) Σ φ(k) + eps) (Katharopoulos et al. 2020, eq. 5).

    Args:
        q: (B, H, Lq, D) queries (Lq == L when ``causal``).
        k: (B, H, L, D) keys.
        v: (B, H, L, Dv) values.
        causal: token i sees tokens j <= i (eq. 8-9), computed by chunks.
        feature_map: ``"elu"`` (elu + 1, the paper's) or ``"relu"``.
        mask: (B, L) bool padding mask over the keys, True = keep; padded keys get φ = 0.
        chunk_size: tokens per chunk for the causal form (memory O(L·D + D·Dv + C²)).
        eps: added to the normaliser (a relu feature map can make it 0).

    Returns:
        (B, H, Lq, Dv) in the dtype of q. 16-bit inputs are computed in float32.

    Raises:
        ValueError: bad shapes, dtypes, mask or options.
    """
    check_qkv(q, k, v)
    _check_common(feature_map, chunk_size, eps)
    mask = check_mask(mask, k.shape[0], k.shape[2])
    if causal and q.shape[2] != k.shape[2]:
        raise fail("q", f"length Lq = L = {k.shape[2]} when causal", f"Lq = {q.shape[2]}")
    ct = compute_dtype(q.dtype)
    kf = apply_feature_map(k.to(ct), feature_map)  # (B, H, L, D)
    if mask is not None:
        kf = kf.mul_(mask[:, None, :, None].to(ct))  # padded keys drop out of both sums
    vc = v.to(ct)
    if causal:
        qf = apply_feature_map(q.to(ct), feature_map)  # (B, H, L, D)
        out, _ = _causal(_Features.of(qf, kf), vc, eps, chunk_size, None)
    else:
        state = _state(kf, vc)  # (B, H, D, Dv + 1)
        del kf  # free φ(K) before φ(Q) is made
        out = _read(apply_feature_map(q.to(ct), feature_map) @ state, eps)  # (B, H, Lq, Dv)
    return out.to(q.dtype)


def causal_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    state: LinearAttentionState | None = None,
    feature_map: str = "elu",
    chunk_size: int = 64,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, LinearAttentionState]:
    """Causal linear attention that starts from and returns the running state.

    Use it to process a prompt, then continue token by token with ``linear_attention_step``.

    Args:
        q, k: (B, H, L, D); v: (B, H, L, Dv).
        state: sums over earlier tokens (None: no earlier tokens).
        feature_map, chunk_size, eps: as in ``linear_attention``.

    Returns:
        out (B, H, L, Dv) in q's dtype, and the state after the last token (in the compute
        dtype: float32 for 16-bit inputs).
    """
    check_qkv(q, k, v)
    _check_common(feature_map, chunk_size, eps)
    if q.shape[2] != k.shape[2]:
        raise fail("q", f"length Lq = L = {k.shape[2]} when causal", f"Lq = {q.shape[2]}")
    b, h, _, d = q.shape
    if state is not None:
        _check_state(state, b, h, d, v.shape[-1])
    ct = compute_dtype(q.dtype)
    qf = apply_feature_map(q.to(ct), feature_map)
    kf = apply_feature_map(k.to(ct), feature_map)
    out, new_state = _causal(_Features.of(qf, kf), v.to(ct), eps, chunk_size, state)
    return out.to(q.dtype), new_state


def _check_state(state: LinearAttentionState, b: int, h: int, d: int, dv: int) -> None:
    if not isinstance(state, LinearAttentionState):
        raise fail("state", "a LinearAttentionState or None", type(state).__name__)
    check_tensor(state.kv, "state.kv", "(B, H, D, Dv)", kind="float")
    check_tensor(state.k_sum, "state.k_sum", "(B, H, D)", kind="float")
    if state.kv.shape != (b, h, d, dv) or state.k_sum.shape != (b, h, d):
        raise fail(
            "state",
            f"kv (B, H, D, Dv) = ({b}, {h}, {d}, {dv}) and k_sum (B, H, D) = ({b}, {h}, {d})",
            f"kv {tuple(state.kv.shape)} and k_sum {tuple(state.k_sum.shape)}",
        )


def linear_attention_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    state: LinearAttentionState | None = None,
    feature_map: str = "elu",
    eps: float = 1e-6,
) -> tuple[torch.Tensor, LinearAttentionState]:
    """One decoding step of causal linear attention (Katharopoulos et al. 2020, eq. 18-20).

    S ← S + φ(k_t) v_tᵀ, z ← z + φ(k_t), out_t = φ(q_t)ᵀ S / (φ(q_t)ᵀ z + eps).

    Args:
        q, k: (B, H, D) the current token's query and key.
        v: (B, H, Dv) its value.
        state: sums over the earlier tokens (None: this is the first token).
        feature_map, eps: as in ``linear_attention``.

    Returns:
        out (B, H, Dv) in q's dtype, and the new state (the old one is not modified).

    Raises:
        ValueError: bad shapes, dtypes or state.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise fail(name, "a tensor (B, H, D)", type(t).__name__)
        check_ndim(t, name, 3, "(B, H, D)")
    check_qkv(q.unsqueeze(2), k.unsqueeze(2), v.unsqueeze(2))
    _check_common(feature_map, 1, eps)
    b, h, d = q.shape
    if state is not None:
        _check_state(state, b, h, d, v.shape[-1])
    ct = compute_dtype(q.dtype)
    qf = apply_feature_map(q.to(ct), feature_map)  # (B, H, D)
    kf = apply_feature_map(k.to(ct), feature_map)  # (B, H, D)
    kv = kf.unsqueeze(-1) * v.to(ct).unsqueeze(-2)  # (B, H, D, Dv)
    k_sum = kf
    if state is not None:
        kv = kv + state.kv.to(ct)
        k_sum = k_sum + state.k_sum.to(ct)
    num = (qf.unsqueeze(-2) @ kv).squeeze(-2)  # (B, H, Dv)
    den = (qf * k_sum).sum(dim=-1, keepdim=True)  # (B, H, 1)
    return (num / (den + eps)).to(q.dtype), LinearAttentionState(kv, k_sum)
