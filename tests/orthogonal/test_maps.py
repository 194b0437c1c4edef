"""structmat.orthogonal against the dense textbook matrices, and its properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from structmat.orthogonal import reflect, reflection, rotate, rotation
from tests.reference import orthogonal as ref

TOL = {torch.float64: 1e-12, torch.float32: 2e-5}


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)


@pytest.mark.parametrize("d", [2, 3, 16, 512])
def test_matches_dense_reference(d: int) -> None:
    rng = np.random.default_rng()
    a, b = rng.standard_normal(d) * 3, rng.standard_normal(d)
    np.testing.assert_allclose(reflection(a, b).numpy(), ref.reflection(a, b), atol=1e-12)
    np.testing.assert_allclose(rotation(a, b).numpy(), ref.rotation(a, b), atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("d", [2, 5, 64, 1024])
def test_maps_a_to_b_orthogonal_with_right_determinant(d: int, dtype: torch.dtype) -> None:
    a, b = torch.randn(4, d, dtype=dtype), torch.randn(4, d, dtype=dtype)
    eye = torch.eye(d, dtype=dtype)
    tol = TOL[dtype] * (10 if d > 100 else 1)
    for fn, det in ((reflection, -1.0), (rotation, 1.0)):
        t = fn(a, b)
        assert t.shape == (4, d, d) and t.dtype == dtype
        torch.testing.assert_close(
            t @ _unit(a).unsqueeze(-1), _unit(b).unsqueeze(-1), atol=tol, rtol=0
        )
        torch.testing.assert_close(t.transpose(-1, -2) @ t, eye.expand(4, d, d), atol=tol, rtol=0)
        if d <= 64:
            dets = torch.linalg.det(t.double())
            torch.testing.assert_close(dets, torch.full_like(dets, det), atol=1e-4, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_apply_equals_matrix_product(dtype: torch.dtype) -> None:
    d = 33
    a, b = torch.randn(3, 1, d, dtype=dtype), torch.randn(1, 5, d, dtype=dtype)
    x = torch.randn(3, 5, d, dtype=dtype)
    for apply, matrix in ((rotate, rotation), (reflect, reflection)):
        want = (matrix(a, b) @ x.unsqueeze(-1)).squeeze(-1)
        got = apply(a, b, x)
        assert got.shape == (3, 5, d)
        torch.testing.assert_close(got, want, atol=TOL[dtype] * 10, rtol=0)


def test_rotation_is_identity_on_the_complement() -> None:
    d = 10
    a, b = torch.randn(d, dtype=torch.float64), torch.randn(d, dtype=torch.float64)
    basis = torch.linalg.qr(torch.stack([a, b, *torch.randn(d - 2, d, dtype=torch.float64)]).T)[0]
    complement = basis[:, 2:].T  # (d - 2, d): orthogonal to a and b
    torch.testing.assert_close(rotate(a, b, complement), complement, atol=1e-12, rtol=0)


@pytest.mark.parametrize("d", [2, 3, 7, 100])
def test_edge_cases_equal_and_opposite(d: int) -> None:
    a = torch.randn(d, dtype=torch.float64)
    eye = torch.eye(d, dtype=torch.float64)
    torch.testing.assert_close(rotation(a, 2 * a), eye, atol=1e-14, rtol=0)
    torch.testing.assert_close(reflection(a, 2 * a), eye, atol=1e-14, rtol=0)
    for b in (
        -a,
        -a + 1e-13 * torch.randn(d, dtype=torch.float64),
        -a + 1e-7 * torch.randn(d, dtype=torch.float64),
    ):
        for fn in (rotation, reflection):
            t = fn(a, b)
            torch.testing.assert_close(t @ _unit(a), _unit(b), atol=1e-12, rtol=0)
            torch.testing.assert_close(t.T @ t, eye, atol=1e-12, rtol=0)
        assert float(torch.linalg.det(rotation(a, b))) == pytest.approx(1.0, abs=1e-10)


def test_rotation_by_pi_uses_a_canonical_plane() -> None:
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    t = rotation(a, -a)
    # the plane is spanned by a and the axis where |a| is smallest (x), so the
    # part of the complement (a × e_x direction) is left fixed.
    fixed = torch.linalg.cross(a, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(t @ fixed, fixed, atol=1e-12, rtol=0)
    torch.testing.assert_close(t @ t, torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("gap", [1e-6, 1e-9, 1e-12])
def test_reflection_near_equal_within_sqrt_eps(gap: float) -> None:
    """Householder's intrinsic limit near a = b (maps.py docstring); rotation is exact."""
    a = torch.randn(8, dtype=torch.float64)
    b = _unit(a) + gap * torch.randn(8, dtype=torch.float64)
    eye = torch.eye(8, dtype=torch.float64)
    t = reflection(a, b)
    torch.testing.assert_close(t @ _unit(a), _unit(b), atol=3e-8, rtol=0)
    torch.testing.assert_close(t.T @ t, eye, atol=1e-12, rtol=0)
    r = rotation(a, b)
    torch.testing.assert_close(r @ _unit(a), _unit(b), atol=1e-15, rtol=0)
    torch.testing.assert_close(r.T @ r, eye, atol=1e-14, rtol=0)


