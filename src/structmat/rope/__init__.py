"""Rotary position embeddings: 1D (with context scaling), 2D for images, and general RoPE.

* :func:`apply_rotary`, :class:`RotaryEmbedding`: 1D RoPE, ``half`` or ``interleaved``
  pair layout, offsets for cached decoding, linear / NTK / dynamic-NTK / YaRN /
  Llama-3 scaling (:mod:`structmat.rope.scaling`).
* :func:`apply_rotary_2d`, :class:`RotaryEmbedding2D`: axial and mixed 2D RoPE.
* :func:`general_rotary`, :func:`to_standard`, :func:`absorb_generator`: RoPE as
  ``expm(n B)`` and its reduction to standard RoPE after an orthogonal basis change.
"""

from structmat.rope.axial import (
    RotaryEmbedding2D,
    apply_rotary_2d,
    axial_frequencies,
    grid_positions,
    mixed_frequencies,
)
from structmat.rope.general import absorb_generator, blockdiag_rotation, general_rotary, to_standard
from structmat.rope.rotary import (
    RotaryEmbedding,
    apply_rotary,
    convert_rotary_weight,
    layout_permutation,
)
from structmat.rope.rotation import LAYOUTS
from structmat.rope.scaling import SCALING_KINDS, RopeScaling, inverse_frequencies, parse_scaling

__all__ = [
    "LAYOUTS",
    "SCALING_KINDS",
    "RopeScaling",
    "RotaryEmbedding",
    "RotaryEmbedding2D",
    "absorb_generator",
    "apply_rotary",
    "apply_rotary_2d",
    "axial_frequencies",
    "blockdiag_rotation",
    "convert_rotary_weight",
    "general_rotary",
    "grid_positions",
    "inverse_frequencies",
    "layout_permutation",
    "mixed_frequencies",
    "parse_scaling",
    "to_standard",
]
