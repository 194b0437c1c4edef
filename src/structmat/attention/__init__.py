"""Attention: exact softmax, kernelised linear and Nyström attention, and a cost model.

- ``softmax_attention``: checked wrapper over ``scaled_dot_product_attention``.
- ``linear_attention`` (+ ``causal_linear_attention``, ``linear_attention_step``):
  Katharopoulos et al. 2020, causal by chunked prefix sums.
- ``nystrom_attention`` (+ ``landmarks``, ``newton_schulz_pinv``): Xiong et al. 2021.
- ``MultiHeadAttention``: projections, optional rotary, a pluggable mixer.
- ``cost``: FLOP and byte counts of a Transformer layer; ``crossover_length``.
"""

from structmat.attention import cost
from structmat.attention.cost import crossover_length, layer_bytes, layer_flops
from structmat.attention.linear import (
    LinearAttentionState,
    causal_linear_attention,
    linear_attention,
    linear_attention_step,
)
from structmat.attention.multihead import MultiHeadAttention
from structmat.attention.nystrom import landmarks, newton_schulz_pinv, nystrom_attention
from structmat.attention.softmax import softmax_attention

__all__ = [
    "LinearAttentionState",
    "MultiHeadAttention",
    "causal_linear_attention",
    "cost",
    "crossover_length",
    "landmarks",
    "layer_bytes",
    "layer_flops",
    "linear_attention",
    "linear_attention_step",
    "newton_schulz_pinv",
    "nystrom_attention",
    "softmax_attention",
]
