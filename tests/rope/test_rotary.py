"""1D RoPE against the complex-multiplication reference, properties, layouts, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from structmat.rope import (
    RotaryEmbedding,
    apply_rotary,
    convert_rotary_weight,
    layout_permutation,
)
from structmat.rope.rotation import rotate_pairs
from tests.reference import rope as ref

LAYOUTS = ["half", "interleaved"]
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def _rel(a: torch.Tensor, b: np.ndarray) -> float:
    b_t = torch.as_tensor(b)
    return float((a.double() - b_t).norm() / b_t.norm().clamp(min=1e-300))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 17, 8), (2, 4, 1100, 64)])
def test_matches_reference(shape, dtype, layout):
    # The last shape is 2.2 MB in float32: it runs the blocked (cache-sized) path.
    g = torch.Generator().manual_seed(hash((shape, layout)) % 2**31)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    pos = torch.randperm(shape[-2], generator=g) * 3 + 7  # integer, not 0..L-1
    got = apply_rotary(x.to(dtype), pos, base=500.0, layout=layout)
    want = ref.rotary(x.numpy(), pos.numpy(), ref.frequencies(shape[-1], 500.0), layout)
    assert got.dtype == dtype and got.shape == x.shape
    assert _rel(got, want) < TOL[dtype]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_float_positions_and_default_positions(layout):
    x = torch.randn(3, 9, 6, dtype=torch.float64)
    pos = torch.rand(9, dtype=torch.float64) * 100
    want = ref.rotary(x.numpy(), pos.numpy(), ref.frequencies(6, 1e4), layout)
    assert _rel(apply_rotary(x, pos, layout=layout), want) < 1e-10
    default = ref.rotary(x.numpy(), np.arange(9), ref.frequencies(6, 1e4), layout)
    assert _rel(apply_rotary(x, layout=layout), default) < 1e-10


@pytest.mark.parametrize("layout", LAYOUTS)
def test_per_batch_positions(layout):
    x = torch.randn(3, 2, 7, 8, dtype=torch.float64)
    pos = torch.stack([torch.arange(7) + o for o in (0, 5, 11)])  # (B, L)
    want = ref.rotary(x.numpy(), pos.numpy(), ref.frequencies(8, 1e4), layout)
    assert _rel(apply_rotary(x, pos, layout=layout), want) < 1e-10


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_non_contiguous_input(layout, dtype):
    # q as produced by (B, L, H, D).transpose(1, 2): the output keeps that memory layout.
    x = torch.randn(2, 600, 4, 32, dtype=dtype).transpose(1, 2)  # (2, 4, 600, 32)
    got = apply_rotary(x, layout=layout)
    want = ref.rotary(x.double().numpy(), np.arange(600), ref.frequencies(32, 1e4), layout)
    assert _rel(got, want) < TOL[dtype]
    sliced = torch.randn(3, 50, 20, dtype=dtype)[..., 1:17]  # odd storage offset
    want = ref.rotary(sliced.double().numpy(), np.arange(50), ref.frequencies(16, 1e4), layout)
    assert _rel(apply_rotary(sliced, layout=layout), want) < TOL[dtype]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16bit_rounds_once(layout, dtype):
    # bf16/fp16 output = the exact rotation rounded once: the error is at most what
    # rounding the float64 result to the dtype costs (plus float32 slack), also at
    # positions far beyond where angles formed in bf16 go wrong.
    x16 = torch.randn(2, 3, 700, 64).to(dtype)
    pos = torch.arange(700) * 1000 + 100_000
    exact = torch.as_tensor(
        ref.rotary(x16.double().numpy(), pos.numpy(), ref.frequencies(64, 1e4), layout)
    )
    got = apply_rotary(x16, pos, layout=layout).double()
    once = exact.to(dtype).double()
    slack = 1e-6 * exact.abs().amax()
    assert bool(((got - exact).abs() <= (once - exact).abs() + slack).all())


def test_long_positions_float32_precision():
    # Angles in float64: a float32 x at position 1e6 is as accurate as at position 0.
    x = torch.randn(4, 64, dtype=torch.float64)
    pos = torch.tensor([0, 1_000_000, 2_000_003, 5_000_000])
    got = apply_rotary(x.float(), pos)
    want = ref.rotary(x.numpy(), pos.numpy(), ref.frequencies(64, 1e4), "half")
    assert _rel(got, want) < 1e-6


@given(
    m=st.integers(0, 100_000),
    n=st.integers(0, 100_000),
    layout=st.sampled_from(LAYOUTS),
    seed=st.integers(0, 2**31 - 1),
)
def test_relative_property(m, n, layout, seed):
    # <R_m q, R_n k> = <q, R_{n-m} k>
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(1, 16, generator=g, dtype=torch.float64)
    k = torch.randn(1, 16, generator=g, dtype=torch.float64)
    lhs = (apply_rotary(q, [m], layout=layout) * apply_rotary(k, [n], layout=layout)).sum()
    rhs = (q * apply_rotary(k, [n - m], layout=layout)).sum()
    assert abs(float(lhs - rhs)) < 1e-9 * float(q.norm() * k.norm())


def test_rotation_matrix_is_reference_matrix():
    theta = ref.frequencies(8, 1e4)
    for layout in LAYOUTS:
        eye = torch.eye(8, dtype=torch.float64)  # rows e_j: R e_j are columns of R
        got = apply_rotary(eye, torch.full((8,), 37), layout=layout).T
        want = ref.rotation_matrix(37 * theta, 8, layout)
        assert np.abs(got.numpy() - want).max() < 1e-12


def test_layout_conversion_preserves_scores():
    # A checkpoint written for one layout, loaded in the other via permuted rows.
    H, Dh, d_in, L = 3, 8, 12, 10
    g = torch.Generator().manual_seed(0)
    Wq = torch.randn(H * Dh, d_in, generator=g, dtype=torch.float64)
    Wk = torch.randn(H * Dh, d_in, generator=g, dtype=torch.float64)
    bq = torch.randn(H * Dh, generator=g, dtype=torch.float64)
    x = torch.randn(L, d_in, generator=g, dtype=torch.float64)

    def scores(wq, wk, b, layout):
        q = (x @ wq.T + b).view(L, H, Dh).transpose(0, 1)  # (H, L, Dh)
        k = (x @ wk.T).view(L, H, Dh).transpose(0, 1)
        q, k = apply_rotary(q, layout=layout), apply_rotary(k, layout=layout)
        return q @ k.transpose(-1, -2)  # (H, L, L)

    base = scores(Wq, Wk, bq, "half")
    conv = [convert_rotary_weight(w, Dh, "half", "interleaved") for w in (Wq, Wk, bq)]
    assert torch.allclose(scores(*conv, "interleaved"), base, rtol=0, atol=1e-10)
    back = [convert_rotary_weight(w, Dh, "interleaved", "half") for w in conv]
    assert all(torch.equal(a, b) for a, b in zip(back, (Wq, Wk, bq), strict=True))
    # and the permutation itself maps the rotated vectors
    perm = layout_permutation(Dh, "half", "interleaved")
    v = torch.randn(L, Dh, dtype=torch.float64)
    assert torch.allclose(apply_rotary(v)[:, perm], apply_rotary(v[:, perm], layout="interleaved"))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_partial_rotary(layout):
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    got = apply_rotary(x, layout=layout, rotary_dim=8)
    want = ref.rotary(x[..., :8].numpy(), np.arange(5), ref.frequencies(8, 1e4), layout)
    assert _rel(got[..., :8], want) < 1e-10
    assert torch.equal(got[..., 8:], x[..., 8:])
    emb = RotaryEmbedding(8, layout=layout)
    assert torch.allclose(emb.rotate(x), got, atol=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_gradcheck(layout):
    x = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: apply_rotary(t, layout=layout), (x,))
    torch.autograd.gradgradcheck(lambda t: apply_rotary(t, layout=layout), (x,))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fast_backward(layout, dtype):
    # The fast backward (rotation by -angle) equals autograd through the formula.
    xd = torch.randn(2, 700, 32, dtype=dtype, requires_grad=True)
    w = torch.randn(2, 700, 32, dtype=dtype)
    (apply_rotary(xd, layout=layout) * w).sum().backward()
    want = apply_rotary(w.double(), torch.arange(700).neg(), layout=layout)  # R^T w
    assert float((xd.grad.double() - want).abs().max()) < TOL[dtype] * 10


@pytest.mark.parametrize("layout", LAYOUTS)
def test_module_offsets_and_cache_growth(layout):
    emb = RotaryEmbedding(16, base=1000.0, layout=layout)
    x = torch.randn(2, 3, 40, 16, dtype=torch.float64)
    full = emb.rotate(x)
    assert torch.allclose(full, apply_rotary(x, base=1000.0, layout=layout), atol=1e-12)
    # prefill 25 tokens, then decode one at a time: same as rotating all 40 at once
    parts = [emb.rotate(x[..., :25, :])]
    parts += [emb.rotate(x[..., t : t + 1, :], offset=t) for t in range(25, 40)]
    assert torch.allclose(torch.cat(parts, dim=-2), full, atol=1e-12)
    size_before = emb.tables(1, "cpu", torch.float64)[0].shape[0]
    far = emb.rotate(x[..., :2, :], offset=5000)  # grows the cache past 5000
    assert emb.tables(1, "cpu", torch.float64)[0].shape[0] > 5000 > size_before
    assert torch.allclose(far, apply_rotary(x[..., :2, :], [5000, 5001], 1000.0, layout))
    # per-sequence offsets of a ragged batch
    off = torch.tensor([3, 17])
    got = emb.rotate(x[..., :4, :], offset=off)
    want = apply_rotary(x[..., :4, :], off[:, None] + torch.arange(4), 1000.0, layout)
    assert torch.allclose(got, want, atol=1e-12)


def test_module_cache_per_dtype():
    emb = RotaryEmbedding(8)
    x = torch.randn(3, 8)
    emb.rotate(x)
    emb.rotate(x.double())
    emb.rotate(x.bfloat16())  # shares the float32 tables
    assert {k[1] for k in emb._cache} == {torch.float32, torch.float64}


def test_rotate_pairs_broadcast_tables():
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64)
    ang = torch.rand(3, 5, 4, dtype=torch.float64) * 6  # one table per head
    got = rotate_pairs(x, ang.cos(), ang.sin(), "interleaved")
    want = ref.rotate_by_angles(x.numpy(), ang.numpy(), "interleaved")
    assert _rel(got, want) < 1e-12


def test_empty_sequence():
    x = torch.randn(2, 0, 8)
    assert apply_rotary(x).shape == (2, 0, 8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"x": torch.randn(4, 7)}, r"x: expected an even number of rotary channels"),
        ({"x": torch.randn(7)}, r"x: expected shape \(\.\.\., L, D\), got shape \(7,\)"),
        ({"x": torch.ones(3, 4, dtype=torch.long)}, r"x: expected a floating-point tensor"),
        ({"positions": torch.arange(5)}, r"positions: expected shape \(L,\) = \(4,\)"),
        ({"positions": torch.tensor([0.0, 1, float("nan"), 3])}, r"positions: expected finite"),
        ({"layout": "neox"}, r"layout: expected one of 'half' \| 'interleaved', got 'neox'"),
        ({"base": 0.5}, r"base: expected a finite number > 1, got 0.5"),
        ({"rotary_dim": 3}, r"rotary_dim: expected an even number"),
        ({"rotary_dim": 10}, r"rotary_dim: expected an even integer in \[2, 8\]"),
        ({"scaling": {"rope_type": "magic"}}, r"scaling.kind: expected one of"),
        ({"freqs": torch.ones(3)}, r"freqs: expected shape \(R/2,\) = \(4,\)"),
    ],
)
def test_errors(kwargs, match):
    args = {"x": torch.randn(4, 8), **kwargs}
    with pytest.raises(ValueError, match=match):
        apply_rotary(**args)


def test_module_errors():
    with pytest.raises(ValueError, match=r"dim: expected an even integer >= 2"):
        RotaryEmbedding(7)
    emb = RotaryEmbedding(8)
    with pytest.raises(ValueError, match=r"offset: expected an int >= 0"):
        emb.rotate(torch.randn(3, 8), offset=-1)
    with pytest.raises(ValueError, match=r"offset: expected shape \(B,\) = \(2,\)"):
        emb.rotate(torch.randn(2, 3, 8), offset=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"rotary_dim: expected an even integer in \[2, 6\]"):
        emb.rotate(torch.randn(3, 6))
    with pytest.raises(ValueError, match=r"weight: expected a first dim divisible by head_dim"):
        convert_rotary_weight(torch.randn(10, 4), 8)
