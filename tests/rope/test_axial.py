"""2D RoPE (axial and mixed) against the reference, the 2D relative property, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from structmat.rope import (
    RotaryEmbedding2D,
    apply_rotary_2d,
    axial_frequencies,
    grid_positions,
    mixed_frequencies,
)
from tests.reference import rope as ref

LAYOUTS = ["half", "interleaved"]


def _rel(a, b):
    b = torch.as_tensor(b)
    return float((a.double() - b).norm() / b.norm())


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("hw, dim", [((3, 4), 8), ((14, 14), 64), ((40, 40), 64)])
def test_axial_matches_reference(hw, dim, dtype, tol, layout):
    pos = grid_positions(*hw)
    x = torch.randn(2, 3, hw[0] * hw[1], dim, dtype=torch.float64)
    got = apply_rotary_2d(x.to(dtype), pos, mode="axial", layout=layout)
    want = ref.rotate_by_angles(x.numpy(), ref.axial_angles(pos.numpy(), dim, 100.0), layout)
    assert got.dtype == dtype and _rel(got, want) < tol


def test_axial_is_blockdiag_rx_ry_per_group():
    # interleaved layout: channels (4g, 4g+1) turn by x theta_g, (4g+2, 4g+3) by y theta_g
    dim, base = 8, 100.0
    eye = torch.eye(dim, dtype=torch.float64)
    x_pos, y_pos = 3.0, -5.0
    R = apply_rotary_2d(eye, torch.tensor([[x_pos, y_pos]] * dim), base, layout="interleaved").T
    angles = []
    for g in range(dim // 4):
        theta = base ** (-4 * g / dim)
        angles += [x_pos * theta, y_pos * theta]
    assert (
        np.abs(R.numpy() - ref.rotation_matrix(np.array(angles), dim, "interleaved")).max() < 1e-12
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_mixed_matches_reference_shared_and_per_head(layout):
    pos = grid_positions(5, 6).double() + torch.rand(30, 2, dtype=torch.float64)
    x = torch.randn(2, 4, 30, 16, dtype=torch.float64)
    f = torch.randn(8, 2, dtype=torch.float64)
    want = ref.rotate_by_angles(x.numpy(), ref.mixed_angles(pos.numpy(), f.numpy()), layout)
    assert _rel(apply_rotary_2d(x, pos, mode="mixed", freqs=f, layout=layout), want) < 1e-10
    fh = torch.randn(4, 8, 2, dtype=torch.float64)  # one table per head
    want = ref.rotate_by_angles(x.numpy(), ref.mixed_angles(pos.numpy(), fh.numpy()), layout)
    assert _rel(apply_rotary_2d(x, pos, mode="mixed", freqs=fh, layout=layout), want) < 1e-10
    # default frequencies: deterministic, and equal to axial for head 0
    default = apply_rotary_2d(x, pos, mode="mixed", layout=layout)
    assert torch.equal(default, apply_rotary_2d(x, pos, mode="mixed", layout=layout))
    f0 = mixed_frequencies(16, base=10.0)
    assert torch.allclose(f0, axial_frequencies(16, base=10.0), atol=1e-15)


@given(
    p=st.lists(st.integers(-500, 500), min_size=4, max_size=4),
    mode=st.sampled_from(["axial", "mixed"]),
    layout=st.sampled_from(LAYOUTS),
    seed=st.integers(0, 2**31 - 1),
)
def test_relative_property_2d(p, mode, layout, seed):
    # <R(a) q, R(b) k> = <q, R(b - a) k> for 2D positions a, b
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(1, 16, generator=g, dtype=torch.float64)
    k = torch.randn(1, 16, generator=g, dtype=torch.float64)
    f = torch.randn(8, 2, generator=g, dtype=torch.float64) if mode == "mixed" else None
    a, b = torch.tensor([p[:2]]), torch.tensor([p[2:]])

    def rot(v, pos):
        return apply_rotary_2d(v, pos, mode=mode, freqs=f, layout=layout)

    lhs = (rot(q, a) * rot(k, b)).sum()
    rhs = (q * rot(k, b - a)).sum()
    scale = float(q.norm() * k.norm())
    assert abs(float(lhs - rhs)) < 1e-9 * scale


def test_grid_positions_and_rescale():
    pos = grid_positions(2, 3)
    assert pos.tolist() == [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1]]
    big = grid_positions(28, 28, train_size=(14, 14))
    assert float(big[:, 0].max()) == 27 * 0.5 and big.shape == (784, 2)
    # at the training resolution, rescaling changes nothing
    assert torch.equal(grid_positions(14, 7, train_size=(14, 7)), grid_positions(14, 7))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_gradients_through_mixed_frequencies(layout):
    pos = grid_positions(2, 3)
    x = torch.randn(1, 2, 6, 8, dtype=torch.float64, requires_grad=True)
    f = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(
        lambda xx, ff: apply_rotary_2d(xx, pos, mode="mixed", freqs=ff, layout=layout), (x, f)
    )


def test_module_learns_frequencies():
    torch.manual_seed(0)
    mod = RotaryEmbedding2D(8, heads=2, mode="mixed")
    assert isinstance(mod.freqs, torch.nn.Parameter) and mod.freqs.shape == (2, 4, 2)
    pos = grid_positions(4, 4)
    x = torch.randn(3, 2, 16, 8)
    loss = (mod(x, pos) @ x.transpose(-1, -2)).square().mean()
    loss.backward()
    assert mod.freqs.grad is not None and bool((mod.freqs.grad != 0).any())
    # heads start with different directions; the module matches the function
    assert not torch.allclose(mod.freqs[0], mod.freqs[1])
    with torch.no_grad():
        want = apply_rotary_2d(x, pos, mode="mixed", freqs=mod.freqs)
        assert torch.allclose(mod(x, pos), want)
    axial = RotaryEmbedding2D(8, mode="axial")
    assert axial.freqs is None and torch.allclose(axial(x, pos), apply_rotary_2d(x, pos))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"x": torch.randn(4, 6)}, r"x: expected a last dim D divisible by 4"),
        ({"positions": torch.zeros(4, 3)}, r"positions: expected shape \(L, 2\) = \(4, 2\)"),
        ({"mode": "rope"}, r"mode: expected one of 'axial' \| 'mixed'"),
        ({"freqs": torch.ones(4, 2)}, r"freqs: expected None for mode='axial'"),
        (
            {"mode": "mixed", "freqs": torch.ones(3, 2)},
            r"freqs: expected shape \(D/2, 2\) = \(4, 2\)",
        ),
    ],
)
def test_errors(kwargs, match):
    args = {"x": torch.randn(4, 8), "positions": torch.zeros(4, 2), **kwargs}
    with pytest.raises(ValueError, match=match):
        apply_rotary_2d(**args)
    with pytest.raises(ValueError, match=r"dim: expected a multiple of 4"):
        RotaryEmbedding2D(6)
