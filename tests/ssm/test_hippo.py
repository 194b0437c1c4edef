"""hippo() against the published formulas; nplr() reconstructs A."""

import numpy as np
import pytest
import torch

from structmat.ssm import hippo, nplr, rank_correction
from structmat.ssm.nplr import full_system
from tests.reference.ssm import hippo_loops


@pytest.mark.parametrize("measure", ["legs", "legt", "lagt", "fout"])
@pytest.mark.parametrize("N", [1, 2, 5, 16, 64])
def test_hippo_matches_formulas(measure: str, N: int) -> None:
    if measure == "fout" and N % 2:
        with pytest.raises(ValueError, match="N: expected an even state size"):
            hippo(measure, N)
        return
    A, B = hippo(measure, N)
    A_ref, B_ref = hippo_loops(measure, N)
    assert A.shape == (N, N) and B.shape == (N,)
    np.testing.assert_allclose(A.numpy(), A_ref, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(B.numpy(), B_ref, rtol=1e-13, atol=1e-13)


def test_hippo_dtype_and_legs_entries() -> None:
    A, B = hippo("legs", 4, dtype=torch.float32)
    assert A.dtype == torch.float32 and B.dtype == torch.float32
    assert A[2, 1].item() == pytest.approx(-(5**0.5) * (3**0.5))
    assert A[3, 3].item() == -4 and A[1, 2].item() == 0


@pytest.mark.parametrize("measure", ["legs", "legt", "lagt", "fout"])
@pytest.mark.parametrize("N", [2, 4, 16, 64])
def test_rank_correction_makes_a_normal(measure: str, N: int) -> None:
    A, _ = hippo(measure, N)
    P = rank_correction(measure, N)
    AP = A + P.T @ P
    # normal: S + cI with S skew-symmetric, i.e. the symmetric part is a multiple of I
    sym = 0.5 * (AP + AP.T)
    c = torch.diagonal(sym).mean()
    assert torch.allclose(sym, c * torch.eye(N, dtype=A.dtype), atol=1e-12)


@pytest.mark.parametrize("measure", ["legs", "legt", "lagt", "fout"])
@pytest.mark.parametrize("N", [2, 4, 16, 64])
def test_nplr_reconstructs_a(measure: str, N: int) -> None:
    Lam, P, B, V = nplr(measure, N)
    assert Lam.shape == (N // 2,) and B.shape == (N // 2,) and V.shape == (N, N // 2)
    assert P.shape[-1] == N // 2
    A_full, B_full, V_full = full_system(Lam, P, B, V)
    assert V_full is not None
    A0, B0 = hippo(measure, N)
    scale = float(A0.abs().max())
    eye = torch.eye(N, dtype=V_full.dtype)
    assert float((V_full.conj().T @ V_full - eye).abs().max()) < 1e-10
    rec = V_full @ A_full @ V_full.conj().T
    assert float((rec - A0).abs().max()) / scale < 1e-10
    assert float((V_full @ B_full - B0).abs().max()) / float(B0.abs().max()) < 1e-10
    assert float(Lam.real.max()) <= 1e-12  # stable normal part


def test_nplr_legs_spectrum() -> None:
    Lam, P, _, _ = nplr("legs", 16)
    assert torch.allclose(Lam.real, torch.full((8,), -0.5, dtype=torch.float64), atol=1e-12)
    assert P.shape == (1, 8)
    assert nplr("legt", 8)[1].shape == (2, 4)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"N: expected an even state size .*got 5"):
        nplr("legs", 5)
    with pytest.raises(ValueError, match=r"measure: expected one of 'legs'.*got 'foo'"):
        hippo("foo", 4)
    with pytest.raises(ValueError, match=r"N: expected an integer >= 1, got 0"):
        hippo("legs", 0)
    with pytest.raises(ValueError, match=r"dtype: expected a complex dtype"):
        nplr("legs", 4, dtype=torch.float64)