@given(
    seed=st.integers(0, 2**32 - 1),
    d=st.integers(2, 40),
    mode=st.sampled_from(["random", "equal", "opposite", "near_opposite"]),
)
def test_properties(seed: int, d: int, mode: str) -> None:
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(d, generator=gen, dtype=torch.float64)
    b = {
        "random": torch.randn(d, generator=gen, dtype=torch.float64),
        "equal": a * 1.7,
        "opposite": -a,
        "near_opposite": -a + 1e-9 * torch.randn(d, generator=gen, dtype=torch.float64),
    }[mode]
    x = torch.randn(d, generator=gen, dtype=torch.float64)
    eye = torch.eye(d, dtype=torch.float64)
    for matrix, apply in ((rotation, rotate), (reflection, reflect)):
        t = matrix(a, b)
        torch.testing.assert_close(t @ _unit(a), _unit(b), atol=1e-12, rtol=0)
        torch.testing.assert_close(t.T @ t, eye, atol=1e-12, rtol=0)
        torch.testing.assert_close(apply(a, b, x), t @ x, atol=1e-12, rtol=0)
    assert float(torch.linalg.det(rotation(a, b))) == pytest.approx(1.0, abs=1e-9)


def test_gradients_match_finite_differences() -> None:
    x = torch.randn(6, dtype=torch.float64)
    for apply in (rotate, reflect):
        a = torch.randn(6, dtype=torch.float64, requires_grad=True)
        b = torch.randn(6, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, b, f=apply: f(a, b, x), (a, b))
    # rotation is smooth through a = b, so its gradient there is exact too
    a0 = torch.randn(6, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda a, b: rotate(a, b, x), (a0.clone().requires_grad_(), a0.clone().requires_grad_())
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gradients_finite_at_equal_and_opposite(dtype: torch.dtype) -> None:
    a0 = torch.randn(5, dtype=dtype)
    x = torch.randn(5, dtype=dtype)
    for b0 in (a0, -a0):
        for fn in (rotate, reflect):
            a = a0.clone().requires_grad_()
            b = b0.clone().requires_grad_()
            grads = torch.autograd.grad(fn(a, b, x).sum(), (a, b))
            assert all(bool(torch.isfinite(g).all()) for g in grads)
        a = a0.clone().requires_grad_()
        (g,) = torch.autograd.grad(rotation(a, b0).sum(), (a,))
        assert bool(torch.isfinite(g).all())


def test_integer_and_numpy_inputs() -> None:
    t = rotation(np.array([1, 0, 0]), [0, 1, 0])
    assert t.dtype == torch.get_default_dtype()
    torch.testing.assert_close(t @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]))


def test_errors_name_the_argument() -> None:
    with pytest.raises(
        ValueError, match=r"a: expected nonzero vectors \(\.\.\., d\), got 1 zero vector"
    ):
        rotation(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match=r"b: expected nonzero vectors"):
        reflect(torch.ones(3), torch.zeros(2, 3), torch.ones(3))
    with pytest.raises(ValueError, match=r"b: expected finite values"):
        reflection(torch.ones(3), torch.tensor([1.0, float("inf"), 0.0]))
    with pytest.raises(ValueError, match=r"x: expected last dimension 3 \(to match a\)"):
        rotate(torch.ones(3), torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match=r"a: expected vectors of dimension d >= 2"):
        rotation(torch.ones(1), torch.ones(1))
    with pytest.raises(ValueError, match=r"a: expected shape \(\.\.\., d\)"):
        rotation(torch.tensor(1.0), torch.ones(2))
    with pytest.raises(ValueError, match=r"a: expected a real tensor"):
        rotation(torch.ones(2, dtype=torch.complex64), torch.ones(2))
