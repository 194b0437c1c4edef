"""The S4 layer: forward against loops, step == forward, gradients, errors, groups."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.nn import functional as F

from structmat.ssm import S4, ssm_parameter_groups
from tests.reference.ssm import anticausal_conv, causal_conv

MODES = [
    ("nplr", "legs", None),
    ("nplr", "legt", None),
    ("diag", "diag-lin", "zoh"),
    ("diag", "diag-inv", "bilinear"),
]


def _reference_forward(layer: S4, u: torch.Tensor) -> np.ndarray:
    """Loop convolution + D skip + GELU + output layer, from layer.kernel()."""
    L = u.shape[1]
    K = layer.kernel(L).detach().numpy()
    x = u.transpose(1, 2).numpy()  # (B, H, L)
    if layer.bidirectional:
        y = causal_conv(x, K[0]) + anticausal_conv(x, K[1])
    else:
        y = causal_conv(x, K)
    y = y + layer.D.detach().numpy()[:, None] * x
    y_t = torch.from_numpy(y).transpose(1, 2)
    with torch.no_grad():
        out = layer.output_linear(F.gelu(y_t))
        out = F.glu(out, dim=-1) if layer.glu else out
    return out.numpy()


@pytest.mark.parametrize(("mode", "init", "disc"), MODES)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("L", [1, 9, 64])
def test_forward_matches_loops(
    mode: str, init: str, disc: str, bidirectional: bool, L: int
) -> None:
    torch.manual_seed(L)
    layer = S4(
        3, 8, l_max=None, mode=mode, init=init, discretization=disc, bidirectional=bidirectional
    ).double()
    u = torch.randn(2, L, 3, dtype=torch.float64)
    y = layer(u)
    assert y.shape == (2, L, 3) and y.dtype == torch.float64
    ref = _reference_forward(layer, u)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-10, atol=1e-10)


def _run_steps(layer: S4, u: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        state = layer.initial_state(u.shape[0])
        ys = []
        for t in range(u.shape[1]):
            y, state = layer.step(u[:, t], state)
            ys.append(y)
    return torch.stack(ys, dim=1)  # (B, L, H)


@given(
    mode_idx=st.integers(0, len(MODES) - 1),
    L=st.integers(1, 40),
    N=st.sampled_from([2, 4, 8]),
    fixed=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_step_equals_forward_float64(mode_idx: int, L: int, N: int, fixed: bool, seed: int) -> None:
    mode, init, disc = MODES[mode_idx]
    torch.manual_seed(seed)
    layer = (
        S4(3, N, l_max=40 if fixed else None, mode=mode, init=init, discretization=disc)
        .double()
        .eval()
    )
    u = torch.randn(2, L, 3, dtype=torch.float64)
    with torch.no_grad():
        y = layer(u)
    ys = _run_steps(layer, u)
    assert float((ys - y).abs().max()) < 1e-8


@pytest.mark.parametrize(("mode", "init", "disc"), MODES)
def test_step_equals_forward_float32(mode: str, init: str, disc: str) -> None:
    torch.manual_seed(0)
    layer = S4(8, 16, l_max=256, mode=mode, init=init, discretization=disc).eval()
    u = torch.randn(2, 256, 8)
    with torch.no_grad():
        y = layer(u)
    ys = _run_steps(layer, u)
    assert float((ys - y).abs().max() / y.abs().max()) < 1e-4


def test_step_cache_follows_parameter_updates() -> None:
    torch.manual_seed(1)
    layer = S4(2, 4, l_max=16).double().eval()
    u = torch.randn(1, 16, 2, dtype=torch.float64)
    _run_steps(layer, u)
    with torch.no_grad():
        layer.log_dt.add_(0.3)
        layer.B.mul_(1.5)
        y = layer(u)
    assert float((_run_steps(layer, u) - y).abs().max()) < 1e-8


@pytest.mark.parametrize(("mode", "init", "disc"), MODES)
def test_gradients_reach_every_parameter(mode: str, init: str, disc: str) -> None:
    torch.manual_seed(2)
    layer = S4(4, 8, l_max=32, mode=mode, init=init, discretization=disc, bidirectional=True)
    u = torch.randn(2, 32, 4, requires_grad=True)
    layer(u).square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().max()) > 0, name
    assert u.grad is not None


@pytest.mark.parametrize(("mode", "init", "disc"), [*MODES, ("nplr", "fout", None)])
def test_gradcheck_tiny_layer(mode: str, init: str, disc: str) -> None:
    """Finite differences vs autograd for every SSM parameter, C and D (float64)."""
    torch.manual_seed(3)
    layer = S4(2, 4, l_max=8, mode=mode, init=init, discretization=disc, glu=False).double()
    names = [n for n, _ in layer.named_parameters() if not n.startswith("output_linear")]
    params = dict(layer.named_parameters())
    u = torch.randn(1, 8, 2, dtype=torch.float64)

    def f(*values: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(layer, dict(zip(names, values, strict=True)), (u,))
        return out

    inputs = tuple(params[n].detach().clone().requires_grad_() for n in names)
    assert torch.autograd.gradcheck(f, inputs)


def test_double_end_to_end() -> None:
    torch.manual_seed(4)
    layer = S4(4, 8, l_max=64, bidirectional=True)
    layer = layer.double()
    for p in layer.parameters():
        assert p.dtype == torch.float64
    u = torch.randn(2, 64, 4, dtype=torch.float64)
    y = layer(u)
    assert y.dtype == torch.float64
    A, _, _, dt = layer.dense_ssm()
    assert A.dtype == torch.complex128 and dt.dtype == torch.float64
    assert layer.kernel(64).dtype == torch.float64


def test_no_nan_at_long_length() -> None:
    torch.manual_seed(5)
    for mode, init in (("nplr", "legs"), ("diag", "diag-inv")):
        layer = S4(4, 64, l_max=None, mode=mode, init=init, dt_min=1e-4, dt_max=1.0)
        K = layer.kernel(20000)
        assert torch.isfinite(K).all()


def test_parameter_groups() -> None:
    model = torch.nn.Sequential(
        S4(4, 8), torch.nn.Linear(4, 4), S4(4, 8, mode="diag", init="diag-lin")
    )
    groups = ssm_parameter_groups(model, lr=0.01, weight_decay=0.1)
    assert [g["lr"] for g in groups] == [0.01, 0.001]
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    ssm = {id(p) for p in groups[1]["params"]}
    for m in (model[0], model[2]):
        assert all(id(p) in ssm for p in m.ssm_parameters())
        assert id(m.C) not in ssm and id(m.D) not in ssm
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))
    assert all(set(g) == {"params", "lr", "weight_decay"} for g in groups)
    assert ssm_parameter_groups(model, lr=1e-4)[1]["lr"] == 1e-4
    with pytest.raises(ValueError, match=r"lr: expected a finite number >= 0, got -1"):
        ssm_parameter_groups(model, lr=-1)


def test_bad_inputs() -> None:
    layer = S4(4, 8, l_max=16)
    with pytest.raises(
        ValueError,
        match=r"u: expected shape \(B, L, H\) with H = d_model = 4, got shape \(2, 16, 3\)",
    ):
        layer(torch.randn(2, 16, 3))
    with pytest.raises(ValueError, match=r"u: expected shape \(B, L, H\), got shape \(16, 4\)"):
        layer(torch.randn(16, 4))
    with pytest.raises(
        ValueError, match=r"u: expected length L <= l_max = 16, got shape \(1, 17, 4\)"
    ):
        layer(torch.randn(1, 17, 4))
    with pytest.raises(ValueError, match=r"L: expected length L <= l_max = 16, got 17"):
        layer.kernel(17)
    with pytest.raises(ValueError, match=r"u: expected dtype torch.float32"):
        layer(torch.randn(1, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"d_state: expected an even state size .*got 7"):
        S4(4, 7)
    with pytest.raises(ValueError, match=r"mode: expected one of 'nplr' \| 'diag', got 'dense'"):
        S4(4, 8, mode="dense")
    with pytest.raises(ValueError, match=r"init: expected one of 'diag-lin'.*got 'legt'"):
        S4(4, 8, mode="diag", init="legt")
    with pytest.raises(ValueError, match=r"discretization: expected 'bilinear' for mode='nplr'"):
        S4(4, 8, discretization="zoh")
    with pytest.raises(
        ValueError, match=r"u_t: expected shape \(B, H\) with H = d_model = 4, got shape \(2, 5\)"
    ):
        layer.step(torch.randn(2, 5), layer.initial_state(2))
    with pytest.raises(
        ValueError, match=r"state: expected a complex tensor of shape \(B, H, N'\) = \(2, 4, 8\)"
    ):
        layer.step(torch.randn(2, 4), torch.zeros(2, 4, 4, dtype=torch.complex64))
    with pytest.raises(ValueError, match=r"step: expected a causal layer"):
        S4(4, 8, bidirectional=True).step(
            torch.randn(1, 4), torch.zeros(1, 4, 8, dtype=torch.complex64)
        )


def test_training_with_growing_inputs() -> None:
    """l_max=None: a longer batch re-expresses C̃ between steps; training continues."""
    torch.manual_seed(6)
    layer = S4(3, 8, l_max=None)
    for L in (8, 32, 16):
        layer.zero_grad()
        layer(torch.randn(2, L, 3)).square().mean().backward()
        assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)
    assert int(layer.l_kernel) == 32
