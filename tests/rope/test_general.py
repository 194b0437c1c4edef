"""General RoPE expm(n B): definition, reduction to standard RoPE, absorption into W_q, W_k."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from structmat.rope import (
    absorb_generator,
    apply_rotary,
    apply_rotary_2d,
    blockdiag_rotation,
    general_rotary,
    to_standard,
)
from tests.reference import rope as ref


def _rng(seed):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("dim", [2, 6, 16])
def test_general_rotary_is_expm(dim):
    B = ref.random_skew(dim, _rng(dim))
    pos = np.array([0.0, 1.0, -3.0, 2.5, 40.0])
    got = general_rotary(torch.from_numpy(B), torch.from_numpy(pos))
    for i, n in enumerate(pos):
        assert np.abs(got[i].numpy() - ref.expm(n * B)).max() < 1e-10
    # R(m)^T R(n) = R(n - m)
    assert torch.allclose(got[1].T @ got[3], general_rotary(torch.from_numpy(B), [1.5])[0])


def _reconstruct(P, theta, n):
    return P @ blockdiag_rotation(n * theta) @ P.T


FREQ_CASES = {
    "random": None,
    "repeated": np.array([1.3, 1.3, 1.3, 0.4, 0.4, 2.0]),
    "zeros": np.array([0.7, 0.0, 0.0, 0.2, 0.0, 0.0]),
    "repeated_and_zero": np.array([0.5, 0.5, 0.0, 0.5, 0.0, 3.0]),
    "all_zero": np.zeros(6),
}


@pytest.mark.parametrize("case", list(FREQ_CASES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_to_standard_reconstructs(case, seed):
    B = ref.random_skew(12, _rng(seed), FREQ_CASES[case])
    P, theta = to_standard(torch.from_numpy(B))
    assert P.shape == (12, 12) and theta.shape == (6,)
    assert torch.allclose(P.T @ P, torch.eye(12, dtype=torch.float64), atol=1e-12, rtol=0)
    assert bool((theta >= 0).all()) and bool((theta[:-1] >= theta[1:]).all())
    if FREQ_CASES[case] is not None:
        want = np.sort(FREQ_CASES[case])[::-1].copy()
        assert np.abs(theta.numpy() - want).max() < 1e-10
    for n in (0.0, 1.0, -7.0, 123.25):
        err = (_reconstruct(P, theta, n).numpy() - ref.expm(n * B)).__abs__().max()
        assert err < 1e-10, err


def test_standard_rope_generator_gives_rope_frequencies():
    # B = blockdiag(theta_i J) in the interleaved layout: to_standard returns theta.
    theta = ref.frequencies(8, 1e4)
    B = np.zeros((8, 8))
    for i, t in enumerate(theta):
        B[2 * i + 1, 2 * i], B[2 * i, 2 * i + 1] = t, -t
    _, got = to_standard(torch.from_numpy(B))
    assert np.allclose(got.numpy(), theta, rtol=1e-12)
    R = general_rotary(torch.from_numpy(B), torch.arange(5.0))
    x = torch.randn(5, 8, dtype=torch.float64)
    assert torch.allclose(torch.einsum("lij,lj->li", R, x), apply_rotary(x, layout="interleaved"))


def _commuting(dim, k, seed):
    rng = _rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    gens = []
    for _ in range(k):
        t = rng.standard_normal(dim // 2)
        t[-1] = 0.0  # a shared zero plane
        Bs = np.zeros((dim, dim))
        for i, v in enumerate(t):
            Bs[2 * i + 1, 2 * i], Bs[2 * i, 2 * i + 1] = v, -v
        gens.append(Q @ Bs @ Q.T)
    return np.stack(gens)


@pytest.mark.parametrize("k", [2, 3])
def test_commuting_generators_share_one_basis(k):
    B = _commuting(10, k, seed=k)
    P, theta = to_standard(torch.from_numpy(B))
    assert theta.shape == (k, 5)
    pos = np.array([[1.0, -2.0, 0.5][:k], [7.0, 3.0, -1.0][:k]])
    want = general_rotary(torch.from_numpy(B), torch.from_numpy(pos))
    for i, n in enumerate(pos):
        got = _reconstruct(P, torch.from_numpy(n) @ theta, 1.0)
        assert float((got - want[i]).abs().max()) < 1e-10
        assert np.abs(want[i].numpy() - ref.expm(np.tensordot(n, B, 1))).max() < 1e-10


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_absorb_into_attention_weights_1d(layout):
    # A random attention layer with general RoPE expm(n B) shared by its heads.
    H, D, d_in, L = 2, 8, 12, 9
    rng = _rng(5)
    B = torch.from_numpy(ref.random_skew(D, rng, np.array([1.0, 0.3, 0.3, 0.0])))
    Wq = torch.from_numpy(rng.standard_normal((H * D, d_in)))
    Wk = torch.from_numpy(rng.standard_normal((H * D, d_in)))
    x = torch.from_numpy(rng.standard_normal((L, d_in)))
    pos = torch.tensor([0.0, 3, 1, 8, 2, 5, 4, 7, 6])
    R = general_rotary(B, pos)  # (L, D, D)

    def heads(t):
        return t.view(L, H, D).transpose(0, 1)  # (H, L, D)

    q = torch.einsum("lij,hlj->hli", R, heads(x @ Wq.T))
    k = torch.einsum("lij,hlj->hli", R, heads(x @ Wk.T))
    want = q @ k.transpose(-1, -2)  # (H, L, L)
    Wq2, Wk2, theta = absorb_generator(Wq, Wk, B, layout=layout)
    q2 = apply_rotary(heads(x @ Wq2.T), pos, layout=layout, freqs=theta)
    k2 = apply_rotary(heads(x @ Wk2.T), pos, layout=layout, freqs=theta)
    assert torch.allclose(q2 @ k2.transpose(-1, -2), want, atol=1e-10, rtol=0)


def test_absorb_2d_generators_gives_rope_mixed():
    # Commuting 2D generators -> RoPE-Mixed with freqs = theta.T after the basis change.
    D, d_in, L = 8, 6, 7
    rng = _rng(9)
    B = torch.from_numpy(_commuting(D, 2, seed=11))
    Wq = torch.from_numpy(rng.standard_normal((D, d_in)))
    Wk = torch.from_numpy(rng.standard_normal((D, d_in)))
    x = torch.from_numpy(rng.standard_normal((L, d_in)))
    pos = torch.from_numpy(rng.integers(-5, 5, size=(L, 2)).astype(np.float64))
    R = general_rotary(B, pos)
    q = torch.einsum("lij,lj->li", R, x @ Wq.T)
    k = torch.einsum("lij,lj->li", R, x @ Wk.T)
    Wq2, Wk2, theta = absorb_generator(Wq, Wk, B, layout="half")
    q2 = apply_rotary_2d(x @ Wq2.T, pos, mode="mixed", freqs=theta.T, layout="half")
    k2 = apply_rotary_2d(x @ Wk2.T, pos, mode="mixed", freqs=theta.T, layout="half")
    assert torch.allclose(q2 @ k2.T, q @ k.T, atol=1e-10, rtol=0)


def test_errors():
    A = torch.randn(6, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"generator: expected skew-symmetric matrices"):
        to_standard(A)
    with pytest.raises(ValueError, match=r"generator: expected skew-symmetric matrices"):
        general_rotary(A, [1.0])
    B1 = torch.from_numpy(ref.random_skew(6, _rng(0)))
    B2 = torch.from_numpy(ref.random_skew(6, _rng(1)))
    with pytest.raises(ValueError, match=r"generator: expected commuting generators"):
        to_standard([B1, B2])
    with pytest.raises(ValueError, match=r"generator: expected commuting generators"):
        general_rotary(torch.stack([B1, B2]), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"generator: expected an even size D"):
        to_standard(torch.from_numpy(ref.random_skew(5, _rng(0))))
    with pytest.raises(ValueError, match=r"positions: expected shape \(L,\)"):
        general_rotary(B1, torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"generator: expected a square"):
        general_rotary(torch.zeros(3, 4), [1.0])
    with pytest.raises(ValueError, match=r"w_q: expected shape \(H \* D, \.\.\.\) with D = 6"):
        absorb_generator(torch.zeros(7, 3), torch.zeros(6, 3), B1)


def test_blockdiag_rotation_matches_reference():
    a = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    want = ref.rotation_matrix(a.numpy(), 6, "interleaved")
    assert np.abs(blockdiag_rotation(a).numpy() - want).max() < 1e-15
    with pytest.raises(ValueError, match=r"angles: expected a floating-point tensor"):
        blockdiag_rotation(torch.tensor([1, 2]))
