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
* large CPU inputs otherwise: one loop compiled by inductor, once it has paid for
  itself (:mod:`structmat.rope._compiled`).
* eager otherwise: ``x`` is cut into blocks of about 512 KiB per thread (they stay
  in the L2 cache); each block is read from memory once. ``half``: one full-width
  multiply by ``[cos, cos]`` and two half-width multiply-adds by ``[-sin, sin]``
  (the tables in the layout the block reads); other layouts: four half-width
  multiply(-add)s. bfloat16 / float16 blocks are rotated into a float32 scratch
  block and rounded to the output dtype once.
* under ``torch.compile`` (a model compiled by the user): the plain expression,
  which inductor fuses into the model's graph.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from structmat.rope._compiled import DISPATCH, rotate_expression

__all__ = ["LAYOUTS", "compute_dtype", "rotate_pairs"]

LAYOUTS = ("half", "interleaved")

# Bytes of x per block and thread on the chunked path: x block + output block (+
# float32 scratch for 16-bit inputs) stay inside a 2 MiB L2 cache. Blocks of
# threads x 512 KiB let each op split over the threads (measured here: 256 KiB
# blocks ran single-threaded at 3.1x a copy on 2 threads, these 1.4x).
_BLOCK_BYTES = 512 * 1024


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
    x: torch.Tensor, tables: tuple[torch.Tensor, torch.Tensor], layout: str, out: torch.Tensor
) -> None:
    """out = rotate(x) for one cache-sized block; out in the compute dtype.

    ``half``: tables are ``[cos, cos]`` and ``[-sin, sin]`` (..., L, D): one full-width
    multiply, then one multiply-add per half reading the other half of x. Other
    layouts: cos and sin (..., L, D/2), four half-width multiply(-add)s. x may be
    16-bit (the ops read it and compute in out's dtype).
    """
    c, s = tables
    if layout == "half":
        h = x.shape[-1] // 2
        torch.mul(x, c, out=out)  # (a cos, b cos)
        out[..., :h].addcmul_(x[..., h:], s[..., :h])  # a cos - b sin
        out[..., h:].addcmul_(x[..., :h], s[..., h:])  # b cos + a sin
        return
    a, b = _pairs(x, layout)
    oa, ob = _pairs(out, layout)
    torch.mul(a, c, out=oa)
    oa.addcmul_(b, s, value=-1.0)  # a cos - b sin
    torch.mul(b, c, out=ob)
    ob.addcmul_(a, s)  # b cos + a sin


def _blocks(x: torch.Tensor) -> list[tuple[slice, slice]]:
    """Cut x (A, ..., L, D) into blocks (dim-0 range, L range) of about _BLOCK_BYTES."""
    A, L = x.shape[0], x.shape[-2]
    row = math.prod(x.shape[1:-2]) * x.shape[-1] * 4  # bytes of one (a, l) row, float32
    rows = max(1, _BLOCK_BYTES * torch.get_num_threads() // max(row, 1))
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
    if layout == "half":  # the tables in the layout the blocks read, built once
        tables = (torch.cat([cos, cos], dim=-1), torch.cat([-sin, sin], dim=-1))
    else:
        tables = (cos, sin)
    # complex table for the 16-bit interleaved path, built once (not per block)
    tab = torch.complex(cos, sin) if layout == "interleaved" and x.dtype != work else None
    scratch_x = scratch_o = None
    for rows, seq in blocks:
        xb, ob = x[rows][..., seq, :], out[rows][..., seq, :]
        tb = (_take(tables[0], rows, seq), _take(tables[1], rows, seq))
        if x.dtype == work:
            _rotate_block(xb, tb, layout, ob)
            continue
        # 16-bit input: rotate the block into float32 scratch, round once into out.
        if scratch_o is None or scratch_o.numel() < xb.numel():
            scratch_o = torch.empty(xb.numel(), dtype=work, device=x.device)
        of = scratch_o[: xb.numel()].view(xb.shape)
        if tab is None:
            _rotate_block(xb, tb, layout, of)
        else:  # interleaved: upcast, then one complex multiply
            if scratch_x is None or scratch_x.numel() < xb.numel():
                scratch_x = torch.empty(xb.numel(), dtype=work, device=x.device)
            xf = scratch_x[: xb.numel()].view(xb.shape)
            xf.copy_(xb)
            fc, oc = _complex_view(xf), _complex_view(of)
            if fc is not None and oc is not None:
                torch.mul(fc, _take(tab, rows, seq), out=oc)
            else:
                _rotate_block(xf, tb, layout, of)
        ob.copy_(of)


def _rotate_fast(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str
) -> torch.Tensor:
    """rotate(x) with no autograd: compiled where that pays, else the eager path.

    x: (..., L, D); cos, sin: (..., L, R/2). Channels past R pass through.
    """
    if not x.numel():
        return torch.empty_like(x)
    kind = DISPATCH.kind(x, cos, layout)
    kernel = DISPATCH.kernel(kind)
    if kernel is not None:
        y = DISPATCH.run(kernel, x, cos, sin, layout)
        if y is not None:
            return y  # contiguous, whatever x's strides
    started = time.perf_counter()
    out = torch.empty_like(x)  # keeps x's strides when x is dense (e.g. a transposed q)
    R = 2 * cos.shape[-1]
    if R == x.shape[-1]:
        _rotate_into(x, cos, sin, layout, out)
    else:
        _rotate_into(x[..., :R], cos, sin, layout, out[..., :R])
        out[..., R:].copy_(x[..., R:])  # channels past R pass through unrotated
    DISPATCH.charge(kind, started)
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
    if torch.compiler.is_compiling() or (needs_grad and (cos.requires_grad or sin.requires_grad)):
        # inside the user's compiled graph inductor fuses the plain expression;
        # learnable angles need its autograd
        return rotate_expression(x, cos, sin, layout)
    if R != D and needs_grad:
        head = rotate_pairs(x[..., :R], cos, sin, layout)
        return torch.cat([head, x[..., R:]], dim=-1)  # (..., L, D)
    if needs_grad:
        return _Rotate.apply(x, cos, sin, layout)
    return _rotate_fast(x, cos, sin, layout)
