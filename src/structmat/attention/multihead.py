"""Multi-head attention with a pluggable mixer: exact softmax, linear or Nyström.

Projections W_q, W_k, W_v (d_model -> heads·D), an optional rotary embedding on q and k,
the mixer, an optional depthwise convolution skip on v (Nyströmformer, Xiong et al. 2021,
§3.3), and the output projection W_o.

Rotary under linear attention follows RoFormer (Su et al. 2021, eq. 19): the rotation acts
after the feature map, on the numerator only, so the normaliser stays positive. A general
RoPE R(n) = P R_std(n) Pᵀ (kexue.fm/archives/9403) has an orthogonal basis P that, under
softmax attention, is absorbed into W_q and W_k; under linear attention it sits after the
non-linear feature map and cannot be, so ``learnable_basis=True`` learns it (an orthogonal
D×D matrix, torch's orthogonal parametrisation, started at the identity).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import orthogonal

from structmat._checks import (
    check_choice,
    check_finite,
    check_positive_int,
    check_tensor,
    check_width_dtype,
    fail,
)
from structmat.attention._validate import check_mask, compute_dtype
from structmat.attention.conv import sequence_conv
from structmat.attention.linear import (
    FEATURE_MAPS,
    _causal,
    _Features,
    _noncausal,
    apply_feature_map,
)
from structmat.attention.nystrom import PINV_METHODS, landmark_side, landmarks, query_side
from structmat.attention.softmax import _softmax

__all__ = ["MIXERS", "MultiHeadAttention"]

MIXERS = ("softmax", "linear", "nystrom")


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017, §3.2.2) with a choice of mixer.

    Args:
        d_model: model width; must be a multiple of ``heads``.
        heads: number of heads H; head dim D = d_model / heads.
        mixer: ``"softmax"`` (exact), ``"linear"`` (Katharopoulos et al. 2020) or
            ``"nystrom"`` (Xiong et al. 2021).
        rotary: None or a rotary embedding with ``rotate(x) -> x``, x (..., L, D)
            (e.g. ``structmat.rope.RotaryEmbedding(D)``), applied to q and k.
        causal: mask the future (softmax and linear mixers).
        bias: biases in the four projections.
        num_landmarks, pinv, pinv_iterations: Nyström options (see ``nystrom_attention``).
        conv_kernel: odd kernel size of a depthwise convolution over the sequence added to
            the output as a skip from v (the Nyströmformer's); None for none.
        feature_map, chunk_size: linear-attention options (see ``linear_attention``).
        learnable_basis: learn the orthogonal basis P of a general RoPE under linear
            attention (needs ``mixer="linear"`` and a ``rotary``).

    Shapes:
        forward(x: (B, L, d_model), mask: (B, L) bool or None, True = keep) -> (B, L, d_model).
    """

    def __init__(
        self,
        d_model: int,
        heads: int,
        mixer: str = "softmax",
        rotary: Any = None,
        causal: bool = False,
        bias: bool = True,
        num_landmarks: int = 64,
        pinv: str = "newton",
        pinv_iterations: int | None = None,
        conv_kernel: int | None = None,
        feature_map: str = "elu",
        chunk_size: int = 64,
        learnable_basis: bool = False,
    ) -> None:
        super().__init__()
        check_positive_int(d_model, "d_model")
        check_positive_int(heads, "heads")
        if d_model % heads:
            raise fail("d_model", f"a multiple of heads = {heads}", repr(d_model))
        check_choice(mixer, "mixer", MIXERS)
        check_choice(pinv, "pinv", PINV_METHODS)
        check_choice(feature_map, "feature_map", FEATURE_MAPS)
        check_positive_int(num_landmarks, "num_landmarks")
        check_positive_int(chunk_size, "chunk_size")
        if pinv_iterations is not None:
            check_positive_int(pinv_iterations, "pinv_iterations")
        if rotary is not None and not callable(getattr(rotary, "rotate", None)):
            raise fail("rotary", "None or an object with rotate(x)", type(rotary).__name__)
        if causal and mixer == "nystrom":
            raise fail("causal", "False with mixer='nystrom' (landmarks mix all tokens)", "True")
        if conv_kernel is not None:
            check_positive_int(conv_kernel, "conv_kernel")
            if conv_kernel % 2 == 0:
                raise fail(
                    "conv_kernel", "an odd kernel size (keeps the length)", repr(conv_kernel)
                )
        if learnable_basis and (mixer != "linear" or rotary is None):
            raise fail(
                "learnable_basis",
                "False unless mixer='linear' with a rotary (softmax absorbs P into W_q, W_k)",
                f"True with mixer={mixer!r}, rotary={type(rotary).__name__}",
            )
        self.d_model, self.heads, self.head_dim = d_model, heads, d_model // heads
        self.mixer, self.causal = mixer, causal
        self.num_landmarks, self.pinv, self.pinv_iterations = num_landmarks, pinv, pinv_iterations
        self.feature_map, self.chunk_size = feature_map, chunk_size
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.rotary = rotary
        self.conv: nn.Conv2d | None = None
        if conv_kernel is not None:
            # Depthwise over the sequence, per head, shared over the head dim (as the paper's).
            self.conv = nn.Conv2d(
                heads,
                heads,
                (conv_kernel, 1),
                padding=(conv_kernel // 2, 0),
                groups=heads,
                bias=False,
            )
        self.basis: nn.Module | None = None
        if learnable_basis:
            basis = nn.Linear(self.head_dim, self.head_dim, bias=False)
            with torch.no_grad():
                basis.weight.copy_(torch.eye(self.head_dim))
            # The parametrisation keeps the weight orthogonal; it starts at the identity.
            self.basis = orthogonal(basis)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, length, _ = t.shape
        return t.view(b, length, self.heads, self.head_dim).transpose(1, 2)  # (B, H, L, D)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend over x.

        Args:
            x: (B, L, d_model).
            mask: (B, L) bool, True = keep; padded tokens take no part as keys (nor as
                landmarks); outputs at padded positions are meaningless.

        Returns:
            (B, L, d_model).
        """
        check_tensor(x, "x", "(B, L, d_model)", 3)
        layout = f"(B, L, d_model = {self.d_model})"
        whose = "the layer's; convert it with .to()"
        check_width_dtype(x, self.d_model, layout, self.q_proj.weight.dtype, whose)
        # as the functional attention: NaN / inf inputs are rejected, not propagated
        check_finite(x, "x")
        b, length, _ = x.shape
        mask = check_mask(mask, b, length)
        if self.mixer == "nystrom":
            out, v = self._nystrom(x, mask)
        else:
            # One matmul for the three projections (one larger GEMM runs faster than three).
            w = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
            bias = None
            if self.q_proj.bias is not None:
                bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
            qkv = F.linear(x, w, bias).view(b, length, 3, self.heads, self.head_dim)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, L, D) views
            del qkv
            if self.mixer == "linear":
                out = self._linear(q, k, v, mask)
            else:
                if self.rotary is not None:
                    q, k = self.rotary.rotate(q), self.rotary.rotate(k)
                out = _softmax(q, k, v, self.causal, mask, None)
            del q, k
        if self.conv is not None:
            if mask is not None:
                v = v.masked_fill(~mask[:, None, :, None], 0.0)  # padding adds nothing
            # = out + self.conv(v), by block matmuls (faster than the CPU conv kernel); added
            # in place when no gradient is recorded (autograd needs the attention output).
            if torch.is_grad_enabled():
                out = out + sequence_conv(v, self.conv.weight)
            else:
                sequence_conv(v, self.conv.weight, out=out)
        del v
        out = out.transpose(1, 2).reshape(b, length, self.d_model)  # (B, L, d_model)
        return self.out_proj(out)

    def _nystrom(
        self, x: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Nyström attention (B, H, L, D) and v, holding at most three (B, L, d_model) tensors.

        Separate projections, so that K is freed as soon as the landmark side is done:
        peak memory is Q, K, V, then Q, V and the output, never four of them.
        """
        q = self._split(self.q_proj(x))  # (B, H, L, D)
        k = self._split(self.k_proj(x))  # (B, H, L, D)
        if self.rotary is not None:
            q, k = self.rotary.rotate(q), self.rotary.rotate(k)
        ct = compute_dtype(q.dtype)  # 16-bit inputs run in float32 (see nystrom_attention)
        q, k = q.to(ct), k.to(ct)
        scale = 1.0 / math.sqrt(self.head_dim)
        q_lm, valid = landmarks(q, self.num_landmarks, mask)  # (B, H, m, D), (B, m)
        k_lm, _ = landmarks(k, self.num_landmarks, mask)  # (B, H, m, D)
        v = self._split(self.v_proj(x))  # (B, H, L, D)
        w, lm_keep = landmark_side(
            q_lm, k_lm, valid, k, v.to(ct), mask, self.pinv, self.pinv_iterations, scale
        )
        del k
        out = query_side(q, k_lm, w, lm_keep, scale).to(v.dtype)  # (B, H, L, D)
        return out, v

    def _linear(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Linear attention on (B, H, L, D) heads, rotary on the numerator (RoFormer eq. 19)."""
        ct = compute_dtype(q.dtype)
        qd = apply_feature_map(q.to(ct), self.feature_map)  # (B, H, L, D)
        kd = apply_feature_map(k.to(ct), self.feature_map)
        if mask is not None:
            kd = kd * mask[:, None, :, None].to(ct)  # padded keys drop out of both sums
        qn, kn = qd, kd
        if self.rotary is not None:
            if self.basis is not None:
                # Row vectors: φ ↦ φ Wᵀ = (W φ)ᵀ with W orthogonal, the learned basis change.
                qn, kn = self.basis(qn), self.basis(kn)
            qn, kn = self.rotary.rotate(qn), self.rotary.rotate(kn)
        eps = 1e-6
        vc = v.to(ct)
        f = _Features(qn, kn, qd, kd)
        if self.causal:
            out, _ = _causal(f, vc, eps, self.chunk_size, None)
        else:
            out = _noncausal(f, vc, eps)
        return out.to(q.dtype)
