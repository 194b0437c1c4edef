"""The float64 nuclear-norm routes of structmat.gaussian._linalg on adversarial spectra:
each returned value within 1e-12 of a NumPy SVD reference, each proved bound holding,
and the squared route's bound being the exact worst case (Theorem 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from structmat.gaussian import _linalg as la
from structmat.gaussian import trace_sqrt_product
from tests.reference import gaussian as ref

EPS = float(np.finfo(np.float64).eps)


def _with_spectrum(rng: np.random.Generator, sigma: np.ndarray, m: int | None = None) -> np.ndarray:
    """A dense (m, n) matrix with singular values ``sigma`` (random orthogonal factors)."""
    n = sigma.shape[0]
    m = n if m is None else m
    u, _ = np.linalg.qr(rng.standard_normal((m, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (u * sigma) @ v.T


def _nuclear_ref(g: np.ndarray) -> float:
    return float(np.linalg.svd(g, compute_uv=False).sum())


# adversarial spectra: log-spaced to condition 1e12, a cluster of tiny values below
# sqrt(eps), a near-rank-deficient tail, repeated values
SPECTRA = {
    "logspace-1e3": lambda n: np.logspace(0, -3, n),
    "logspace-1e6": lambda n: np.logspace(0, -6, n),
    "logspace-1e12": lambda n: np.logspace(0, -12, n),
    "many-tiny": lambda n: np.r_[np.ones(n // 8), np.full(n - n // 8, 1e-9)],
    "rank-deficient-ish": lambda n: np.r_[np.linspace(1, 0.5, n // 2), np.full(n - n // 2, 1e-14)],
    "clusters": lambda n: np.repeat([1.0, 1e-4, 1e-8], [n // 3, n // 3, n - 2 * (n // 3)]),
    "one-large": lambda n: np.r_[1e6, np.ones(n - 1)],
}


@pytest.mark.parametrize("name", list(SPECTRA))
@pytest.mark.parametrize("n", [40, 200])
def test_every_route_within_1e12_of_reference(name: str, n: int) -> None:
    rng = np.random.default_rng(n)
    g_np = _with_spectrum(rng, SPECTRA[name](n))
    want = _nuclear_ref(g_np)
    g = torch.from_numpy(g_np)
    assert float(la.nuclear_norm(g, squared_ok=True)) == pytest.approx(want, rel=1e-12)
    total, ok = la._squared(g)
    if bool(ok):  # accepted: within the proved bound, hence within 1e-11
        assert float(total) == pytest.approx(want, rel=1e-12)
    mid, ok2 = la._certified(g)
    if bool(ok2):
        assert float(mid) == pytest.approx(want, rel=1e-12)


def test_squared_route_rejects_tiny_singular_values() -> None:
    """Squaring loses sqrt(eps)·σ1 per tiny σ: the bound must send these elsewhere."""
    rng = np.random.default_rng(0)
    g = torch.from_numpy(_with_spectrum(rng, SPECTRA["many-tiny"](120)))
    total, ok = la._squared(g)
    assert not bool(ok)
    want = _nuclear_ref(g.numpy())
    assert abs(float(total) - want) > 1e-10 * want  # the squared value really is off
    assert float(la.nuclear_norm(g, squared_ok=True)) == pytest.approx(want, rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 64),
    log_cond=st.floats(0, 12),
    n_tiny=st.integers(0, 20),
    tiny_exp=st.floats(-16, -4),
    extra_rows=st.integers(0, 8),
)
def test_bounds_hold_on_random_adversarial_spectra(
    seed: int, n: int, log_cond: float, n_tiny: int, tiny_exp: float, extra_rows: int
) -> None:
    """Theorems 1 and 3 on random spectra: the reference lies within each bound
    (plus the SVD reference's own rounding), and every accepted value within what its
    route promises (Route 1: 1e-11, Route 2: 1e-12; measured errors are far smaller)."""
    rng = np.random.default_rng(seed)
    sigma = np.logspace(0, -log_cond, n) * rng.uniform(0.5, 2.0, n)
    k = min(n_tiny, n - 1)
    if k:
        sigma[-k:] = 10.0**tiny_exp * rng.uniform(0.5, 2.0, k)
    g_np = _with_spectrum(rng, sigma, m=n + extra_rows)
    want = _nuclear_ref(g_np)
    floor = 4 * n * EPS * sigma.max()  # the reference's own error (σ_i ± C·eps·σ1)
    g = torch.from_numpy(g_np)

    total, ok = la._squared(g)
    lam = torch.linalg.eigvalsh(g.T @ g)
    delta = la._C * EPS * lam.amax().clamp(min=0)
    bound = float(la.squared_route_bound(lam, delta.reshape(1)))
    got_sq = float(torch.sqrt(lam.clamp(min=0)).sum())
    assert abs(got_sq - want) <= bound + floor  # Theorem 1
    if bool(ok):  # accepted: the proved bound is <= _RTOL of the value
        assert float(total) == pytest.approx(want, rel=la._RTOL, abs=floor)

    mid, ok2 = la._certified(g)
    if bool(ok2):  # accepted: half-width <= _RTOL_CERTIFIED
        assert float(mid) == pytest.approx(want, rel=la._RTOL_CERTIFIED, abs=floor)
    got = float(la.nuclear_norm(g, squared_ok=True))
    assert got == pytest.approx(want, rel=la._RTOL, abs=floor)


@settings(max_examples=30, deadline=None)
@given(
    lam=st.lists(st.floats(-1e-15, 1.0), min_size=1, max_size=30),
    rel_delta=st.floats(1e-18, 1e-2),
)
def test_squared_bound_is_the_exact_worst_case(lam: list[float], rel_delta: float) -> None:
    """Theorem 2: the admissible true spectra λ̃ ∓ δ (clamped at 0) attain the bound."""
    lt = torch.tensor(sorted(lam), dtype=torch.float64)
    delta = torch.tensor([rel_delta * max(1e-300, float(lt.abs().max()))], dtype=torch.float64)
    if float(lt.min()) < -float(delta):
        return  # inconsistent with a PSD matrix: the routes reject it
    mp = pytest.importorskip("mpmath")
    with mp.workdps(50):  # the differences cancel in float64; evaluate them exactly
        d = mp.mpf(float(delta))
        vals = [mp.mpf(x) for x in lt.tolist()]
        r = [mp.sqrt(max(v, 0)) for v in vals]
        down = mp.fsum(ri - mp.sqrt(max(v - d, 0)) for ri, v in zip(r, vals, strict=True))
        up = mp.fsum(mp.sqrt(max(v + d, 0)) - ri for ri, v in zip(r, vals, strict=True))
        worst = float(max(down, up))  # true spectra λ̃ - δ and λ̃ + δ (clamped at 0)
    bound = float(la.squared_route_bound(lt, delta))
    assert bound == pytest.approx(worst, rel=1e-12, abs=1e-300)


def test_certificate_accepts_condition_1e6_and_rejects_1e12() -> None:
    """Route 2 certifies a spectrum spanning 1e6 (where the squared route cannot);
    at 1e12 eigh's eigenvectors are too coarse, the interval is ~1e-8 wide, and it
    declines (the SVD then answers)."""
    rng = np.random.default_rng(3)
    for name, accepted in (("logspace-1e6", True), ("logspace-1e12", False)):
        g_np = _with_spectrum(rng, SPECTRA[name](160))
        want = _nuclear_ref(g_np)
        g = torch.from_numpy(g_np)
        mid, ok = la._certified(g)
        assert bool(ok) is accepted
        assert not bool(la._squared(g)[1])
        if accepted:
            assert float(mid) == pytest.approx(want, rel=1e-13)


def test_routes_are_chosen_per_batch_element(monkeypatch: pytest.MonkeyPatch) -> None:
    """One benign and two adversarial matrices in one batch: each gets its own route."""
    rng = np.random.default_rng(5)
    gs = np.stack(
        [_with_spectrum(rng, SPECTRA[k](96)) for k in ("logspace-1e3", "many-tiny", "logspace-1e6")]
    )
    want = [_nuclear_ref(x) for x in gs]
    for certify_above in (la._CERTIFY_ABOVE_N, 0):  # 0: route 2 at these small sizes too
        monkeypatch.setattr(la, "_CERTIFY_ABOVE_N", certify_above)
        got = la.nuclear_norm(torch.from_numpy(gs), squared_ok=True)
        assert got.shape == (3,)
        for gi, wi in zip(got.tolist(), want, strict=True):
            assert gi == pytest.approx(wi, rel=1e-12)


def test_gradient_path_falls_back_per_element() -> None:
    rng = np.random.default_rng(6)
    gs = np.stack([_with_spectrum(rng, SPECTRA[k](30)) for k in ("logspace-1e3", "many-tiny")])
    g = torch.from_numpy(gs).requires_grad_(True)
    got = la.nuclear_norm(g, squared_ok=True)
    want = torch.linalg.svdvals(g.detach()).sum(-1)
    torch.testing.assert_close(got.detach(), want, rtol=1e-12, atol=0)
    got.sum().backward()
    assert g.grad is not None and bool(g.grad.isfinite().all())
    u, _, vh = torch.linalg.svd(g.detach())
    torch.testing.assert_close(g.grad[0], u[0] @ vh[0], rtol=1e-6, atol=1e-8)  # ∂‖G‖_*/∂G


@pytest.mark.parametrize("cond", [1e3, 1e6, 1e9])
def test_trace_sqrt_product_on_ill_conditioned_pairs(cond: float) -> None:
    """Through the Cholesky factors (blocked triangular product, route predictor)."""
    rng = np.random.default_rng(int(np.log10(cond)))
    s1, s2 = ref.random_spd(rng, 256, cond), ref.random_spd(rng, 256, cond)
    got = float(trace_sqrt_product(torch.from_numpy(s1), torch.from_numpy(s2)))
    assert got == pytest.approx(ref.trace_sqrt(s1, s2), rel=1e-12)


def test_predictor_only_skips_the_squared_route_where_it_fails() -> None:
    """The predictor is an order of trial, not a bound, but it must never skip a
    squared route that would have been accepted; it does flag condition 1e9."""
    rng = np.random.default_rng(1)
    flagged = []
    for cond in (1e2, 1e3, 1e6, 1e9):
        s1, s2 = ref.random_spd(rng, 200, cond), ref.random_spd(rng, 200, cond)
        l1 = torch.linalg.cholesky(torch.from_numpy(s1))
        l2 = torch.linalg.cholesky(torch.from_numpy(s2))
        g = l2.T @ l1
        skip = bool(la._predict_squared_fails(g, l2, l1))
        assert not (skip and bool(la._squared(g)[1])), cond
        flagged.append(skip)
    assert flagged[0] is False and flagged[-1] is True


@pytest.mark.parametrize("shape", [(300,), (2, 300), (3, 257)])
def test_blocked_products_equal_plain_ones(shape: tuple[int, ...]) -> None:
    d = shape[-1]
    batch = shape[:-1]
    a = torch.randn(*batch, d, d, dtype=torch.float64)
    l1 = torch.linalg.cholesky(a @ a.mT + d * torch.eye(d, dtype=torch.float64))
    l2 = torch.linalg.cholesky(torch.eye(d, dtype=torch.float64) + 0.1 * (a.mT @ a) / d)
    g = la.lower_transpose_product(l2, l1)
    torch.testing.assert_close(g, l2.mT @ l1, rtol=1e-12, atol=1e-10)
    lower = la._gram_lower(g)
    full = g.mT @ g
    torch.testing.assert_close(lower.tril(), full.tril(), rtol=1e-12, atol=1e-8)
    torch.testing.assert_close(torch.linalg.eigvalsh(lower), torch.linalg.eigvalsh(full))
    # broadcast batch dims: one l2 against a batch of l1
    if batch:
        gb = la.lower_transpose_product(l2[0], l1)
        torch.testing.assert_close(gb, l2[0].mT @ l1, rtol=1e-12, atol=1e-10)
