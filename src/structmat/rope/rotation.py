"""The rotation itself: turn each rotary pair of ``x`` by a given angle.

Everything in :mod:`structmat.rope` (1D, axial 2D, mixed 2D, scaled variants)
reduces to one operation: given ``cos`` and ``sin`` of one angle per rotary pair,
rotate every pair of ``x``::

    (a, b) -> (a cos - b sin, b cos + a sin)

This is multiplication of the complex number ``a + i b`` by ``exp(i angle)``
(RoFormer, Su et al. 2021, eq. 34). Where a pair lives in ``x`` is the *layout*:

* ``"half"``: pair ``i`` is ``(x[i], x[i + D/2])`` (rotate-half; GPT-NeoX / Llama in
  Hugging Face checkpoints);
* ``"interleaved"``: pair ``i`` is ``(x[2i], x[2i + 1])`` (the original RoFormer / Meta
  Llama / GPT-J form).

Speed: the operation is memory-bound, so the goal is one pass over ``x`` that
writes straight into the output, with no temporaries the size of ``x``:

* ``interleaved`` float32/float64: ``x`` viewed as complex numbers times a complex
  table, a single ``torch.mul(..., out=...)``.
* otherwise: ``x`` is cut into blocks of about 256 KiB (they stay in the L2 cache);
  each block is read from memory once, and the four half-width multiply(-add)s
  that make the rotation run on the cached block.
* bfloat16 / float16: each block is upcast into a float32 scratch block, rotated in
  float32 and rounded to the output dtype once.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["LAYOUTS", "compute_dtype", "rotate_pairs"]

LAYOUTS = ("half", "interleaved")

# Bytes of x per block on the chunked path: x block + output block (+ float32
# scratch for 16-bit inputs) stay well inside a 1-2 MiB L2 cache.
_BLOCK_BYTES = 256 * 1024


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype rotations are computed in: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _complex_view(t: torch.Tensor) -> torch.Tensor | None:
    """View ``t`` (..., D) as complex (..., D/2) when the memory allows, else None."""
    if t.dtype not in (torch.float32, torch.float64) or t.stride(-1) != 1:
        return None
    # view_as_complex needs every other stride and the offset to be even.
    if t.storage_offset() % 2 or any(s % 2 for s in t.stride()[:-1]):
        return None
    return torch.view_as_complex(t.unflatten(-1, (-1, 2)))  # (..., D/2)


def _pairs(t: torch.Tensor, layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The two members (a, b) of every rotary pair, as views: each (..., D/2)."""
    if layout == "half":
        h = t.shape[-1] // 2
        return t[..., :h], t[..., h:]
    return t[..., 0::2], t[..., 1::2]


def _rotate_block(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str, out: torch.Tensor
) -> None:
    """out = rotate(x) for one cache-sized block; x, out of the same (compute) dtype."""
    a, b = _pairs(x, layout)
    oa, ob = _pairs(out, layout)
    torch.mul(a, cos, out=oa)
    oa.addcmul_(b, sin, value=-1.0)  # a cos - b sin
    torch.mul(b, cos, out=ob)
    ob.addcmul_(a, sin)  # b cos + a sin


