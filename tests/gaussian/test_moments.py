"""GaussianMoments (streaming) and frechet_distance_from_features (Gram route)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from structmat.gaussian import GaussianMoments, frechet_distance, frechet_distance_from_features
from tests.reference import gaussian as ref


@pytest.mark.parametrize("chunks", [[1, 2, 97], [50, 50], [3] * 40])
def test_chunked_updates_equal_numpy_cov(chunks: list[int]) -> None:
    rng = np.random.default_rng()
    x = rng.standard_normal((sum(chunks), 7)) * 10 + 1e3  # large offset: stability test
    m = GaussianMoments()
    start = 0
    for size in chunks:
        m.update(x[start : start + size])
        start += size
    assert m.count == x.shape[0]
    np.testing.assert_allclose(m.mean.numpy(), x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(m.cov.numpy(), np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)


def test_merge_equals_single_pass_and_float32_rows_accumulate_in_float64() -> None:
    rng = np.random.default_rng()
    x = rng.standard_normal((300, 5)).astype(np.float32)
    parts = [GaussianMoments().update(x[i : i + 100]) for i in range(0, 300, 100)]
    merged = parts[0].merge(parts[1]).merge(parts[2]).merge(GaussianMoments())
    whole = GaussianMoments().update(x)
    assert merged.count == 300 and merged.cov.dtype == torch.float64
    torch.testing.assert_close(merged.mean, whole.mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(merged.cov, whole.cov, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        whole.cov.numpy(), np.cov(x.astype(np.float64), rowvar=False), rtol=1e-10
    )
    empty = GaussianMoments().merge(whole)
    torch.testing.assert_close(empty.cov, whole.cov)


def test_single_row_update_and_save_load_round_trip(tmp_path: object) -> None:
    rng = np.random.default_rng()
    m = GaussianMoments()
    for row in rng.standard_normal((10, 4)):
        m.update(row)
    path = f"{tmp_path}/stats.npz"
    m.save(path)
    back = GaussianMoments.load(path)
    assert back.count == 10
    torch.testing.assert_close(back.mean, m.mean)
    torch.testing.assert_close(back.cov, m.cov)
    with np.load(path, allow_pickle=False) as z:  # pytorch-fid compatible keys
        assert set(z.files) == {"mu", "sigma", "count"}


def test_moments_errors() -> None:
    m = GaussianMoments().update(np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"GaussianMoments: expected at least 2 rows before \.cov"):
        _ = m.cov
    with pytest.raises(
        ValueError, match=r"x: expected last dimension 3 \(to match the rows seen before\)"
    ):
        m.update(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"x: expected finite values"):
        m.update(np.full((2, 3), np.inf))
    with pytest.raises(ValueError, match=r"x: expected shape \(n, d\)"):
        m.update(np.ones((2, 3, 1)))
    with pytest.raises(ValueError, match=r"other: expected moments of dimension 3"):
        m.merge(GaussianMoments().update(np.ones((2, 5))))
    with pytest.raises(ValueError, match=r"GaussianMoments: expected at least 1 row"):
        _ = GaussianMoments().mean


def test_load_rejects_incomplete_file(tmp_path: object) -> None:
    path = f"{tmp_path}/bad.npz"
    np.savez(path, mu=np.zeros(3))
    with pytest.raises(ValueError, match=r"missing \['count', 'sigma'\]"):
        GaussianMoments.load(path)


@pytest.mark.parametrize(("n1", "n2", "d"), [(5, 7, 32), (12, 9, 64), (3, 20, 50)])
def test_features_gram_route_is_exact_for_n_below_d(n1: int, n2: int, d: int) -> None:
    """Against a 40-digit mpmath reference: the Gram route is exact to rounding."""
    rng = np.random.default_rng()
    x1 = rng.standard_normal((n1, d)) @ rng.standard_normal((d, d)) / np.sqrt(d)
    x2 = rng.standard_normal((n2, d)) + 0.3
    want = ref.frechet_features_highprec(x1, x2)
    assert float(frechet_distance_from_features(x1, x2)) == pytest.approx(want, rel=1e-12)
    # Through the d×d rank-deficient covariances the problem itself is only
    # sqrt(eps)-conditioned (the square-root trace is not Lipschitz at 0): ~1e-8.
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    via_cov = frechet_distance(x1.mean(0), s1, x2.mean(0), s2)
    assert float(via_cov) == pytest.approx(want, rel=1e-7)


@pytest.mark.parametrize(("n1", "n2", "d"), [(100, 80, 20), (64, 300, 64)])
def test_features_route_with_n_above_d_equals_reference(n1: int, n2: int, d: int) -> None:
    rng = np.random.default_rng()
    x1 = rng.standard_normal((n1, d)) @ rng.standard_normal((d, d)) / np.sqrt(d)
    x2 = rng.standard_normal((n2, d)) + 0.3
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    want = ref.frechet(x1.mean(0), s1, x2.mean(0), s2)
    assert float(frechet_distance_from_features(x1, x2)) == pytest.approx(want, rel=1e-9)


def test_features_route_zero_for_identical_sets_and_differentiable() -> None:
    x = torch.randn(6, 30, dtype=torch.float64, requires_grad=True)
    assert float(frechet_distance_from_features(x.detach(), x.detach())) == pytest.approx(
        0, abs=1e-10
    )
    y = torch.randn(8, 30, dtype=torch.float64)
    (grad,) = torch.autograd.grad(frechet_distance_from_features(x, y), x)
    assert bool(torch.isfinite(grad).all())


def test_features_errors() -> None:
    with pytest.raises(ValueError, match=r"x1: expected at least 2 rows"):
        frechet_distance_from_features(np.ones((1, 4)), np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"x2: expected last dimension 4 \(to match x1\)"):
        frechet_distance_from_features(np.ones((3, 4)), np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"x1: expected a numeric array"):
        frechet_distance_from_features(np.array([["a", "b"]] * 3), np.ones((3, 2)))
    for bad in ("float64", torch.int64, torch.float16):
        with pytest.raises(ValueError, match=r"dtype: expected a floating-point torch dtype"):
            frechet_distance_from_features(np.ones((3, 2)), np.ones((3, 2)), dtype=bad)  # type: ignore[arg-type]
