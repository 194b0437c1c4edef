"""S4 / S4D kernels equal the dense system's kernel (materialised powers, float64)."""

import numpy as np
import pytest
import torch

from structmat.ssm import S4, diag_kernel, nplr_kernel
from tests.reference.ssm import kernel_powers

CONFIGS = [
    ("nplr", "legs", "bilinear"),
    ("nplr", "legt", "bilinear"),
    ("nplr", "fout", "bilinear"),
    ("diag", "diag-lin", "zoh"),
    ("diag", "diag-lin", "bilinear"),
    ("diag", "diag-inv", "zoh"),
    ("diag", "diag-inv", "bilinear"),
]


def _perturbed(seed: int, **kw) -> S4:  # type: ignore[no-untyped-def]
    """A float64 layer whose SSM parameters are moved off their initial values."""
    torch.manual_seed(seed)
    layer = S4(**kw).double()
    with torch.no_grad():
        for p in layer.ssm_parameters():
            p.add_(0.1 * torch.randn_like(p))
    return layer


def _check_against_dense(layer: S4, L: int, tol: float = 1e-10) -> None:
    K = layer.kernel(L).detach()
    A, B, C, dt = layer.dense_ssm()
    ref = kernel_powers(A, B, C, dt, L, layer.discretization)
    assert K.shape == ref.shape
    err = np.abs(K.numpy() - ref).max() / np.abs(ref).max()
    assert err < tol, err


