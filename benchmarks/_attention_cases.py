"""The cases of benchmarks/attention.py: sizes, inputs and the attention implementations.

``core_fn`` gives the functional attention cases (``CORE``), ``build_modules`` the
module cases (``MODULES``) with the same projection, conv and output weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from structmat.attention import MultiHeadAttention, linear_attention, nystrom_attention

HEADS, HEAD_DIM, LANDMARKS, CONV = 8, 64, 64, 33
D_MODEL = HEADS * HEAD_DIM
CORE = ("sdpa", "ours-nystrom", "ours-nystrom-6", "ours-linear")
MODULES = ("exact", "ours", "ours-6", "nystrom-attention", "hf-nystromformer")


# ----------------------------------------------------------------------------- inputs


def smooth(shape: tuple[int, ...], seed: int, nfreq: int = 16) -> torch.Tensor:
    """Sequences varying smoothly along the second-to-last axis (structured inputs)."""
    g = torch.Generator().manual_seed(seed)
    *lead, length, d = shape
    t = torch.linspace(0, 1, length)[:, None]  # (L, 1)
    freq = 20 * torch.randn(*lead, 1, nfreq, generator=g)
    phase = 6.3 * torch.rand(*lead, 1, nfreq, generator=g)
    mix = torch.randn(*lead, nfreq, d, generator=g)
    return torch.sin(t * freq + phase) @ mix / math.sqrt(nfreq)  # (..., L, d)


def core_inputs(n: int, kind: str, seed: int = 0) -> tuple[torch.Tensor, ...]:
    shape = (1, HEADS, n, HEAD_DIM)
    if kind == "smooth":
        return smooth(shape, seed), smooth(shape, seed + 1), torch.randn(
            shape, generator=torch.Generator().manual_seed(seed + 2))
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(shape, generator=g) for _ in range(3))


def exact_rows(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    """Exact softmax attention for the query rows ``rows`` only: (..., len(rows), D)."""
    return F.scaled_dot_product_attention(q[..., rows, :], k, v)


def module_input(n: int, kind: str, seed: int = 0) -> torch.Tensor:
    if kind == "smooth":
        return 2 * smooth((1, n, D_MODEL), seed)
    return torch.randn(1, n, D_MODEL, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- cases


def core_fn(name: str) -> Callable[..., torch.Tensor]:
    if name == "sdpa":
        return F.scaled_dot_product_attention
    if name == "ours-nystrom":
        return lambda q, k, v: nystrom_attention(q, k, v, LANDMARKS)
    if name == "ours-nystrom-6":
        return lambda q, k, v: nystrom_attention(q, k, v, LANDMARKS, pinv_iterations=6)
    if name == "ours-linear":
        return lambda q, k, v: linear_attention(q, k, v)
    raise KeyError(name)


class HFWithOutput(nn.Module):
    """Hugging Face's Nyström self-attention plus the output projection it leaves out."""

    def __init__(self, n: int) -> None:
        super().__init__()
        from transformers import NystromformerConfig
        from transformers.models.nystromformer.modeling_nystromformer import (
            NystromformerSelfAttention,
        )

        cfg = NystromformerConfig(
            hidden_size=D_MODEL, num_attention_heads=HEADS, num_landmarks=LANDMARKS,
            segment_means_seq_len=n, conv_kernel_size=CONV, inv_coeff_init_option=False,
            attention_probs_dropout_prob=0.0,
        )
        self.attn = NystromformerSelfAttention(cfg)
        self.out = nn.Linear(D_MODEL, D_MODEL, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.attn(x)[0])


def build_modules(n: int, names: tuple[str, ...] = MODULES) -> dict[str, nn.Module]:
    """Every module with the same projection, conv and output weights (biases zero)."""
    torch.manual_seed(0)
    ours = MultiHeadAttention(D_MODEL, HEADS, "nystrom", num_landmarks=LANDMARKS,
                              conv_kernel=CONV, bias=False)
    state = ours.state_dict()
    out: dict[str, nn.Module] = {}
    for name in names:
        if name == "ours":
            out[name] = ours
        elif name in ("ours-6", "exact"):
            m = MultiHeadAttention(
                D_MODEL, HEADS, "softmax" if name == "exact" else "nystrom",
                num_landmarks=LANDMARKS, pinv_iterations=6, conv_kernel=CONV, bias=False,
            )
            m.load_state_dict(state)
            out[name] = m
        elif name == "nystrom-attention":
            from nystrom_attention import NystromAttention

            m = NystromAttention(D_MODEL, dim_head=HEAD_DIM, heads=HEADS,
                                 num_landmarks=LANDMARKS, pinv_iterations=6, residual=True,
                                 residual_conv_kernel=CONV)
            with torch.no_grad():
                m.to_qkv.weight.copy_(torch.cat(
                    [state["q_proj.weight"], state["k_proj.weight"], state["v_proj.weight"]]))
                m.res_conv.weight.copy_(state["conv.weight"])
                m.to_out[0].weight.copy_(state["out_proj.weight"])
                m.to_out[0].bias.zero_()
            out[name] = m
        elif name == "hf-nystromformer":
            m = HFWithOutput(n)
            with torch.no_grad():
                for ours_key, lin in (("q_proj", m.attn.query), ("k_proj", m.attn.key),
                                      ("v_proj", m.attn.value)):
                    lin.weight.copy_(state[f"{ours_key}.weight"])
                    lin.bias.zero_()
                m.attn.conv.weight.copy_(state["conv.weight"])
                m.out.weight.copy_(state["out_proj.weight"])
            out[name] = m
    for m in out.values():
        m.eval()
    return out
