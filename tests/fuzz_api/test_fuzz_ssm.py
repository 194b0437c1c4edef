"""API fuzzing of structmat.ssm (see harness.py for what is checked)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from structmat import ssm
from tests.fuzz_api.harness import (
    FUZZ,
    Case,
    Choice,
    Int,
    Num,
    Tens,
    case_params,
    run_case,
    valid_call_works,
    wrong_value,
)

H, N2, M, L = 3, 4, 2, 8
ANY = ("complex", "float", "int", "bool")


def _c(*shape: int) -> Tens:
    """A complex (or castable) tensor of exactly this shape; its (H, N2) dims are tied."""
    return Tens(
        lambda: torch.randn(shape, dtype=torch.complex128) - 0.5,
        (len(shape), len(shape)),
        ANY,
        tied=(-2, -1),
    )


def _lam() -> torch.Tensor:
    return torch.complex(-0.5 * torch.ones(H, N2), torch.randn(H, N2)).to(torch.complex128)


_DT = Tens(lambda: torch.rand(H, dtype=torch.float64) * 0.1 + 0.01, (1, 1), tied=(-1,))
_LAM = Tens(_lam, (2, 2), ("complex",), tied=(-2, -1))


def _layer(**kw: object) -> ssm.S4:
    torch.manual_seed(0)
    return ssm.S4(H, d_state=2 * N2, l_max=None, **kw)  # type: ignore[arg-type]


_S4 = _layer()
_S4_DIAG = _layer(mode="diag")


def _step(layer: ssm.S4, u_t: object, state: object) -> object:
    with torch.no_grad():
        return layer.step(u_t, state)  # type: ignore[arg-type]


CASES = [
    Case("hippo", ssm.hippo, {"measure": Choice("legs"), "N": Int(4)}),
    Case("nplr", ssm.nplr, {"measure": Choice("legs"), "N": Int(4, even=True)}),
    Case("rank_correction", ssm.rank_correction, {"measure": Choice("legt"), "N": Int(4)}),
    Case("diag_init", ssm.diag_init, {"init": Choice("diag-lin"), "N": Int(4, even=True)}),
    Case(
        "cauchy",
        ssm.cauchy,
        {
            "v": Tens(lambda: torch.randn(M, N2, dtype=torch.complex128), (2, None),
                      ANY, tied=(-1,)),
            "z": Tens(lambda: torch.randn(5, dtype=torch.complex128), (1, 1), ANY),
            "w": Tens(lambda: torch.randn(N2, dtype=torch.complex128), (1, None),
                      ANY, tied=(-1,)),
            "chunk": Int(2, optional=True),
        },
    ),
    Case(
        "cauchy_conj",
        ssm.cauchy_conj,
        {
            "v": Tens(lambda: torch.randn(M, N2, dtype=torch.complex128), (2, None),
                      ANY, tied=(-1,)),
            "y": Tens(lambda: torch.randn(5, dtype=torch.float64), (1, 1), ("float", "int")),
            "w": Tens(lambda: torch.randn(N2, dtype=torch.complex128) - 1, (1, None),
                      ANY, tied=(-1,)),
            "chunk": Int(2, optional=True),
        },
    ),
    Case(
        "vandermonde",
        ssm.vandermonde,
        {
            "v": Tens(lambda: torch.randn(M, N2, dtype=torch.complex128), (2, None),
                      ANY, tied=(-1,)),
            "logx": Tens(lambda: -torch.rand(N2, dtype=torch.complex128), (1, None),
                         ANY, tied=(-1,)),
            "L": Int(L),
            "chunk": Int(3, optional=True),
        },
    ),
    Case(
        "discretize_diag",
        ssm.discretize_diag,
        {   # batch dims broadcast here: only N is tied
            "Lambda": Tens(_lam, (1, None), ("complex",), tied=(-1,)),
            "B": Tens(lambda: torch.randn(H, N2, dtype=torch.complex128), (1, None), ANY,
                      tied=(-1,)),
            "dt": Tens(lambda: torch.rand(H, dtype=torch.float64) + 0.01, (0, None)),
            "method": Choice("zoh"),
        },
    ),
    Case(
        "discretize_dense",
        ssm.discretize_dense,
        {
            "A": Tens(lambda: -torch.eye(N2, dtype=torch.float64).expand(H, N2, N2).clone(),
                      (2, None), ANY, tied=(-2, -1), finite=True),
            "B": Tens(lambda: torch.randn(H, N2, dtype=torch.float64), (1, None), ANY,
                      tied=(-1,)),
            "dt": Tens(lambda: torch.rand(H, dtype=torch.float64), (0, None)),
            "method": Choice("bilinear"),
        },
    ),
    Case(
        "diag_kernel",
        ssm.diag_kernel,
        {"Lambda": _LAM, "B": _c(H, N2), "C": _c(M, H, N2), "dt": _DT, "L": Int(L),
         "method": Choice("zoh"), "chunk": Int(None, optional=True)},
    ),
    Case(
        "nplr_kernel",
        ssm.nplr_kernel,
        {"Lambda": _LAM, "P": _c(1, H, N2), "B": _c(H, N2), "C": _c(M, H, N2), "dt": _DT,
         "L": Int(L), "chunk": Int(None, optional=True)},
    ),
    Case(
        "fft_conv",
        ssm.fft_conv,
        {
            "u": Tens(lambda: torch.randn(2, H, L), (3, 3), tied=(-2,)),
            "K": Tens(lambda: torch.randn(1, H, L), (3, 3), tied=(-2,)),
            "D": Tens(lambda: torch.randn(H), (1, 1), tied=(-1,), optional=True),
        },
    ),
    Case(
        "S4",
        ssm.S4,
        {"d_model": Int(H), "d_state": Int(4, minimum=2, even=True), "l_max": Int(None,
         optional=True), "mode": Choice("nplr"), "init": Choice("legs"),
         "dropout": Num(0.0, 0.0, 1.0), "dt_min": Num(1e-3, 0.0, low_open=True),
         "dt_max": Num(1e-1, 0.0, low_open=True), "chunk": Int(None, optional=True)},
    ),
    Case("S4.kernel", lambda L: _S4.kernel(L), {"L": Int(L)}),
    Case("S4.initial_state", lambda batch: _S4.initial_state(batch), {"batch": Int(2)}),
    Case(
        "S4.forward",
        lambda u: _S4(u),
        {"u": Tens(lambda: torch.randn(2, L, H), (3, 3), tied=(-1,))},
    ),
    Case(
        "S4.step",
        lambda u_t, state: _step(_S4, u_t, state),
        {
            "u_t": Tens(lambda: torch.randn(2, H), (2, 2), tied=(-1, -2)),
            "state": Tens(lambda: _S4.initial_state(2), (3, 3), ("complex",), tied=(-3, -2, -1)),
        },
    ),
    Case(
        "S4(diag).step",
        lambda u_t, state: _step(_S4_DIAG, u_t, state),
        {
            "u_t": Tens(lambda: torch.randn(2, H), (2, 2), tied=(-1, -2)),
            "state": Tens(lambda: _S4_DIAG.initial_state(2), (3, 3), ("complex",),
                          tied=(-3, -2, -1)),
        },
    ),
    Case(
        "ssm_parameter_groups",
        lambda lr, ssm_lr, weight_decay: ssm.ssm_parameter_groups(_S4, lr, ssm_lr, weight_decay),
        {"lr": Num(1e-2, 0.0), "ssm_lr": Num(None, 0.0, optional=True),
         "weight_decay": Num(0.0, 0.0)},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_valid_call(case: Case) -> None:
    valid_call_works(case)


@pytest.mark.parametrize(("case", "name"), case_params(CASES))
@FUZZ
@given(data=st.data())
def test_wrong_argument(case: Case, name: str, data: st.DataObject) -> None:
    run_case(case, name, data.draw(wrong_value(case.args[name])))
