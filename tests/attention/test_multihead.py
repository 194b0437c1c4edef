"""MultiHeadAttention: each mixer against references built from the module's own weights."""

import math

import pytest
import torch
import torch.nn.functional as F

from structmat.attention import MultiHeadAttention
from tests.reference.attention import (
    linear_attention_ref,
    linear_rotary_ref,
    softmax_attention_ref,
)


class TinyRotary:
    """Stand-in rotary (half layout, base 10000): the module only needs ``rotate(x)``."""

    def rotate(self, x):
        length, d = x.shape[-2:]
        half = d // 2
        theta = 10000.0 ** (-torch.arange(half, dtype=torch.float64) / half)
        ang = torch.arange(length, dtype=torch.float64)[:, None] * theta  # (L, D/2)
        cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
        a, b = x[..., :half], x[..., half:]
        return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


def _heads(mha, x):
    b, length, _ = x.shape

    def split(t):
        return t.view(b, length, mha.heads, mha.head_dim).transpose(1, 2)

    return split(mha.q_proj(x)), split(mha.k_proj(x)), split(mha.v_proj(x))


def _merge(mha, out):
    b, _, length, _ = out.shape
    return mha.out_proj(out.transpose(1, 2).reshape(b, length, mha.d_model))


def _x(b, length, d, seed=0, dtype=torch.float64):
    return torch.randn(b, length, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("causal", [False, True])
def test_softmax_mixer_matches_reference(causal):
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, causal=causal).double()
    x = _x(2, 7, 16)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False
    with torch.no_grad():
        q, k, v = _heads(mha, x)
        ref = _merge(mha, softmax_attention_ref(q, k, v, causal=causal, mask=mask))
        torch.testing.assert_close(mha(x, mask), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("causal", [False, True])
def test_linear_mixer_matches_reference(causal):
    torch.manual_seed(1)
    mha = MultiHeadAttention(12, 3, mixer="linear", causal=causal, chunk_size=3).double()
    x = _x(2, 10, 12, seed=1)
    with torch.no_grad():
        q, k, v = _heads(mha, x)
        ref = _merge(mha, linear_attention_ref(q, k, v, causal=causal))
        torch.testing.assert_close(mha(x), ref, rtol=1e-10, atol=1e-10)


def test_nystrom_full_landmarks_equals_softmax_module():
    torch.manual_seed(2)
    soft = MultiHeadAttention(16, 2, conv_kernel=3).double()
    nys = MultiHeadAttention(16, 2, mixer="nystrom", num_landmarks=9, pinv="exact",
                             conv_kernel=3).double()
    nys.load_state_dict(soft.state_dict())
    x = _x(2, 9, 16, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(nys(x), soft(x), rtol=1e-9, atol=1e-9)


def test_conv_skip_is_the_papers_depthwise_conv():
    torch.manual_seed(3)
    mha = MultiHeadAttention(8, 2, conv_kernel=5).double()
    x = _x(1, 11, 8, seed=3)
    with torch.no_grad():
        q, k, v = _heads(mha, x)
        w = mha.conv.weight[:, 0, :, 0]  # (H, 5)
        vp = F.pad(v, (0, 0, 2, 2))  # zero padding along L
        conv = sum(w[:, t, None, None] * vp[:, :, t:t + 11] for t in range(5))
        ref = _merge(mha, softmax_attention_ref(q, k, v) + conv)
        torch.testing.assert_close(mha(x), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mixer", ["softmax", "linear", "nystrom"])
def test_padding_invariance(mixer):
    torch.manual_seed(4)
    mha = MultiHeadAttention(8, 2, mixer=mixer, num_landmarks=4, conv_kernel=3).double()
    x = _x(2, 13, 8, seed=4)
    mask = torch.ones(2, 13, dtype=torch.bool)
    mask[0, 9:] = False
    junk = torch.where(mask[..., None], x, 50 * torch.randn_like(x))
    with torch.no_grad():
        out, out2 = mha(x, mask), mha(junk, mask)
        torch.testing.assert_close(out2[0, :9], out[0, :9], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(out2[1], out[1], rtol=1e-10, atol=1e-10)
        # Right padding: the kept tokens' outputs equal those of the unpadded sequence.
        torch.testing.assert_close(mha(x[:1, :9]), out[:1, :9], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mixer", ["softmax", "nystrom"])
def test_real_rotary_on_q_and_k(mixer):
    rope = pytest.importorskip("structmat.rope")
    torch.manual_seed(5)
    rot = rope.RotaryEmbedding(8)
    mha = MultiHeadAttention(16, 2, mixer=mixer, rotary=rot, num_landmarks=10,
                             pinv="exact").double()
    x = _x(1, 10, 16, seed=5)
    with torch.no_grad():
        q, k, v = _heads(mha, x)
        ref = _merge(mha, softmax_attention_ref(rot.rotate(q), rot.rotate(k), v))
        torch.testing.assert_close(mha(x), ref, rtol=1e-9, atol=1e-9)
        # The rotation is really applied: without it the output differs.
        plain = MultiHeadAttention(16, 2, mixer=mixer, num_landmarks=10, pinv="exact").double()
        plain.load_state_dict(mha.state_dict(), strict=False)
        assert not torch.allclose(plain(x), mha(x))


@pytest.mark.parametrize("causal", [False, True])
def test_linear_rotary_and_basis(causal):
    rot = TinyRotary()
    torch.manual_seed(6)
    mha = MultiHeadAttention(8, 2, mixer="linear", rotary=rot, causal=causal,
                             learnable_basis=True, chunk_size=4).double()
    x = _x(2, 9, 8, seed=6)
    with torch.no_grad():
        q, k, v = _heads(mha, x)
        p = mha.basis.weight
        torch.testing.assert_close(p, torch.eye(4, dtype=torch.float64))  # starts at I
        ref = linear_rotary_ref(q, k, v, rot.rotate, causal=causal)
        torch.testing.assert_close(mha(x), _merge(mha, ref), rtol=1e-10, atol=1e-10)
    # Train a few steps: P moves, stays orthogonal, and the output follows the formula.
    opt = torch.optim.SGD(mha.parameters(), lr=0.2)
    target = torch.randn(2, 9, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        opt.zero_grad()
        (mha(x) - target).pow(2).mean().backward()
        opt.step()
    with torch.no_grad():
        p = mha.basis.weight
        torch.testing.assert_close(p.T @ p, torch.eye(4, dtype=torch.float64))
        assert float((p - torch.eye(4, dtype=torch.float64)).abs().max()) > 1e-3
        q, k, v = _heads(mha, x)
        ref = linear_rotary_ref(q, k, v, rot.rotate, basis=p, causal=causal)
        torch.testing.assert_close(mha(x), _merge(mha, ref), rtol=1e-10, atol=1e-10)


def test_basis_not_absorbable_under_linear_attention():
    # Under softmax attention P acts on q, k directly and folds into W_q, W_k. Under linear
    # attention it acts on φ(q), and φ(P q) != P φ(q): no weight change reproduces it.
    x = torch.randn(5, 4, dtype=torch.float64)
    p, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    phi = F.elu(x @ p.T) + 1
    assert not torch.allclose(phi, (F.elu(x) + 1) @ p.T)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mixer", ["softmax", "linear", "nystrom"])
def test_dtypes(dtype, mixer):
    torch.manual_seed(7)
    mha = MultiHeadAttention(16, 2, mixer=mixer, num_landmarks=4, conv_kernel=3).double()
    x = _x(2, 12, 16, seed=7)
    with torch.no_grad():
        ref = mha(x)
        out = mha.to(dtype)(x.to(dtype))
    assert out.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 5e-2
    assert float((out.double() - ref).norm() / ref.norm()) < tol


def test_errors():
    with pytest.raises(ValueError, match=r"d_model: expected a multiple of heads = 3, got 16"):
        MultiHeadAttention(16, 3)
    with pytest.raises(ValueError, match=r"mixer: expected one of 'softmax' \| 'linear' \| 'nys"):
        MultiHeadAttention(16, 2, mixer="performer")
    with pytest.raises(ValueError, match=r"causal: expected False with mixer='nystrom'"):
        MultiHeadAttention(16, 2, mixer="nystrom", causal=True)
    with pytest.raises(ValueError, match=r"conv_kernel: expected an odd kernel size"):
        MultiHeadAttention(16, 2, conv_kernel=4)
    with pytest.raises(ValueError, match=r"rotary: expected None or an object with rotate"):
        MultiHeadAttention(16, 2, rotary=object())
    with pytest.raises(ValueError, match=r"learnable_basis: expected False unless mixer='linear'"):
        MultiHeadAttention(16, 2, learnable_basis=True, rotary=TinyRotary())
    mha = MultiHeadAttention(16, 2)
    with pytest.raises(ValueError, match=r"x: expected shape \(B, L, d_model = 16\), got shape"):
        mha(torch.randn(1, 3, 8))
    with pytest.raises(ValueError, match=r"mask: expected shape \(B, L\) = \(1, 3\)"):
        mha(torch.randn(1, 3, 16), torch.ones(1, 4, dtype=torch.bool))
    assert math.isfinite(float(mha(torch.randn(1, 3, 16)).detach().sum()))
