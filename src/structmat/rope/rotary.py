"""1D rotary position embedding (RoPE): ``apply_rotary`` and ``RotaryEmbedding``.

RoFormer (Su et al. 2021, eqs. 14-16; kexue.fm/archives/8265): position ``n`` turns
rotary pair ``i`` of a query or key by ``n * theta_i``, ``theta_i = base ** (-2i/D)``,
i.e. ``x -> R_n x`` with ``R_n = blockdiag(rot(n theta_i))``. Because
``R_m^T R_n = R_{n-m}``, the score ``<R_m q, R_n k> = <q, R_{n-m} k>`` depends on
positions only through their offset.

Pair layouts (see :mod:`structmat.rope.rotation`): ``"half"`` pairs ``(x[i], x[i+D/2])``
(Hugging Face GPT-NeoX / Llama checkpoints), ``"interleaved"`` pairs
``(x[2i], x[2i+1])`` (RoFormer, Meta Llama, GPT-J). :func:`layout_permutation` and
:func:`convert_rotary_weight` move q/k projection weights between them with
identical attention scores.

Precision: angles ``n * theta_i`` are formed and turned into cos/sin in float64
(float32 on devices without float64), then rounded once to the compute dtype
(float32, or float64 for float64 inputs). Forming them in bf16/fp16, or even
float32, drifts at long positions: at ``n = 10^6`` a float32 angle is off by ~0.03 rad.
16-bit inputs are rotated in float32 and rounded once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from structmat._checks import (
    as_tensor,
    check_choice,
    check_even_int,
    check_floating,
    check_int,
    check_ndim,
    check_number,
    check_positive_int,
    fail,
    shape_str,
)
from structmat.rope._validate import as_positions, check_tokens
from structmat.rope.rotation import LAYOUTS, compute_dtype, rotate_pairs
from structmat.rope.scaling import RopeScaling, inverse_frequencies, parse_scaling

__all__ = [
    "RotaryEmbedding",
    "apply_rotary",
    "convert_rotary_weight",
    "layout_permutation",
    "rotary_angles",
]


# A cached table: (length, frequency key, cos, sin).
_Tables = tuple[int, Any, torch.Tensor, torch.Tensor]


def _angle_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device has it (the MPS backend does not)."""
    return torch.float32 if device.type == "mps" else torch.float64


