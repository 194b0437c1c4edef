"""Context scaling: each method against its formula, against transformers, and the cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from structmat.rope import RopeScaling, RotaryEmbedding, apply_rotary, inverse_frequencies
from tests.reference import rope as ref

DIMS = [8, 64, 128]


@pytest.mark.parametrize("dim", DIMS)
def test_default_and_linear_and_ntk(dim):
    f, a = inverse_frequencies(dim, 1e4)
    assert a == 1.0 and np.allclose(f.numpy(), ref.frequencies(dim, 1e4), rtol=1e-14)
    f, _ = inverse_frequencies(dim, 1e4, {"rope_type": "linear", "factor": 4.0})
    assert np.allclose(f.numpy(), ref.linear_freqs(dim, 1e4, 4.0), rtol=1e-14)
    f, _ = inverse_frequencies(dim, 1e4, RopeScaling("ntk", factor=8.0))
    assert np.allclose(f.numpy(), ref.ntk_freqs(dim, 1e4, 8.0), rtol=1e-14)
    # NTK-aware keeps the highest frequency and interpolates the lowest by s
    low = ref.frequencies(dim, 1e4)[-1]
    assert f[0] == 1.0 and np.isclose(float(f[-1]), low / 8.0 ** ((dim - 2) / (dim - 2)))


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("length", [100, 2048, 5000, 65536])
def test_dynamic(dim, length):
    spec = {"rope_type": "dynamic", "factor": 2.0, "original_max_position_embeddings": 2048}
    f, _ = inverse_frequencies(dim, 1e4, spec, seq_len=length)
    assert np.allclose(f.numpy(), ref.dynamic_freqs(dim, 1e4, 2.0, 2048, length), rtol=1e-13)


@pytest.mark.parametrize("dim", DIMS)
def test_llama3(dim):
    spec = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    f, a = inverse_frequencies(dim, 500000.0, spec)
    assert a == 1.0
    assert np.allclose(f.numpy(), ref.llama3_freqs(dim, 5e5, 8.0, 8192, 1.0, 4.0), rtol=1e-13)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("factor", [2.0, 16.0])
def test_yarn(dim, factor):
    spec = {"type": "yarn", "factor": factor, "original_max_position_embeddings": 4096}
    f, a = inverse_frequencies(dim, 1e4, spec)
    want, mscale = ref.yarn_freqs(dim, 1e4, factor, 4096)
    assert np.allclose(f.numpy(), want, rtol=1e-13) and np.isclose(a, mscale)
    # The attention factor multiplies the rotated vectors (both q and k).
    x = torch.randn(5, dim, dtype=torch.float64)
    got = apply_rotary(x, scaling=spec)
    assert torch.allclose(got, a * apply_rotary(x, freqs=f), atol=1e-12)


def test_yarn_deepseek_mscale():
    spec = {
        "rope_type": "yarn",
        "factor": 40.0,
        "original_max_position_embeddings": 4096,
        "mscale": 1.0,
        "mscale_all_dim": 0.707,
    }
    _, a = inverse_frequencies(64, 1e4, spec)
    want = (0.1 * np.log(40) + 1) / (0.1 * 0.707 * np.log(40) + 1)
    assert np.isclose(a, want)


def _hf_config(head_dim: int, rope_parameters: dict, max_pos: int):
    transformers = pytest.importorskip("transformers")
    kw = {"rope_parameters": dict(rope_parameters)}
    if int(transformers.__version__.split(".")[0]) < 5:  # 4.x: rope_theta + rope_scaling
        params = dict(rope_parameters)
        kw = {"rope_theta": params.pop("rope_theta"), "rope_scaling": params}
    return transformers.LlamaConfig(
        hidden_size=head_dim * 4,
        num_attention_heads=4,
        head_dim=head_dim,
        max_position_embeddings=max_pos,
        **kw,
    )


HF_CASES = [
    {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0},
    {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0},
    {
        "rope_type": "yarn",
        "factor": 8.0,
        "rope_theta": 10000.0,
        "original_max_position_embeddings": 4096,
    },
    {
        "rope_type": "yarn",
        "factor": 40.0,
        "rope_theta": 10000.0,
        "original_max_position_embeddings": 4096,
        "beta_fast": 16,
        "beta_slow": 2,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
    },
    {
        "rope_type": "llama3",
        "factor": 8.0,
        "rope_theta": 500000.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
]


@pytest.mark.parametrize("params", HF_CASES, ids=lambda p: p["rope_type"])
@pytest.mark.parametrize("head_dim", [64, 128])
def test_matches_transformers(params, head_dim):
    pytest.importorskip("transformers")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    max_pos = 32768
    config = _hf_config(head_dim, params, max_pos)
    emb = RotaryEmbedding.from_hf(config.to_dict())
    assert emb.dim == head_dim and emb.base == params["rope_theta"]
    seq_lens = [None, 50000] if params["rope_type"] == "dynamic" else [None]
    for seq_len in seq_lens:
        want, want_factor = ROPE_INIT_FUNCTIONS[params["rope_type"]](config, "cpu", seq_len)
        got, factor = emb.inverse_frequencies(seq_len)
        # transformers computes in float32; ours is float64
        assert torch.allclose(got.float(), want, rtol=2e-6, atol=0)
        assert np.isclose(factor, want_factor, rtol=1e-6)


def test_dynamic_cache_keeps_one_base_per_sequence():
    # Dynamic NTK: a sequence started for 300 tokens (trained on 64) keeps that base
    # while decoding; scores between cached keys and new queries then depend only on
    # the offset, which fails when the base follows the growing length (HF/vLLM).
    spec = {"rope_type": "dynamic", "factor": 2.0, "original_max_position_embeddings": 64}
    emb = RotaryEmbedding(16, scaling=spec)
    g = torch.Generator().manual_seed(1)  # fixed: the last check compares two scores
    q = torch.randn(16, generator=g, dtype=torch.float64)
    k = torch.randn(16, generator=g, dtype=torch.float64)
    seq = torch.randn(1, 200, 16, dtype=torch.float64)
    emb.rotate(seq, seq_len=300)  # prefill chooses the base for 300 tokens
    base_300 = inverse_frequencies(16, 1e4, spec, 300)[0]

    def score(m, n):  # query at m, key at n, decoding one token at a time
        return float(emb.rotate(q.view(1, 16), offset=m) @ emb.rotate(k.view(1, 16), offset=n).T)

    # later tokens (offset > 0) still use the base chosen at the start
    assert torch.allclose(
        emb.rotate(q.view(1, 16), offset=250), apply_rotary(q.view(1, 16), [250], freqs=base_300)
    )
    assert abs(score(210, 205) - score(290, 285)) < 1e-10

    # the failure mode this avoids: each key keeps the base of the step that cached
    # it (length n + 1) while the query uses the current one; equal offsets, unequal scores
    def recomputed(m, n):
        qm = apply_rotary(q.view(1, 16), [m], scaling=spec, seq_len=m + 1)
        kn = apply_rotary(k.view(1, 16), [n], scaling=spec, seq_len=n + 1)
        return float(qm @ kn.T)

    assert abs(recomputed(210, 205) - recomputed(290, 285)) > 1e-3 * abs(score(210, 205))
    # a new sequence (offset 0) chooses again
    emb.rotate(seq[:, :10])
    assert emb._dynamic_len == 10
    assert torch.allclose(emb.rotate(q.view(1, 16), offset=5), apply_rotary(q.view(1, 16), [5]))


@pytest.mark.parametrize(
    "scaling, match",
    [
        ({"factor": 2.0}, r"scaling: expected a 'rope_type'"),
        ({"rope_type": "linear", "factor": -1.0}, r"scaling.factor: expected a finite number > 0"),
        ({"rope_type": "yarn", "factor": 4.0}, r"original_max_position_embeddings: expected"),
        ({"rope_type": "linear", "factor": 2.0, "rope_theta": 5.0}, r"scaling\['rope_theta'\]"),
        ({"rope_type": "longrope", "factor": 2.0}, r"scaling.kind: expected one of"),
        ("yarn", r"scaling: expected None, a RopeScaling or a rope_scaling dict, got str"),
    ],
)
def test_scaling_errors(scaling, match):
    with pytest.raises(ValueError, match=match):
        inverse_frequencies(64, 1e4, scaling)


def test_default_type_means_no_scaling():
    f, _ = inverse_frequencies(32, 1e4, {"rope_type": "default"})
    assert torch.equal(f, inverse_frequencies(32, 1e4)[0])


def test_frequency_argument_errors():
    with pytest.raises(ValueError, match=r"dim: expected an even integer >= 2"):
        inverse_frequencies(7)
    with pytest.raises(ValueError, match=r"base: expected a finite number > 1, got inf"):
        inverse_frequencies(8, float("inf"))