@pytest.mark.parametrize(("mode", "init", "disc"), CONFIGS)
@pytest.mark.parametrize("N", [4, 16, 64])
@pytest.mark.parametrize("L", [1, 7, 256, 1000])
def test_kernel_equals_dense_powers(mode: str, init: str, disc: str, N: int, L: int) -> None:
    """kernel(L) == Re(C Āˡ B̄), l < L, for the system (A, B, C, Δ) the layer was given.

    l_max=None: the parameter C holds a plain C until the first kernel call turns it
    into C̃ = C (I - Ā^L), so the reference uses that C directly (no inversion).
    """
    layer = _perturbed(
        N * 1000 + L, d_model=2, d_state=N, l_max=None, mode=mode, init=init, discretization=disc
    )
    C = torch.view_as_complex(layer.C.detach().clone())[0]  # (H, N/2)
    C_ref = torch.cat([C, C.conj()], -1) if mode == "nplr" else 2 * C
    K = layer.kernel(L).detach()
    A, B, _, dt = layer.dense_ssm()
    ref = kernel_powers(A, B, C_ref, dt, L, disc)
    assert K.shape == ref.shape == (2, L)
    err = np.abs(K.numpy() - ref).max() / np.abs(ref).max()
    assert err < 1e-10, err
    # a few taps again from materialised matrix powers Ā^l
    taps = sorted({0, L // 2, L - 1})
    ref_p = kernel_powers(A, B, C_ref, dt, L, disc, taps=taps)
    assert np.abs(K.numpy()[:, taps] - ref_p).max() / np.abs(ref).max() < 1e-10


@pytest.mark.parametrize(("mode", "init", "disc"), [c for c in CONFIGS if c[1] != "fout"])
@pytest.mark.parametrize("N", [4, 64])
@pytest.mark.parametrize("L", [1, 7, 1000])
def test_dense_ssm_reproduces_kernel(mode: str, init: str, disc: str, N: int, L: int) -> None:
    """Discretising dense_ssm() and summing Re(C Āˡ B̄) gives kernel(L).

    For nplr, dense_ssm's C = C̃ (I - Ā^L)⁻¹ is a linear solve whose condition number
    grows like 1/(L Δ |λ|) for slow modes; FouT's near-zero frequency (Re λ clamped to
    -1e-4) makes that ~1e8, so FouT is covered by the test above instead.
    """
    layer = _perturbed(
        N * 1000 + L, d_model=2, d_state=N, l_max=L, mode=mode, init=init, discretization=disc
    )
    _check_against_dense(layer, L)


@pytest.mark.parametrize(("mode", "init", "disc"), CONFIGS)
def test_shorter_kernels_are_prefixes(mode: str, init: str, disc: str) -> None:
    layer = _perturbed(
        5, d_model=3, d_state=8, l_max=300, mode=mode, init=init, discretization=disc
    )
    K = layer.kernel(300)
    for L in (1, 7, 128, 299):
        assert torch.allclose(layer.kernel(L), K[:, :L], atol=1e-12)
        _check_against_dense(layer, L)


def test_growing_length_keeps_the_system() -> None:
    """l_max=None: a longer input re-expresses C̃ but the continuous system is unchanged."""
    layer = _perturbed(6, d_model=2, d_state=16, l_max=None)
    K7 = layer.kernel(7)
    _, _, C0, _ = layer.dense_ssm()
    assert int(layer.l_kernel) == 7
    K300 = layer.kernel(300)
    assert int(layer.l_kernel) == 300
    assert torch.allclose(K300[:, :7], K7, atol=1e-10)
    _, _, C1, _ = layer.dense_ssm()
    assert torch.allclose(C1, C0, atol=1e-9)
    _check_against_dense(layer, 300)


def test_bidirectional_kernels() -> None:
    layer = _perturbed(7, d_model=2, d_state=8, l_max=64, bidirectional=True)
    K = layer.kernel(64)
    assert K.shape == (2, 2, 64)
    A, B, C, dt = layer.dense_ssm()
    assert C.shape == (2, 2, 8)
    for i in range(2):
        ref = kernel_powers(A, B, C[i], dt, 64, "bilinear")
        assert np.abs(K[i].detach().numpy() - ref).max() / np.abs(ref).max() < 1e-10


@pytest.mark.parametrize("chunk", [1, 3, 100])
def test_chunked_kernels_equal_unchunked(chunk: int) -> None:
    torch.manual_seed(8)
    H, N2, L = 3, 8, 200
    dt = torch.exp(torch.randn(H, dtype=torch.float64) - 4)
    Lam = torch.complex(
        -torch.rand(H, N2, dtype=torch.float64), 5 * torch.randn(H, N2, dtype=torch.float64)
    )
    P = torch.randn(2, H, N2, dtype=torch.complex128)
    B = torch.randn(H, N2, dtype=torch.complex128)
    C = torch.randn(1, H, N2, dtype=torch.complex128)
    a = nplr_kernel(Lam, P, B, C, dt, L, chunk=chunk)
    b = nplr_kernel(Lam, P, B, C, dt, L, chunk=None)
    assert torch.allclose(a, b, atol=1e-12)
    for method in ("zoh", "bilinear"):
        a = diag_kernel(Lam, B, C, dt, L, method, chunk=chunk)
        b = diag_kernel(Lam, B, C, dt, L, method, chunk=L)
        assert torch.allclose(a, b, atol=1e-12)


def test_rank_three_woodbury_path() -> None:
    """Generic rank R > 2 (linalg.solve) against the dense system."""
    torch.manual_seed(9)
    H, N2, L, R = 2, 4, 16, 3
    from structmat.ssm.discretize import discretize_dense
    from structmat.ssm.nplr import full_system

    dt = torch.full((H,), 0.05, dtype=torch.float64)
    Lam = torch.complex(
        -torch.rand(H, N2, dtype=torch.float64) - 0.1, torch.randn(H, N2, dtype=torch.float64)
    )
    P = 0.3 * torch.randn(R, H, N2, dtype=torch.complex128)
    B = torch.randn(H, N2, dtype=torch.complex128)
    C = torch.randn(1, H, N2, dtype=torch.complex128)
    K = nplr_kernel(Lam, P, B, C, dt, L)[0]
    A, Bf, _ = full_system(Lam, P, B)
    dA, _ = discretize_dense(A, Bf, dt, "bilinear")
    Cf = torch.cat([C[0], C[0].conj()], -1)
    E = torch.eye(2 * N2, dtype=A.dtype) - torch.linalg.matrix_power(dA, L)
    Cd = torch.linalg.solve(E.transpose(-1, -2), Cf.unsqueeze(-1)).squeeze(-1)
    ref = kernel_powers(A, Bf, Cd, dt, L, "bilinear")
    assert np.abs(K.numpy() - ref).max() / np.abs(ref).max() < 1e-10


def test_float32_kernel_close_to_float64() -> None:
    torch.manual_seed(10)
    for mode, init in (("nplr", "legs"), ("diag", "diag-inv")):
        layer = S4(8, 64, l_max=4096, mode=mode, init=init)
        K32 = layer.kernel(4096).detach()
        K64 = layer.double().kernel(4096).detach()
        assert float((K32.double() - K64).abs().max() / K64.abs().max()) < 1e-4