def rotary_angles(positions: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Angles ``n * theta_i`` in float64 (float32 on MPS).

    Args:
        positions: (..., L) integer or float positions.
        inv_freq: (P,) frequencies theta_i.

    Returns:
        (..., L, P) angles on ``positions.device``.
    """
    dt = _angle_dtype(positions.device)
    pos = positions.to(dt)
    return pos.unsqueeze(-1) * inv_freq.to(device=positions.device, dtype=dt)  # (..., L, P)


def _check_layout(layout: Any) -> None:
    check_choice(layout, "layout", LAYOUTS)


def _check_base(base: Any) -> None:
    check_number(base, "base", 1.0, low_open=True)


def _check_x(x: Any, rotary_dim: int | None) -> tuple[torch.Tensor, int]:
    """Validate x (..., L, D) and the rotary width; returns (x, R)."""
    check_tokens(x)
    D = x.shape[-1]
    if rotary_dim is None:
        # all D channels rotate: x itself must hold whole pairs
        if D < 2 or D % 2:
            got = f"shape {shape_str(x.shape)} (D odd)" if D % 2 else f"shape {shape_str(x.shape)}"
            raise fail("x", "an even number of rotary channels (pairs)", got)
        return x, D
    check_int(rotary_dim, "rotary_dim", 2, D, wanted=f"an even integer in [2, {D}] (x's last dim)")
    if rotary_dim % 2:
        raise fail("rotary_dim", "an even number of rotary channels (pairs)", repr(rotary_dim))
    return x, rotary_dim


def _positions(positions: Any, x: torch.Tensor) -> torch.Tensor:
    """Validate positions (L,) or (B, L) against x (..., L, D); returns them on x's device."""
    L = x.shape[-2]
    if positions is None:
        return torch.arange(L, device=x.device)

    def shape_ok(pos: torch.Tensor) -> bool:
        return (pos.ndim == 1 and pos.shape[0] == L) or (
            pos.ndim == 2 and x.ndim >= 3 and pos.shape == (x.shape[0], L)
        )

    wanted = (
        f"shape (L,) = ({L},) or (B, L) = ({x.shape[0] if x.ndim >= 3 else 'B'}, {L}) "
        f"for x of shape {shape_str(x.shape)}"
    )
    return as_positions(positions, "positions", shape_ok, wanted).to(x.device)


def _lift(table: torch.Tensor, x: torch.Tensor, per_batch: bool) -> torch.Tensor:
    """Table (L, P) or (B, L, P) -> shape broadcastable against x (..., L, D)."""
    if per_batch and x.ndim > 3:
        return table.reshape(table.shape[:1] + (1,) * (x.ndim - 3) + table.shape[1:])
    return table


def apply_rotary(
    x: torch.Tensor,
    positions: Any = None,
    base: float = 10000.0,
    layout: str = "half",
    scaling: Any = None,
    *,
    rotary_dim: int | None = None,
    seq_len: int | None = None,
    freqs: Any = None,
) -> torch.Tensor:
    """Rotate queries or keys by their positions (RoFormer eq. 16).

    Args:
        x: (..., L, D) floating tensor (e.g. (B, H, L, D)); D even.
        positions: (L,) positions shared by all leading dims, or (B, L) one row per
            batch entry (ragged batches, x (B, ..., L, D)); integer or float. None
            means ``0 .. L-1``.
        base: RoPE base (``rope_theta``).
        layout: ``"half"`` or ``"interleaved"`` pair layout.
        scaling: context scaling, None / :class:`RopeScaling` / HF ``rope_scaling``
            dict (see :mod:`structmat.rope.scaling`). YaRN's attention factor is
            applied to the output.
        rotary_dim: rotate only the first R channels (partial rotary); None means D.
        seq_len: context length for ``dynamic`` scaling; None means
            ``max(positions) + 1``. For cached decoding use :class:`RotaryEmbedding`,
            which keeps the base fixed for a sequence.
        freqs: (R/2,) explicit frequencies theta_i (e.g. from
            :func:`~structmat.rope.to_standard`) instead of ``base`` and ``scaling``.

    Returns:
        (..., L, D) tensor, x's dtype and device.

    Raises:
        ValueError: odd D, positions not matching L, bad layout / base / scaling.
    """
    x, R = _check_x(x, rotary_dim)
    _check_layout(layout)
    _check_base(base)
    if seq_len is not None:
        check_positive_int(seq_len, "seq_len")
    spec = parse_scaling(scaling)
    pos = _positions(positions, x)
    if freqs is not None:
        if spec is not None:
            raise fail("scaling", "None when freqs is given", repr(scaling))
        inv_freq = as_tensor(freqs, "freqs")
        check_floating(inv_freq, "freqs")
        if inv_freq.shape != (R // 2,):
            raise fail("freqs", f"shape (R/2,) = ({R // 2},)", f"shape {shape_str(inv_freq.shape)}")
        factor = 1.0
    else:
        if spec is not None and spec.kind == "dynamic" and seq_len is None and pos.numel():
            seq_len = int(pos.max()) + 1
        inv_freq, factor = inverse_frequencies(R, float(base), spec, seq_len=seq_len)
    angles = rotary_angles(pos, inv_freq)  # (L, R/2) or (B, L, R/2)
    work = compute_dtype(x.dtype)
    cos = (angles.cos() * factor).to(work)
    sin = (angles.sin() * factor).to(work)
    per_batch = pos.ndim == 2
    return rotate_pairs(x, _lift(cos, x, per_batch), _lift(sin, x, per_batch), layout, R)


class RotaryEmbedding(nn.Module):
    """RoPE with cos/sin tables cached per device and dtype, grown on demand.

    Args:
        dim: rotary channels R (even). Inputs may have more channels; the first R
            rotate and the rest pass through (partial rotary, as GPT-NeoX / Phi).
        base: RoPE base (``rope_theta``).
        layout: ``"half"`` or ``"interleaved"``.
        scaling: None / :class:`RopeScaling` / HF ``rope_scaling`` dict.

    Speed (CPU, large inputs, benchmarks/rope.py): ``half`` runs as one loop compiled
    by inductor once eager calls have paid for the compile (about a copy in float32,
    1.2-1.6 copies in bfloat16; eager before that, 1.4-1.6 copies in float32), see
    :mod:`structmat.rope._compiled`. ``interleaved`` float32 is one complex multiply
    (1.1-1.2 copies, never compiled); in 16 bit it stays eager (2-4 copies). A
    checkpoint can be switched between layouts once, with identical attention
    scores, by :func:`convert_rotary_weight` on its q and k projections.

    Cached decoding: call ``rotate(k_new, offset=n_cached)`` on the new tokens
    only; keys in the cache keep the rotation they were stored with. ``offset``
    may be an int or a (B,) tensor (per-sequence lengths of a ragged batch).

    Dynamic NTK and the cache: the dynamic base depends on the context length.
    Transformers (and vLLM) recompute it as the sequence grows, so new keys and
    queries turn with a base different from the one the cached keys were stored
    with, and scores stop depending only on the offset. Here the base is chosen
    once per sequence, when a call starts one (``offset == 0``), from
    ``max(seq_len, L)`` (``seq_len``: the length the sequence will reach, e.g.
    prompt + max new tokens), and kept for every later call with ``offset > 0``,
    so all keys and queries of a sequence share one base. To change it, start the
    sequence again (recompute the cache) with a larger ``seq_len``.
    """

    def __init__(
        self,
        dim: int,
        base: float = 10000.0,
        layout: str = "half",
        scaling: Any = None,
    ) -> None:
        super().__init__()
        check_even_int(dim, "dim", wanted="an even integer >= 2 (rotary channels)")
        _check_base(base)
        _check_layout(layout)
        self.dim = dim
        self.base = float(base)
        self.layout = layout
        self.scaling: RopeScaling | None = parse_scaling(scaling)
        # Context length the dynamic-NTK base was chosen for (None: not started).
        self._dynamic_len: int | None = None
        # (device, dtype) -> (length, freq key, cos, sin); plain attribute, not buffers,
        # so state_dicts stay free of derived tables.
        self._cache: dict[tuple[torch.device, torch.dtype], _Tables] = {}

    @classmethod
    def from_hf(cls, config: Mapping[str, Any], layout: str = "half") -> RotaryEmbedding:
        """Build from a Hugging Face model config dict (``config.to_dict()``).

        Reads ``rope_theta`` (or ``rope_parameters["rope_theta"]``), ``head_dim``
        (or ``hidden_size / num_attention_heads``), ``partial_rotary_factor`` and
        ``rope_scaling`` / ``rope_parameters``; for ``dynamic`` the trained length
        is ``max_position_embeddings`` as in transformers.
        """
        params = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
        base = params.pop("rope_theta", None) or config.get("rope_theta", 10000.0)
        partial = params.pop("partial_rotary_factor", None) or config.get(
            "partial_rotary_factor", 1.0
        )
        head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
        dim = int(head_dim * partial)
        scaling: dict[str, Any] | None = params or None
        if scaling is not None:
            kind = scaling.get("rope_type", scaling.get("type"))
            if kind in ("yarn", "llama3") and "original_max_position_embeddings" not in scaling:
                scaling["original_max_position_embeddings"] = config.get(
                    "original_max_position_embeddings", config["max_position_embeddings"]
                )
            if kind == "dynamic":
                scaling["original_max_position_embeddings"] = config["max_position_embeddings"]
        return cls(dim, base=float(base), layout=layout, scaling=scaling)

    def inverse_frequencies(self, seq_len: int | None = None) -> tuple[torch.Tensor, float]:
        """(theta (dim/2,) float64, attention_factor) for a context of ``seq_len``."""
        return inverse_frequencies(self.dim, self.base, self.scaling, seq_len)

    @property
    def attention_factor(self) -> float:
        """Factor cos and sin carry (YaRN temperature; 1.0 for other scalings)."""
        return self.inverse_frequencies()[1]

    def tables(
        self, length: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin, each (>= length, dim/2), for positions 0, 1, ...; cached.

        The cache grows to the next power of two past ``length``. The tables are
        computed in float64 and rounded once to ``dtype``.
        """
        check_int(length, "length", 0)
        device = torch.device(device)
        freq_key = self._dynamic_len if self._is_dynamic else None
        hit = self._cache.get((device, dtype))
        if hit is not None and hit[0] >= length and hit[1] == freq_key:
            return hit[2], hit[3]
        size = max(16, 1 << max(0, length - 1).bit_length())
        if hit is not None and hit[1] == freq_key:
            size = max(size, hit[0])
        inv_freq, factor = self.inverse_frequencies(freq_key)
        angles = rotary_angles(torch.arange(size, device=device), inv_freq)  # (size, dim/2)
        cos = (angles.cos() * factor).to(dtype)
        sin = (angles.sin() * factor).to(dtype)
        self._cache[(device, dtype)] = (size, freq_key, cos, sin)
        return cos, sin

    @property
    def _is_dynamic(self) -> bool:
        return self.scaling is not None and self.scaling.kind == "dynamic"

    def rotate(self, x: torch.Tensor, offset: Any = 0, seq_len: int | None = None) -> torch.Tensor:
        """Rotate x at positions ``offset, offset + 1, ..., offset + L - 1``.

        Args:
            x: (..., L, D) with D >= dim; (B, ..., L, D) when ``offset`` is a tensor.
            offset: int >= 0, or (B,) integer tensor of per-sequence offsets.
            seq_len: dynamic NTK only: the length this sequence will reach; read when
                a sequence starts (offset 0), see the class docstring.

        Returns:
            (..., L, D) tensor of x's dtype.
        """
        x, _ = _check_x(x, self.dim)
        if seq_len is not None:
            check_positive_int(seq_len, "seq_len")
        L = x.shape[-2]
        if isinstance(offset, torch.Tensor):
            if offset.is_floating_point() or offset.is_complex() or offset.dtype == torch.bool:
                raise fail("offset", "an integer tensor", f"dtype {offset.dtype}")
            if not (offset.ndim == 1 and x.ndim >= 3 and offset.shape[0] == x.shape[0]):
                want = f"({x.shape[0]},)" if x.ndim >= 3 else "an int (x has no batch dim)"
                raise fail("offset", f"shape (B,) = {want}", f"shape {shape_str(offset.shape)}")
            if bool((offset < 0).any()):
                raise fail("offset", "offsets >= 0", f"min {int(offset.min())}")
            stop = int(offset.max()) + L
        else:
            check_int(offset, "offset", 0, wanted="an int >= 0 or a (B,) integer tensor")
            offset = int(offset)
            stop = offset + L
        if self._is_dynamic:
            if stop == L:  # every offset is 0: a new sequence starts here
                self._dynamic_len = max(seq_len or stop, stop)
            elif self._dynamic_len is None:
                self._dynamic_len = max(seq_len or stop, stop)
        work = compute_dtype(x.dtype)
        cos, sin = self.tables(stop, x.device, work)
        if isinstance(offset, torch.Tensor):
            idx = offset.to(x.device)[:, None] + torch.arange(L, device=x.device)  # (B, L)
            c, s = _lift(cos[idx], x, True), _lift(sin[idx], x, True)  # (B, 1.., L, dim/2)
        else:
            c, s = cos[offset : offset + L], sin[offset : offset + L]  # (L, dim/2)
        return rotate_pairs(x, c, s, self.layout, self.dim)

    def forward(self, x: torch.Tensor, offset: Any = 0, seq_len: int | None = None) -> torch.Tensor:
        """Same as :meth:`rotate`."""
        return self.rotate(x, offset, seq_len)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base}, layout={self.layout!r}, scaling={self.scaling}"


def layout_permutation(dim: int, source: str = "half", target: str = "interleaved") -> torch.Tensor:
    """Channel permutation taking a ``source``-layout head to the ``target`` layout.

    ``x_target = x_source[..., perm]``. For half -> interleaved,
    ``perm[2i] = i`` and ``perm[2i+1] = i + dim/2``: pair i keeps its frequency.

    Args:
        dim: head (rotary) dim, even.

    Returns:
        (dim,) int64 permutation.
    """
    check_even_int(dim, "dim")
    check_choice(source, "source", LAYOUTS)
    check_choice(target, "target", LAYOUTS)
    h = dim // 2
    h2i = torch.stack([torch.arange(h), torch.arange(h) + h], dim=1).flatten()  # (dim,)
    if source == target:
        return torch.arange(dim)
    return h2i if source == "half" else torch.argsort(h2i)


def convert_rotary_weight(
    weight: torch.Tensor, head_dim: int, source: str = "half", target: str = "interleaved"
) -> torch.Tensor:
    """Permute a q or k projection's output rows from one pair layout to the other.

    For ``q = W x`` with ``W`` (H * head_dim, d_in) (an ``nn.Linear`` weight) or a bias
    (H * head_dim,), the rows of every head are permuted by
    :func:`layout_permutation`, so RoPE in the ``target`` layout on the new q and k
    gives the same attention scores as the ``source`` layout on the old ones. This
    is the inverse of the ``permute`` transformers applies when converting Meta
    Llama (interleaved) checkpoints to the Hugging Face (half) layout.

    Args:
        weight: (H * head_dim, ...) weight or bias.
        head_dim: channels per head.

    Returns:
        Tensor of ``weight``'s shape with rows permuted within each head.
    """
    w = as_tensor(weight, "weight")
    check_ndim(w, "weight", 1, "(H * head_dim, ...)", at_least=True)
    check_even_int(head_dim, "head_dim")
    perm = layout_permutation(head_dim, source, target).to(w.device)
    if w.shape[0] % head_dim:
        raise fail(
            "weight",
            f"a first dim divisible by head_dim = {head_dim}",
            f"shape {shape_str(w.shape)}",
        )
    heads = w.reshape(w.shape[0] // head_dim, head_dim, *w.shape[1:])  # (H, head_dim, ...)
    return heads[:, perm].reshape(w.shape)
