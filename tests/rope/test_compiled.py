"""The inductor-compiled rotation: the rule that picks it, its fallback, its results."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from structmat.rope import RotaryEmbedding, _compiled, apply_rotary, rotation
from structmat.rope._compiled import ENV, Dispatch, rotate_expression
from tests.reference import rope as ref


class _Spy:
    """A stand-in for torch.compile: returns the plain expression and counts calls."""

    def __init__(self, fail: bool = False) -> None:
        self.compiles = 0
        self.calls = 0
        self.fail = fail

    def __call__(self, fn, **kwargs):
        self.compiles += 1

        def kernel(*args):
            self.calls += 1
            if self.fail:
                raise RuntimeError("no C++ compiler\nsecond line")
            return fn(*args)

        return kernel


@pytest.fixture
def dispatch(monkeypatch):
    """A fresh Dispatch with a spy compiler, used by rotate_pairs; small inputs count."""
    spy = _Spy()
    d = Dispatch(compile_fn=spy)
    monkeypatch.setattr(rotation, "DISPATCH", d)
    monkeypatch.setattr(_compiled, "MIN_NUMEL", 64)
    monkeypatch.delenv(ENV, raising=False)
    return d, spy


def _tables(L: int, P: int, dtype=torch.float32):
    ang = torch.arange(L, dtype=torch.float64)[:, None] * torch.rand(P, dtype=torch.float64)
    return ang.cos().to(dtype), ang.sin().to(dtype)


def test_auto_compiles_once_the_eager_budget_is_spent(dispatch, monkeypatch):
    d, spy = dispatch
    monkeypatch.setattr(_compiled, "EAGER_SECONDS", 0.5)
    x = torch.randn(2, 3, 16, 8)
    cos, sin = _tables(16, 4)
    kind = d.kind(x, cos, "half")
    assert kind is not None
    assert d.kernel(kind) is None  # nothing spent yet: eager
    d.charge(kind, time.perf_counter() - 0.3)
    assert d.kernel(kind) is None  # 0.3 s < 0.5 s
    d.charge(kind, time.perf_counter() - 0.3)
    assert d.kernel(kind) is not None and spy.compiles == 1
    # other kinds keep their own account
    other = d.kind(x.double(), cos.double(), "half")
    assert other != kind and d.kernel(other) is None
    # the public path now runs the kernel, with the eager result
    want = rotation._rotate_fast(x.double(), cos.double(), sin.double(), "half").float()
    got = rotation.rotate_pairs(x, cos, sin, "half")
    assert spy.calls == 1
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_kinds_never_compiled(dispatch):
    d, _ = dispatch
    cos, _sin = _tables(16, 4)
    assert d.kind(torch.randn(2, 3, 16, 8), cos, "interleaved") is None
    assert d.kind(torch.randn(2, 16), cos[:, :1], "half") is None  # under MIN_NUMEL
    meta = torch.empty(2, 3, 16, 8, device="meta")
    assert d.kind(meta, cos, "half") is None  # not the CPU


def test_environment_modes(dispatch, monkeypatch):
    d, spy = dispatch
    x = torch.randn(2, 3, 16, 8)
    cos, _ = _tables(16, 4)
    kind = d.kind(x, cos, "half")
    monkeypatch.setenv(ENV, "0")
    d.charge(kind, time.perf_counter() - 1e6)  # any amount of eager time
    assert d.kernel(kind) is None
    monkeypatch.setenv(ENV, "1")
    fresh = Dispatch(compile_fn=spy)
    assert fresh.kernel(kind) is not None  # at once, nothing spent
    monkeypatch.setenv(ENV, "sometimes")
    with pytest.raises(ValueError, match=r"STRUCTMAT_ROPE_COMPILE.*one of auto, 0, 1.*'sometimes'"):
        Dispatch(compile_fn=spy).kernel(kind)


def test_compile_failure_warns_once_then_stays_eager(monkeypatch):
    spy = _Spy(fail=True)
    d = Dispatch(compile_fn=spy)
    monkeypatch.setattr(rotation, "DISPATCH", d)
    monkeypatch.setattr(_compiled, "MIN_NUMEL", 64)
    monkeypatch.setenv(ENV, "1")
    x = torch.randn(2, 3, 16, 8, dtype=torch.float64)
    cos, sin = _tables(16, 4, torch.float64)
    want = ref.rotate_by_angles(x.numpy(), torch.atan2(sin, cos).numpy(), "half")
    with pytest.warns(RuntimeWarning, match="compiling the rotation failed.*no C\\+\\+ compiler"):
        got = rotation.rotate_pairs(x, cos, sin, "half")
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)
    calls = spy.calls
    got = rotation.rotate_pairs(x, cos, sin, "half")  # no second attempt, no warning
    assert spy.calls == calls
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)


@pytest.mark.parametrize("layout", ["half", "interleaved"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("R", [8, 4])
def test_expression_matches_reference(layout, dtype, R):
    x = torch.randn(2, 3, 11, 8, dtype=torch.float64)
    cos, sin = _tables(11, R // 2, torch.float64)
    work = torch.float64 if dtype == torch.float64 else torch.float32
    got = rotate_expression(x.to(dtype), cos.to(work), sin.to(work), layout)
    base = x.to(dtype).double().numpy()
    want = ref.rotate_by_angles(base[..., :R], torch.atan2(sin, cos).numpy(), layout)
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2}[dtype]
    assert got.dtype == dtype and got.is_contiguous() and got.shape == x.shape
    np.testing.assert_allclose(got[..., :R].double().numpy(), want, atol=tol)
    assert torch.equal(got[..., R:], x[..., R:].to(dtype))  # partial rotary: passed through


def test_partial_rotary_runs_the_kernel(dispatch):
    """rotary_dim < D without autograd takes the compiled loop once it pays, like D."""
    d, spy = dispatch
    x = torch.randn(2, 3, 16, 12, dtype=torch.float64)
    cos, sin = _tables(16, 4, torch.float64)
    kind = d.kind(x, cos, "half")
    assert kind is not None and kind != d.kind(x[..., :8].contiguous(), cos, "half")
    want = rotation.rotate_pairs(x, cos, sin, "half", rotary_dim=8)  # eager, charged
    assert spy.calls == 0
    d.charge(kind, time.perf_counter() - 1e6)
    got = rotation.rotate_pairs(x, cos, sin, "half", rotary_dim=8)
    assert spy.calls == 1
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    base = ref.rotate_by_angles(x[..., :8].numpy(), torch.atan2(sin, cos).numpy(), "half")
    np.testing.assert_allclose(got[..., :8].numpy(), base, atol=1e-12)
    assert torch.equal(got[..., 8:], x[..., 8:])


def test_inductor_kernel_matches_reference(monkeypatch):
    """The real torch.compile path (a C++ compiler is part of the dev setup)."""
    d = Dispatch()
    monkeypatch.setattr(rotation, "DISPATCH", d)
    monkeypatch.setattr(_compiled, "MIN_NUMEL", 64)
    monkeypatch.setenv(ENV, "1")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 37, 16, generator=g, dtype=torch.float64)
    pos = torch.randperm(37, generator=g) * 5 + 3
    want = ref.rotary(x.numpy(), pos.numpy(), ref.frequencies(16, 1e4), "half")
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        got = apply_rotary(x.to(dtype), pos)
        # bf16: the exact result of the rounded input, rounded once
        base = x.to(dtype).double().numpy()
        exact = ref.rotary(base, pos.numpy(), ref.frequencies(16, 1e4), "half")
        assert got.dtype == dtype
        np.testing.assert_allclose(got.double().numpy(), exact, atol=tol, rtol=tol)
    got64 = apply_rotary(x, pos)
    np.testing.assert_allclose(got64.numpy(), want, atol=1e-12)
    assert not d._failed and d._kernel is not None
    # partial rotary (GPT-NeoX's rotary_pct): the first 8 channels turn, the rest pass
    part = apply_rotary(x.float(), pos, rotary_dim=8)
    base = x[..., :8].float().double().numpy()
    head = ref.rotary(base, pos.numpy(), ref.frequencies(8, 1e4), "half")
    np.testing.assert_allclose(part[..., :8].double().numpy(), head, atol=1e-5, rtol=1e-5)
    assert torch.equal(part[..., 8:], x[..., 8:].float())
    # per-sequence offsets (tables (B, 1, L, D/2)) and a transposed (non-contiguous) q
    rot = RotaryEmbedding(16)
    q = torch.randn(2, 37, 4, 16, generator=g).transpose(1, 2)  # (B, H, L, D)
    off = torch.tensor([0, 9])
    got = rot.rotate(q, offset=off)
    positions = np.stack([np.arange(37) + o for o in (0, 9)])
    want = ref.rotary(q.double().numpy(), positions, ref.frequencies(16, 1e4), "half")
    np.testing.assert_allclose(got.double().numpy(), want, atol=1e-5)
    # backward runs the kernel too (rotation by -angle)
    xg = x.float().requires_grad_()
    apply_rotary(xg, pos).pow(2).sum().backward()
    assert xg.grad is not None
    torch.testing.assert_close(xg.grad, 2 * x.float(), rtol=1e-5, atol=1e-5)  # R^T R = I
    assert not d._failed


def test_inside_a_user_compiled_model():
    """Under torch.compile, the rotation is the plain expression inductor fuses."""
    rot = RotaryEmbedding(8)

    def attend(q: torch.Tensor) -> torch.Tensor:
        return rot.rotate(q) * 2.0

    q = torch.randn(2, 3, 40, 8)
    got = torch.compile(attend)(q)
    torch.testing.assert_close(got, attend(q), rtol=1e-6, atol=1e-6)