def _blocks(x: torch.Tensor) -> list[tuple[slice, slice]]:
    """Cut x (A, ..., L, D) into blocks (dim-0 range, L range) of about _BLOCK_BYTES."""
    A, L = x.shape[0], x.shape[-2]
    row = math.prod(x.shape[1:-2]) * x.shape[-1] * 4  # bytes of one (a, l) row, float32
    rows = max(1, _BLOCK_BYTES // max(row, 1))
    if rows >= L:  # whole sequences fit: group several dim-0 entries
        per = max(1, rows // L)
        return [(slice(i, min(A, i + per)), slice(0, L)) for i in range(0, A, per)]
    return [
        (slice(i, i + 1), slice(j, min(L, j + rows))) for i in range(A) for j in range(0, L, rows)
    ]


def _take(t: torch.Tensor, rows: slice, seq: slice) -> torch.Tensor:
    """Slice a broadcastable table t (A or 1, ..., L, D/2) like its x block."""
    if t.shape[0] != 1:
        t = t[rows]
    return t[..., seq, :]


def _rotate_into(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str, out: torch.Tensor
) -> None:
    """Write rotate(x) into ``out`` (same shape and dtype as x), one pass, no big temporaries.

    Args:
        x: (..., L, D).
        cos, sin: (..., L, D/2) in the compute dtype, broadcastable to x's pairs.
        out: (..., L, D), x's dtype; must not overlap x.
    """
    work = compute_dtype(x.dtype)
    if layout == "interleaved" and x.dtype == work:
        xc, oc = _complex_view(x), _complex_view(out)
        if xc is not None and oc is not None:
            # One multiply of complex numbers: a single read of x, a single write.
            torch.mul(xc, torch.complex(cos, sin), out=oc)
            return
    if x.ndim == 2:  # give the block loop a leading dim to walk over
        x, out = x.unsqueeze(0), out.unsqueeze(0)  # (1, L, D)
    nd = x.ndim
    cos = cos.reshape((1,) * (nd - cos.ndim) + tuple(cos.shape))  # (1.., L, D/2)
    sin = sin.reshape((1,) * (nd - sin.ndim) + tuple(sin.shape))
    if x.numel() * 4 <= _BLOCK_BYTES or x.device.type != "cpu":
        # Small inputs, or accelerators (where one launch per op beats many small
        # blocks): the whole tensor is a single block.
        blocks = [(slice(None), slice(None))]
    else:
        blocks = _blocks(x)
    # complex table for the 16-bit interleaved path, built once (not per block)
    tab = torch.complex(cos, sin) if layout == "interleaved" and x.dtype != work else None
    scratch_x = scratch_o = None
    for rows, seq in blocks:
        xb, ob = x[rows][..., seq, :], out[rows][..., seq, :]
        cb, sb = _take(cos, rows, seq), _take(sin, rows, seq)
        if x.dtype == work:
            _rotate_block(xb, cb, sb, layout, ob)
            continue
        # 16-bit input: upcast the block, rotate in float32, round once into out.
        if scratch_x is None or scratch_x.numel() < xb.numel():
            scratch_x = torch.empty(xb.numel(), dtype=work, device=x.device)
            scratch_o = torch.empty(xb.numel(), dtype=work, device=x.device)
        assert scratch_o is not None
        xf = scratch_x[: xb.numel()].view(xb.shape)
        of = scratch_o[: xb.numel()].view(xb.shape)
        xf.copy_(xb)
        fc = _complex_view(xf) if tab is not None else None
        if fc is not None and tab is not None:
            oc = _complex_view(of)
            assert oc is not None
            torch.mul(fc, _take(tab, rows, seq), out=oc)
        else:
            _rotate_block(xf, cb, sb, layout, of)
        ob.copy_(of)


def _rotate_plain(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str
) -> torch.Tensor:
    """Differentiable expression of the rotation (used when cos/sin need gradients)."""
    work = compute_dtype(x.dtype)
    xf = x.to(work)
    a, b = _pairs(xf, layout)
    ra, rb = a * cos - b * sin, b * cos + a * sin  # (..., L, D/2) each
    if layout == "half":
        y = torch.cat([ra, rb], dim=-1)  # (..., L, D)
    else:
        y = torch.stack([ra, rb], dim=-1).flatten(-2)  # (..., L, D/2, 2) -> (..., L, D)
    return y.to(x.dtype)


def _rotate_fast(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str
) -> torch.Tensor:
    out = torch.empty_like(x)  # keeps x's strides when x is dense (e.g. a transposed q)
    if x.numel():
        _rotate_into(x, cos, sin, layout, out)
    return out


class _Rotate(torch.autograd.Function):
    """Fast rotation with a fast backward: the gradient of R x is Rᵀ g = rotate(g, -angle)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        layout: str,
    ) -> torch.Tensor:
        ctx.save_for_backward(cos, sin)
        ctx.layout = layout
        return _rotate_fast(x, cos, sin, layout)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        cos, sin = ctx.saved_tensors
        # Rotation by -angle; going through apply keeps double backward working.
        g = _Rotate.apply(grad.contiguous(), cos, -sin, ctx.layout)
        return g, None, None, None


def rotate_pairs(
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    layout: str = "half",
    rotary_dim: int | None = None,
) -> torch.Tensor:
    """Rotate every rotary pair of ``x`` by the angle whose cosine and sine are given.

    Trusts its caller (shapes, dtypes); the public functions validate.

    Args:
        x: (..., L, D) floating tensor.
        cos: (..., L, R/2) cosines in the compute dtype (float64 for float64 x, else
            float32), broadcastable against x's leading dims (fewer dims allowed).
        sin: (..., L, R/2) sines, same shape as ``cos``.
        layout: ``"half"`` or ``"interleaved"`` (see module docstring), within the
            first ``R`` channels.
        rotary_dim: R, the number of channels that rotate (the rest pass through,
            as in GPT-NeoX's partial rotary); None means D.

    Returns:
        (..., L, D) tensor of x's dtype. Differentiable in x (fast backward) and,
        when they require grad, in cos and sin.
    """
    D = x.shape[-1]
    R = D if rotary_dim is None else rotary_dim
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or cos.requires_grad or sin.requires_grad
    )
    if R != D:
        if needs_grad:
            head = rotate_pairs(x[..., :R], cos, sin, layout)
            return torch.cat([head, x[..., R:]], dim=-1)  # (..., L, D)
        out = torch.empty_like(x)
        if x.numel():
            _rotate_into(x[..., :R], cos, sin, layout, out[..., :R])
            out[..., R:].copy_(x[..., R:])  # channels past R pass through unrotated
        return out
    if needs_grad and (cos.requires_grad or sin.requires_grad):
        return _rotate_plain(x, cos, sin, layout)
    if needs_grad:
        return _Rotate.apply(x, cos, sin, layout)
    return _rotate_fast(x, cos, sin, layout)
