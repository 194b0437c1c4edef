"""structmat.gaussian divergences against float64 references, torch.distributions,
Monte Carlo, and the properties the maths promises."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from structmat.gaussian import (
    bhattacharyya_distance,
    frechet_distance,
    hellinger_distance,
    kl_divergence,
    trace_sqrt_product,
    wasserstein2,
)
from structmat.gaussian._linalg import nuclear_norm
from tests.reference import gaussian as ref

FUNCS = {
    "kl": (kl_divergence, ref.kl),
    "bhattacharyya": (bhattacharyya_distance, ref.bhattacharyya),
    "hellinger": (hellinger_distance, ref.hellinger),
    "frechet": (frechet_distance, ref.frechet),
}


def _pair(rng: np.random.Generator, d: int, cond: float = 100.0) -> tuple[np.ndarray, ...]:
    return (
        rng.standard_normal(d),
        ref.random_spd(rng, d, cond),
        rng.standard_normal(d) * 0.5,
        ref.random_spd(rng, d, cond),
    )


@pytest.mark.parametrize("d", [1, 2, 7, 64, 300])
@pytest.mark.parametrize("name", list(FUNCS))
def test_matches_reference_float64(name: str, d: int) -> None:
    ours, reference = FUNCS[name]
    rng = np.random.default_rng()  # fresh inputs every run
    for _ in range(2):
        args = _pair(rng, d)
        got = float(ours(*args))
        want = reference(*args)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-10), (name, d)


def test_wasserstein2_is_sqrt_of_frechet() -> None:
    rng = np.random.default_rng()
    args = _pair(rng, 9)
    assert float(wasserstein2(*args)) == pytest.approx(np.sqrt(ref.frechet(*args)), rel=1e-10)


@pytest.mark.parametrize("d", [1, 5, 40])
def test_kl_matches_torch_distributions(d: int) -> None:
    rng = np.random.default_rng()
    m1, s1, m2, s2 = (torch.from_numpy(a) for a in _pair(rng, d))
    want = torch.distributions.kl_divergence(
        torch.distributions.MultivariateNormal(m1, s1),
        torch.distributions.MultivariateNormal(m2, s2),
    )
    assert float(kl_divergence(m1, s1, m2, s2)) == pytest.approx(float(want), rel=1e-9)


def test_kl_matches_monte_carlo_within_standard_error() -> None:
    gen = torch.Generator().manual_seed(1234)
    rng = np.random.default_rng(1234)
    m1, s1, m2, s2 = (torch.from_numpy(a) for a in _pair(rng, 3, cond=10.0))
    p, q = (
        torch.distributions.MultivariateNormal(m1, s1),
        torch.distributions.MultivariateNormal(m2, s2),
    )
    x = (
        m1
        + torch.randn(200_000, 3, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(s1).T
    )
    samples = p.log_prob(x) - q.log_prob(x)
    estimate = float(samples.mean())
    stderr = float(samples.std()) / np.sqrt(samples.numel())
    assert abs(float(kl_divergence(m1, s1, m2, s2)) - estimate) < 4 * stderr


def test_batched_equals_loop() -> None:
    rng = np.random.default_rng()
    batch = [_pair(rng, 6) for _ in range(5)]
    stacked = [np.stack([b[i] for b in batch]) for i in range(4)]
    for ours, _ in FUNCS.values():
        got = ours(*stacked)
        assert got.shape == (5,)
        for i, b in enumerate(batch):
            assert float(got[i]) == pytest.approx(float(ours(*b)), rel=1e-12, abs=1e-13)


def test_broadcasts_leading_dimensions() -> None:
    rng = np.random.default_rng()
    mu1 = torch.from_numpy(rng.standard_normal((3, 1, 4)))
    cov1 = torch.from_numpy(ref.random_spd(rng, 4))
    mu2 = torch.from_numpy(rng.standard_normal((2, 4)))
    cov2 = torch.from_numpy(np.stack([ref.random_spd(rng, 4) for _ in range(2)]))
    got = frechet_distance(mu1, cov1, mu2, cov2)
    assert got.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            want = ref.frechet(mu1[i, 0].numpy(), cov1.numpy(), mu2[j].numpy(), cov2[j].numpy())
            assert float(got[i, j]) == pytest.approx(want, rel=1e-10)


def test_numpy_and_list_inputs_give_float64_tensor() -> None:
    out = kl_divergence([0.0, 0.0], np.eye(2), np.array([1.0, 0.0]), np.eye(2) * 2)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert float(out) == pytest.approx(
        ref.kl(np.zeros(2), np.eye(2), np.array([1.0, 0]), 2 * np.eye(2))
    )


# --- Fréchet / W2 with singular and ill-conditioned covariances --------------------


@pytest.mark.parametrize(("d", "n"), [(16, 5), (64, 20), (200, 50)])
def test_frechet_singular_covariances_real_nonnegative_and_exact(d: int, n: int) -> None:
    rng = np.random.default_rng()
    s1, s2 = ref.random_singular_cov(rng, d, n), ref.random_singular_cov(rng, d, n)
    m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
    got = frechet_distance(m1, s1, m2, s2)
    assert got.dtype == torch.float64 and float(got) >= 0
    # Rank-deficient covariances make the problem sqrt(eps)-conditioned (the
    # square-root trace is not Lipschitz at zero eigenvalues), hence 1e-7, not
    # 1e-10; frechet_distance_from_features is the exact route for raw features.
    assert float(got) == pytest.approx(ref.frechet(m1, s1, m2, s2), rel=1e-7)
    # identical singular covariances and means: exactly zero distance
    assert float(frechet_distance(m1, s1, m1, s1)) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("cond", [1e3, 1e6])
def test_frechet_ill_conditioned_float64(cond: float) -> None:
    rng = np.random.default_rng()
    args = _pair(rng, 128, cond)
    assert float(frechet_distance(*args)) == pytest.approx(ref.frechet(*args), rel=1e-10)


@pytest.mark.parametrize("cond", [1e3, 1e6])
def test_frechet_float32_relative_error(cond: float) -> None:
    """float32 computation (Cholesky + SVD route) stays within 1e-4 of float64."""
    rng = np.random.default_rng()
    args32 = [a.astype(np.float32) for a in _pair(rng, 256, cond)]
    got = frechet_distance(*args32, dtype=torch.float32)
    assert got.dtype == torch.float32
    want = ref.frechet(*[a.astype(np.float64) for a in args32])
    assert float(got) == pytest.approx(want, rel=1e-4)


def test_nuclear_norm_routes_agree() -> None:
    """The eigvalsh(GᵀG) route and the SVD route give the same nuclear norm."""
    g = torch.randn(3, 50, 50, dtype=torch.float64)
    fast = nuclear_norm(g, squared_ok=True)
    svd = torch.linalg.svdvals(g).sum(-1)
    torch.testing.assert_close(fast, svd, rtol=1e-11, atol=0)


def test_nuclear_norm_falls_back_to_svd_for_rank_deficient() -> None:
    """A rank-deficient G would lose ~sqrt(eps) per zero singular value when squared."""
    g = torch.randn(60, 10, dtype=torch.float64) @ torch.randn(10, 60, dtype=torch.float64)
    got = nuclear_norm(g, squared_ok=True)
    want = torch.linalg.svdvals(g).sum()
    assert float(got) == pytest.approx(float(want), rel=1e-13)


def test_trace_sqrt_product_matches_eigenvalues_of_product() -> None:
    rng = np.random.default_rng()
    s1, s2 = ref.random_spd(rng, 20), ref.random_spd(rng, 20)
    want = np.sqrt(np.linalg.eigvals(s1 @ s2).real.clip(0)).sum()
    got = trace_sqrt_product(torch.from_numpy(s1), torch.from_numpy(s2))
    assert float(got) == pytest.approx(want, rel=1e-10)


# --- properties (hypothesis) -----------------------------------------------------


@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 12))
def test_kl_nonnegative_and_zero_iff_equal(seed: int, d: int) -> None:
    rng = np.random.default_rng(seed)
    m1, s1, m2, s2 = _pair(rng, d, cond=50.0)
    assert float(kl_divergence(m1, s1, m2, s2)) > 0
    assert float(kl_divergence(m1, s1, m1, s1)) == pytest.approx(0.0, abs=1e-12)
    assert float(bhattacharyya_distance(m1, s1, m2, s2)) > 0
    assert 0 < float(hellinger_distance(m1, s1, m2, s2)) <= 1


@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 10))
def test_w2_is_a_metric_on_random_triples(seed: int, d: int) -> None:
    rng = np.random.default_rng(seed)
    pts = [(rng.standard_normal(d), ref.random_spd(rng, d, 20.0)) for _ in range(3)]
    (a, sa), (b, sb), (c, sc) = pts
    ab, bc, ac = wasserstein2(a, sa, b, sb), wasserstein2(b, sb, c, sc), wasserstein2(a, sa, c, sc)
    assert float(ac) <= float(ab) + float(bc) + 1e-9
    assert float(ab) == pytest.approx(float(wasserstein2(b, sb, a, sa)), rel=1e-9)
    assert float(ab) > 0
    assert float(wasserstein2(a, sa, a, sa)) == pytest.approx(0.0, abs=1e-6)


# --- gradients -------------------------------------------------------------------


def _spd_from(x: torch.Tensor) -> torch.Tensor:
    return x @ x.transpose(-1, -2) + 0.5 * torch.eye(x.shape[-1], dtype=x.dtype)


@pytest.mark.parametrize("name", [*FUNCS, "w2"])
def test_gradcheck(name: str) -> None:
    fn = wasserstein2 if name == "w2" else FUNCS[name][0]
    gen = torch.Generator().manual_seed(0)
    inputs = [
        torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True),
        torch.randn(3, 3, generator=gen, dtype=torch.float64, requires_grad=True),
        torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True),
        torch.randn(3, 3, generator=gen, dtype=torch.float64, requires_grad=True),
    ]
    assert torch.autograd.gradcheck(
        lambda m1, a1, m2, a2: fn(m1, _spd_from(a1), m2, _spd_from(a2)), inputs
    )


def test_gradients_finite_at_equal_distributions() -> None:
    mu = torch.randn(4, dtype=torch.float64, requires_grad=True)
    a = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    cov = _spd_from(a)
    for fn in (wasserstein2, hellinger_distance, frechet_distance, kl_divergence):
        grads = torch.autograd.grad(
            fn(mu, cov, mu.detach(), cov.detach()), (mu, a), retain_graph=True
        )
        assert all(bool(torch.isfinite(g).all()) for g in grads), fn.__name__


def test_gradient_through_singular_frechet_is_finite() -> None:
    x1 = torch.randn(5, 12, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(5, 12, dtype=torch.float64)
    cov1 = torch.cov(x1.T)
    cov2 = torch.cov(x2.T)
    value = frechet_distance(x1.mean(0), cov1, x2.mean(0), cov2)
    (grad,) = torch.autograd.grad(value, x1)
    assert bool(torch.isfinite(grad).all())


# --- bad input -------------------------------------------------------------------


def test_errors_name_the_argument() -> None:
    eye = np.eye(3)
    z = np.zeros(3)
    with pytest.raises(ValueError, match=r"cov2: expected last dimension 3 \(to match mu1\)"):
        frechet_distance(z, eye, z, np.eye(4))
    with pytest.raises(ValueError, match=r"cov1: expected square matrices"):
        kl_divergence(z, np.ones((3, 2)), z, eye)
    with pytest.raises(ValueError, match=r"mu2: expected finite values, got 1 NaN"):
        wasserstein2(z, eye, np.array([0, np.nan, 0]), eye)
    with pytest.raises(ValueError, match=r"cov1: expected a symmetric matrix"):
        frechet_distance(z, np.triu(np.ones((3, 3))), z, eye)
    with pytest.raises(ValueError, match=r"cov2: expected a positive semi-definite covariance"):
        frechet_distance(z, eye, z, np.diag([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match=r"mu1: expected shape \(\.\.\., d\)"):
        kl_divergence(np.float64(1.0), eye, z, eye)
    with pytest.raises(ValueError, match=r"dtype: expected a floating-point torch dtype"):
        frechet_distance(z, eye, z, eye, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"broadcastable leading dimensions"):
        frechet_distance(np.zeros((2, 3)), eye, np.zeros((4, 3)), eye)


@pytest.mark.parametrize("fn", [kl_divergence, bhattacharyya_distance, hellinger_distance])
def test_singular_covariance_rejected_by_density_divergences(fn: object) -> None:
    rng = np.random.default_rng()
    singular = ref.random_singular_cov(rng, 6, 3)
    z = np.zeros(6)
    with pytest.raises(ValueError, match=r"cov1: expected a positive-definite covariance"):
        fn(z, singular, z, np.eye(6))  # type: ignore[operator]
    with pytest.raises(ValueError, match=r"cov2: expected a positive-definite covariance"):
        fn(z, np.eye(6), z, singular)  # type: ignore[operator]
